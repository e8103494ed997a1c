"""The HTTP API's write endpoints need an admin; /health shows counts to everyone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from slurmcast.app import SlurmcastApp

from support.server import http_json, running_server
from support.tokens import SECRET, admin, hs256

KEY = "k-0123456789abcdef"
BODY = {"channel": "all", "message": {"text": "hello"}}


@pytest.fixture
async def app() -> AsyncIterator[SlurmcastApp]:
    async with running_server(auth="jwt", jwt_secret=SECRET, api_key=KEY) as app:
        yield app


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"X-API-Key": "wrong"}, 401, "unauthorized"),
        ({"Authorization": "Bearer not-a-token"}, 401, "invalid_token"),
        ({"Authorization": f"Bearer {hs256('alice')}"}, 403, "forbidden"),
        ({"Authorization": f"Bearer {admin(ttl=-600)}"}, 401, "token_expired"),
    ],
)
async def test_broadcast_refused_without_admin(
    app: SlurmcastApp, headers: dict[str, str], status: int, code: str
) -> None:
    got, reply = await http_json(app, "POST", "/broadcast", BODY, headers=headers)
    assert (got, reply["code"]) == (status, code)


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {admin()}"}])
async def test_broadcast_allowed_for_api_key_and_admin_token(
    app: SlurmcastApp, headers: dict[str, str]
) -> None:
    status, reply = await http_json(app, "POST", "/broadcast", BODY, headers=headers)
    assert status == 200 and reply["success"] is True


async def test_api_key_alone_protects_an_otherwise_open_server() -> None:
    async with running_server(api_key=KEY) as app:
        assert (await http_json(app, "POST", "/broadcast", BODY))[0] == 401
        assert (await http_json(app, "POST", "/broadcast", BODY, headers={"X-API-Key": KEY}))[
            0
        ] == 200


async def test_health_shows_only_counts_to_the_public(app: SlurmcastApp) -> None:
    status, public = await http_json(app, "GET", "/health")
    assert status == 200
    assert set(public) == {"status", "version", "clients", "subscriptions", "uptime_s"}
    _, full = await http_json(app, "GET", "/health", headers={"X-API-Key": KEY})
    assert "source" in full and "polls" in full


async def test_body_limit_still_applies_to_admins() -> None:
    async with running_server(api_key=KEY, http_max_body=512) as app:
        big = {"channel": "all", "message": {"x": "y" * 2048}}
        status, reply = await http_json(app, "POST", "/broadcast", big, headers={"X-API-Key": KEY})
        assert status == 413 and reply["code"] == "body_too_large"


async def test_an_admin_tokens_channels_claim_binds_http_broadcast_too(app: SlurmcastApp) -> None:
    restricted = {"Authorization": f"Bearer {admin(channels=['nodes'])}"}
    status, reply = await http_json(app, "POST", "/broadcast", BODY, headers=restricted)
    assert (status, reply["code"]) == (403, "forbidden")
    assert "channel all" in reply["message"]
    on_nodes = {"channel": "nodes", "message": {"text": "rack 3 maintenance"}}
    status, reply = await http_json(app, "POST", "/broadcast", on_nodes, headers=restricted)
    assert status == 200 and reply["success"] is True
