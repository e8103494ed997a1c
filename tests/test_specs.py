"""The machine-readable specs: valid documents, served, complete, and matching the code.

* ``slurmcast/specs/openapi.json`` (the HTTP API) is valid OpenAPI 3.1
  (openapi-spec-validator), served at ``GET /openapi.json`` with this version,
  and documents every route the application registers.
* ``docs/asyncapi.yaml`` (the WebSocket protocol) is valid AsyncAPI 3 for the
  official parser (``@asyncapi/parser`` from npm, pinned by
  tools/asyncapi/package-lock.json: Node.js >= 20 and npm needed; skipped
  without them unless SLURMCAST_REQUIRE_NODE=1), and lists every error and
  close code the server uses.

Every message the rest of the suite receives from a real server is checked
against both documents by ``support.server`` (``support.schemas``); the last
tests here check that those checks do fail on what the specs do not allow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate

from slurmcast import __version__
from slurmcast.core.broadcasts import RESERVED_TYPES
from slurmcast.errors import CloseCode, ErrorCode
from slurmcast.http.openapi import openapi_document
from slurmcast.sinks.config import SinksConfig

from support.schemas import (
    ASYNCAPI_PATH,
    ROOT,
    SchemaMismatch,
    check_http_response,
    check_server_message,
    load_asyncapi,
    message_schemas,
)
from support.server import running_server

VALIDATOR_DIR = ROOT / "tools" / "asyncapi"
REQUIRE_NODE = os.environ.get("SLURMCAST_REQUIRE_NODE") == "1"
#: Codes that never reach a WebSocket client (logs and /health only).
NOT_SENT_ON_THE_WEBSOCKET = {
    ErrorCode.NOT_SUBSCRIBED,  # defined, not used on the wire
    ErrorCode.NOT_FOUND,  # HTTP only
    ErrorCode.SOURCE_FAILED,
    ErrorCode.SOURCE_TIMEOUT,
    ErrorCode.CONFIG_INVALID,
    ErrorCode.PUBLISH_FAILED,
    ErrorCode.NOT_LEADER,
}


# -- OpenAPI -------------------------------------------------------------------------


def test_the_openapi_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1.")
    validate(document)


async def test_openapi_json_is_served_with_this_version() -> None:
    async with running_server() as app:
        status, body = await _get(app.http.port, "/openapi.json")
    assert status == 200
    assert body["info"]["version"] == __version__
    assert body == openapi_document()
    validate(body)


async def test_every_registered_route_is_in_the_openapi_document() -> None:
    """A route added without its spec fails here (and a spec'd path nobody serves)."""
    # With a [sinks] table: the /notify routes exist only then.
    async with running_server(sinks=SinksConfig(slack=True)) as app:
        registered = {
            (route.resource.canonical, route.method.lower())
            for route in app.http.app.router.routes()
            if route.resource is not None and route.method not in ("HEAD", "*")
        }
    paths = openapi_document()["paths"]
    documented = {
        (path, method)
        for path, operations in paths.items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert registered - documented == set(), "routes missing from openapi.json"
    assert documented - registered == set(), "openapi.json documents routes nobody serves"


def test_every_error_code_has_the_error_shape() -> None:
    """The shared error responses all refine the one error schema."""
    document = openapi_document()
    for name, response in document["components"]["responses"].items():
        schema = response["content"]["application/json"]["schema"]
        assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}, name


# -- AsyncAPI ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def asyncapi_validator() -> Path:
    """tools/asyncapi with its node_modules installed (``npm ci``, once per session)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if REQUIRE_NODE:
            pytest.fail("node and npm are needed, and SLURMCAST_REQUIRE_NODE=1")
        pytest.skip("node and npm are needed; set SLURMCAST_REQUIRE_NODE=1 to make this a failure")
    if not (VALIDATOR_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=VALIDATOR_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    return VALIDATOR_DIR


def _run_validator(directory: Path, document: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node is not None
    return subprocess.run(
        [node, "validate.mjs", str(document)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_asyncapi_document_is_valid_for_the_asyncapi_parser(
    asyncapi_validator: Path,
) -> None:
    result = _run_validator(asyncapi_validator, ASYNCAPI_PATH)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "valid AsyncAPI 3." in result.stdout


def test_the_asyncapi_validator_fails_on_an_invalid_document(
    asyncapi_validator: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        ASYNCAPI_PATH.read_text().replace(
            "payload: {$ref: '#/components/schemas/Pong'}",
            "payload: {$ref: '#/components/schemas/NoSuchSchema'}",
        ),
        encoding="utf-8",
    )
    result = _run_validator(asyncapi_validator, broken)
    assert result.returncode == 1, result.stdout
    assert "error" in result.stdout


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = load_asyncapi()["components"]["schemas"]
    return schemas


def test_every_error_code_sent_to_clients_is_documented() -> None:
    documented = set(_schemas()["ErrorCode"]["enum"])
    sent = {code.value for code in ErrorCode} - {c.value for c in NOT_SENT_ON_THE_WEBSOCKET}
    assert sent - documented == set()
    explained = set(_schemas()["ErrorCode"]["x-slurmcast-error-codes"])
    assert explained == documented


def test_every_close_code_is_documented() -> None:
    documented = {int(code) for code in load_asyncapi()["info"]["x-slurmcast-close-codes"]}
    assert {int(code) for code in CloseCode} - documented == set()
    for code in CloseCode:
        assert f"| {int(code)} |" in load_asyncapi()["info"]["description"], code


def test_the_reserved_broadcast_types_are_those_the_code_refuses() -> None:
    """Every type the code refuses is reserved in the spec, and every type the server
    sends is refused by the code (else an operator could forge it)."""
    documented = set(_schemas()["ReservedType"]["enum"])
    assert RESERVED_TYPES - documented == set()
    sent = set(message_schemas().by_type) - {"broadcast"}
    assert sent <= documented
    assert sent - RESERVED_TYPES == set(), "types the server sends that a broadcast may forge"


def test_the_examples_of_server_messages_match_their_schemas() -> None:
    document = load_asyncapi()
    sent = {
        reference["$ref"].rsplit("/", 1)[1]
        for operation in document["operations"].values()
        if operation["action"] == "send"
        for reference in operation["messages"]
    }
    examples = [
        example["payload"]
        for name, message in document["components"]["messages"].items()
        if name in sent
        for example in message.get("examples", [])
    ]
    assert examples
    for example in examples:
        check_server_message(example)


# -- The checks themselves -------------------------------------------------------------

ENVELOPE = {"channel": "jobs", "timestamp": "2026-11-28T04:25:00.120Z", "offset": 3, "epoch": "e"}


@pytest.mark.parametrize(
    "message",
    [
        {"type": "pong", "surprise": 1},  # replies hold only what is documented
        {"type": "telepathy"},  # no such reply, and no broadcast envelope
        {**ENVELOPE, "type": "job_update", "data": {"job_id": "1"}},  # required fields
        {**ENVELOPE, "channel": "nodes", "type": "job_update", "data": {}},  # wrong channel
        {**ENVELOPE, "type": "maintenance", "data": {}, "offset": None},  # no position
        {"channel": "nodes", "type": "maintenance", "timestamp": ENVELOPE["timestamp"], "data": 1},
        {**ENVELOPE, "channel": "all", "type": "maintenance", "data": {}},  # `all` has none
        {"type": "error", "code": "rate_limited", "message": "slow down"},  # no retry_after
        {"type": "error", "code": "no_such_code", "message": "?"},
        {"type": "subscribed", "channel": "gpus", "message": "Subscribed to gpus"},
    ],
)
def test_a_message_the_spec_does_not_describe_fails(message: dict[str, Any]) -> None:
    with pytest.raises(SchemaMismatch):
        check_server_message(message)


def test_an_instance_alert_sent_while_the_broker_is_down_has_no_position() -> None:
    alert = {
        "id": "broker_unavailable:web1",
        "rule": "broker_unavailable",
        "severity": "critical",
        "status": "firing",
        "message": "Instance web1 cannot reach Redis",
        "details": {"instance": "web1", "error": "refused"},
        "since": "2026-11-28T04:19:21Z",
    }
    timestamp = ENVELOPE["timestamp"]
    check_server_message(
        {"channel": "alerts", "type": "alert", "timestamp": timestamp, "data": alert}
    )
    with pytest.raises(SchemaMismatch):  # both or neither
        check_server_message(
            {
                "channel": "alerts",
                "type": "alert",
                "timestamp": timestamp,
                "data": alert,
                "offset": 1,
            }
        )


def test_an_operator_message_of_its_own_type_is_accepted() -> None:
    check_server_message({**ENVELOPE, "type": "maintenance", "data": {"start": "18:00"}})
    check_server_message(
        {"channel": "all", "type": "broadcast", "timestamp": ENVELOPE["timestamp"], "data": {}}
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/health", 200, {"status": "fine"}),
        ("POST", "/broadcast", 400, {"success": False, "code": "made_up", "message": "?"}),
        ("POST", "/broadcast", 402, {"success": False, "code": "forbidden", "message": "?"}),
        ("GET", "/no/such/path", 404, {"error": "not found"}),
        ("GET", "/no/such/path", 200, {}),
    ],
)
def test_an_answer_the_spec_does_not_describe_fails(
    method: str, path: str, status: int, body: Any
) -> None:
    with pytest.raises(SchemaMismatch):
        check_http_response(method, path, status, body)


async def _get(port: int, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        assert response.content_type == "application/json"
        return response.status, await response.json()
