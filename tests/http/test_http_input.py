"""Odd client input gets a typed 4xx, never a 500, a traceback or a storage alert.

Headers with bytes that are not UTF-8 cannot be sent by an HTTP client
library, so these tests write requests on raw sockets.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import orjson
import pytest

from slurmcast.app import SlurmcastApp

from support.databases import Backend
from support.server import WAIT, Client, http_json, running_server
from support.tokens import SECRET, admin

QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}
KEY = "k-0123456789abcdef"


async def raw_request(app: SlurmcastApp, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send ``request`` (which should say ``Connection: close``); the status and JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http.port)
    try:
        writer.write(request)
        async with asyncio.timeout(WAIT):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body)


def request(
    method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: test", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]


JSON = (b"Content-Type", b"application/json")
BROADCAST = orjson.dumps({"channel": "jobs", "message": {"text": "hi"}})


# -- Content-Type: a browser page elsewhere must not be able to post --------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "",
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/json, text/plain",
    ],
)
async def test_a_body_not_declared_json_is_refused_with_415(content_type: str) -> None:
    async with running_server(**QUIET) as app, Client.connect(app) as subscriber:
        await subscriber.subscribe("jobs")
        headers = {"Content-Type": content_type}
        for path in ("/broadcast", "/notifications"):
            status, reply = await http_json(app, "POST", path, raw=BROADCAST, headers=headers)
            assert (status, reply["code"]) == (415, "unsupported_media_type"), (path, reply)
            assert "application/json" in reply["message"]
        # Nothing was published: the next message the subscriber gets is its pong.
        assert await subscriber.request({"type": "ping"}) == {"type": "pong"}


async def test_a_post_without_a_content_type_header_and_with_a_body_is_refused() -> None:
    async with running_server(**QUIET) as app:
        status, reply = await raw_request(app, request("POST", "/broadcast", [], BROADCAST))
        assert (status, reply["code"]) == (415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
async def test_json_bodies_are_accepted_with_or_without_a_utf8_charset(content_type: str) -> None:
    async with running_server(**QUIET) as app:
        status, reply = await http_json(
            app, "POST", "/broadcast", raw=BROADCAST, headers={"Content-Type": content_type}
        )
        assert status == 200 and reply["success"] is True


async def test_writes_without_a_body_need_no_content_type() -> None:
    async with running_server(**QUIET) as app:
        status, reply = await raw_request(
            app, request("POST", "/notifications/read-all?user=alice", [])
        )
        assert status == 200 and reply["marked"] == 0


# -- headers that are not ASCII ----------------------------------------------------------


@pytest.mark.parametrize("value", [b"\xff\xfe", b"caf\xc3\xa9", b"\xed\xa0\x80"])
async def test_an_api_key_that_is_not_ascii_is_just_wrong(
    caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    async with running_server(**QUIET, api_key=KEY) as app:
        key = [(b"X-API-Key", value)]
        status, reply = await raw_request(app, request("POST", "/broadcast", [*key, JSON], b"{}"))
        assert (status, reply["code"]) == (401, "unauthorized")
        status, health = await raw_request(app, request("GET", "/health", key))
        assert status == 200 and "source" not in health  # the public view
    assert not tracebacks(caplog)


@pytest.mark.parametrize("value", [b"Bearer \xff\xfe", b"Bearer eyJ\xc3\xa9.e30.x", b"\xff"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/broadcast"), ("GET", "/notifications"), ("GET", "/snapshot/jobs")],
)
async def test_an_authorization_header_that_is_not_ascii_gets_401(
    caplog: pytest.LogCaptureFixture, value: bytes, method: str, path: str
) -> None:
    async with running_server(**QUIET, auth="jwt", jwt_secret=SECRET, api_key=KEY) as app:
        body = b"{}" if method == "POST" else None
        headers = [(b"Authorization", value), JSON]
        status, reply = await raw_request(app, request(method, path, headers, body))
        assert status == 401 and reply["code"] in ("invalid_token", "unauthorized"), reply
        status, health = await raw_request(app, request("GET", "/health", headers))
        assert status == 200 and "source" not in health
    assert not tracebacks(caplog)


# -- query strings, paths and bodies -----------------------------------------------------


@pytest.mark.parametrize(
    "limit", ["1e300", "nan", "inf", "-1", "0", "99999999999999999999999", "%ff", "1" * 5000]
)
async def test_odd_page_sizes_get_400(limit: str) -> None:
    async with running_server(**QUIET) as app:
        status, reply = await http_json(app, "GET", f"/notifications?limit={limit}")
        assert (status, reply["code"]) == (400, "invalid_field"), reply


def cursor(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


@pytest.mark.parametrize(
    "before",
    [
        cursor(b"1|0001-01-01T00:00:00+14:00|x"),  # no UTC time: it overflowed on the way in
        cursor(b"1|2026-01-01T00:00:00+00:00|a\x00b"),  # PostgreSQL refuses NUL
        cursor(b"1|2026-01-01T00:00:00+00:00|" + b"x" * 65),
        cursor(b"1|9999-12-31T23:59:59-14:00|x"),
        "%ff%fe",
    ],
)
async def test_a_forged_cursor_is_a_400_not_a_storage_outage(backend: Backend, before: str) -> None:
    async with running_server(**QUIET, database_url=backend.url) as app:
        status, reply = await http_json(app, "GET", f"/notifications?before={before}")
        assert (status, reply["code"]) == (400, "invalid_field"), reply
        assert app.health()["storage"]["available"] is True


@pytest.mark.parametrize("notification_id", ["a%00b", "x" * 65, "%ff", "%F0%9F%92%A9"])
async def test_marking_an_impossible_id_is_a_404_not_a_storage_outage(
    backend: Backend, notification_id: str
) -> None:
    async with running_server(**QUIET, database_url=backend.url) as app:
        status, reply = await http_json(app, "POST", f"/notifications/{notification_id}/read")
        assert (status, reply["code"]) == (404, "not_found"), reply
        assert app.health()["storage"]["available"] is True


@pytest.mark.parametrize("field", ["title", "message"])
async def test_text_with_nul_is_refused_on_every_database(backend: Backend, field: str) -> None:
    async with running_server(**QUIET, database_url=backend.url) as app:
        body = {"title": "t", "message": "m", field: "a\x00b"}
        status, reply = await http_json(app, "POST", "/notifications", body)
        assert (status, reply["code"]) == (400, "invalid_field"), reply
        assert app.health()["storage"]["available"] is True


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"message": {"s": "\\ud800"}}', "invalid_json"),  # a lone surrogate
        (b'{"message": {"s": "\xff\xfe"}}', "invalid_json"),  # not UTF-8
        (b'{"message": {"n": 1e400}}', "invalid_json"),
        (b'{"message": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, "nesting_too_deep"),
        (b'{"message": ' + b"[" * 300 + b"]" * 300 + b"}", "nesting_too_deep"),
    ],
)
async def test_bodies_json_cannot_carry_are_a_400(
    caplog: pytest.LogCaptureFixture, raw: bytes, code: str
) -> None:
    async with running_server(**QUIET) as app:
        status, reply = await http_json(app, "POST", "/broadcast", raw=raw)
        assert (status, reply["code"]) == (400, code), reply
    assert not tracebacks(caplog)


async def test_a_huge_integer_is_published_as_a_number() -> None:
    async with running_server(**QUIET) as app, Client.connect(app) as subscriber:
        await subscriber.subscribe("jobs")
        raw = b'{"channel": "jobs", "message": {"n": 123456789012345678901234567890}}'
        status, _ = await http_json(app, "POST", "/broadcast", raw=raw)
        assert status == 200
        assert (await subscriber.recv())["data"]["n"] == pytest.approx(1.2345678901e29)


async def test_a_body_that_cannot_be_decoded_is_a_400(caplog: pytest.LogCaptureFixture) -> None:
    async with running_server(**QUIET) as app:
        headers = [JSON, (b"Content-Encoding", b"gzip")]
        status, reply = await raw_request(app, request("POST", "/broadcast", headers, b"nope"))
        assert (status, reply["code"]) == (400, "invalid_body")
        # Broken chunked framing: aiohttp answers it before any handler runs.
        broken = request("POST", "/broadcast", [JSON, (b"Transfer-Encoding", b"chunked")])
        reader, writer = await asyncio.open_connection("127.0.0.1", app.http.port)
        writer.write(broken + b"zz\r\nhello\r\n0\r\n\r\n")
        async with asyncio.timeout(WAIT):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
        status, _ = await http_json(app, "GET", "/health")
        assert status == 200
    assert not tracebacks(caplog)


async def test_a_client_that_leaves_in_the_middle_of_its_body_leaves_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_server(**QUIET, api_key=KEY) as app:
        headers = [JSON, (b"X-API-Key", KEY.encode()), (b"Content-Length", b"100")]
        for _ in range(3):
            _, writer = await asyncio.open_connection("127.0.0.1", app.http.port)
            writer.write(request("POST", "/broadcast", headers) + b'{"message": ')
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        status, _ = await http_json(app, "GET", "/health", headers={"X-API-Key": KEY})
        assert status == 200
    # The server has stopped: every handler has finished, and logged what it would.
    assert not tracebacks(caplog)


async def test_an_admin_token_still_works_beside_all_this() -> None:
    async with running_server(**QUIET, auth="jwt", jwt_secret=SECRET) as app:
        token = {"Authorization": f"Bearer {admin()}"}
        status, reply = await http_json(app, "POST", "/broadcast", {"message": {}}, headers=token)
        assert status == 200 and reply["success"] is True


@pytest.mark.parametrize("path", ["/broadcast", "/health", "/no-such-route"])
@pytest.mark.parametrize("expect", [b"\x80\xff", b"something-else"])
async def test_an_unknown_expectation_gets_417_whatever_its_bytes(
    caplog: pytest.LogCaptureFixture, path: str, expect: bytes
) -> None:
    async with running_server(**QUIET) as app:
        headers = [JSON, (b"Expect", expect)]
        status, reply = await raw_request(app, request("POST", path, headers, b"{}"))
        assert (status, reply["code"]) == (417, "expectation_failed")
    assert not tracebacks(caplog)


async def test_expect_100_continue_still_works() -> None:
    async with running_server(**QUIET) as app:
        reader, writer = await asyncio.open_connection("127.0.0.1", app.http.port)
        try:
            body = b'{"message": {"m": 1}}'
            headers = [JSON, (b"Expect", b"100-continue"), (b"Content-Length", b"%d" % len(body))]
            writer.write(request("POST", "/broadcast", headers))
            async with asyncio.timeout(WAIT):
                assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
                writer.write(body)
                answer = await reader.read()
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
