"""Authentication edge cases over real sockets: odd claims, limits, logs, odd input."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from slurmcast.app import SlurmcastApp

from support.server import Client, http_json, running_server
from support.tokens import SECRET, admin, hs256

JWT = {"auth": "jwt", "jwt_secret": SECRET}


@pytest.fixture
async def app() -> AsyncIterator[SlurmcastApp]:
    async with running_server(**JWT) as app:
        yield app


def url(app: SlurmcastApp, query: str = "") -> str:
    return f"ws://127.0.0.1:{app.ws.port}/{query}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def closed_with(client: Client) -> int:
    """Read until the server closes; the close code it sent."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await client.recv()
    assert info.value.rcvd is not None, "closed without a close frame"
    return info.value.rcvd.code


# -- 8. refresh at the per-user limit ---------------------------------------------------


async def test_refresh_at_the_per_user_limit_keeps_the_connection() -> None:
    async with (
        running_server(**JWT, max_connections_per_user=1) as app,
        Client.connect(app, additional_headers=bearer(hs256("alice"))) as alice,
    ):
        assert await alice.request({"type": "ping"}) == {"type": "pong"}
        reply = await alice.request({"type": "refresh", "token": hs256("alice", ttl=7200)})
        assert reply["type"] == "refreshed" and reply["user"] == "alice"
        assert await alice.request({"type": "ping"}) == {"type": "pong"}
        # A second connection of alice's is still one too many.
        async with Client.connect(app) as late:
            await late.send({"type": "auth", "token": hs256("alice")})
            assert await closed_with(late) == 4029


# -- 9. messages to everyone ---------------------------------------------------------------


async def test_broadcast_to_all_skips_connections_that_have_not_authenticated(
    app: SlurmcastApp,
) -> None:
    async with Client.connect(app) as stranger, Client.connect(app) as alice:
        await alice.request({"type": "auth", "token": hs256("alice")})
        status, body = await http_json(
            app,
            "POST",
            "/broadcast",
            {"channel": "all", "message": {"text": "maintenance at noon"}},
            headers=bearer(admin()),
        )
        assert status == 200 and body["delivered"] == 1
        assert (await alice.recv())["data"] == {"text": "maintenance at noon"}
        # The stranger's first message is the answer to its own request, not the broadcast.
        assert (await stranger.request({"type": "ping"}))["code"] == "unauthorized"


# -- 10. claims that are not what RFC 7519 says ----------------------------------------------

BAD_CLAIMS = {
    "exp as a string": {"exp": "99999999999"},
    "exp of 1e300": {"exp": 1e300},
    "exp of infinity": {"exp": float("inf")},
    "exp true": {"exp": True},
    "sub with a newline": {"sub": "bob\n"},
    "nbf as a string": {"nbf": "0"},
    "roles with a lone surrogate": {"roles": ["\ud800"]},
}


@pytest.mark.parametrize("claims", BAD_CLAIMS.values(), ids=BAD_CLAIMS.keys())
async def test_malformed_claims_are_refused_at_the_handshake(
    app: SlurmcastApp, claims: dict[str, Any]
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url(app), additional_headers=bearer(hs256(**claims))):
            pass
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body)["code"] == "invalid_token"


@pytest.mark.parametrize("claims", BAD_CLAIMS.values(), ids=BAD_CLAIMS.keys())
async def test_malformed_claims_are_refused_in_the_first_message(
    app: SlurmcastApp, claims: dict[str, Any]
) -> None:
    async with Client.connect(app) as client:
        reply = await client.request({"type": "auth", "token": hs256(**claims), "id": 1})
        assert reply["type"] == "error" and reply["code"] == "invalid_token" and reply["id"] == 1
        assert await closed_with(client) == 1008


async def test_a_far_but_valid_expiry_is_accepted(app: SlurmcastApp) -> None:
    async with Client.connect(app) as client:
        reply = await client.request({"type": "auth", "token": hs256(ttl=50 * 365 * 86400)})
        assert reply["type"] == "authenticated" and reply["expires_at"].startswith("20")


# -- 11. the channels claim ---------------------------------------------------------------


async def test_the_channels_claim_restricts_admins_too(app: SlurmcastApp) -> None:
    token = admin(channels=["nodes"])
    async with Client.connect(app, additional_headers=bearer(token)) as root:
        await root.subscribe("nodes")
        reply = await root.request({"type": "subscribe", "channel": "jobs", "id": 2})
        assert reply["code"] == "forbidden" and "does not allow channel jobs" in reply["message"]
        reply = await root.request({"type": "subscribe", "channel": "user:bob"})
        assert reply["code"] == "forbidden"
        reply = await root.request({"type": "history", "channel": "jobs"})
        assert reply["code"] == "forbidden"
        reply = await root.request(
            {"type": "broadcast", "channel": "jobs", "message": {"text": "hi"}}
        )
        assert reply["code"] == "forbidden"
        # What the claim names stays open to the admin, broadcast included (as a
        # subscriber of nodes, the admin gets its own broadcast before the reply).
        await root.send({"type": "broadcast", "channel": "nodes", "message": {"text": "hi"}})
        reply = await root.wait_for(lambda m: m["type"] != "broadcast")
        assert reply["type"] == "published" and reply["delivered"] == 1


# -- 13. tokens in debug logs ------------------------------------------------------------------


def secret_parts(token: str) -> list[str]:
    """Pieces of a token that must never be logged: its claims and its signature."""
    _, claims, signature = token.split(".")
    return [claims[:16], claims[-16:], signature[:16], signature[-16:]]


async def test_tokens_never_reach_the_log_even_at_debug(
    app: SlurmcastApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = [hs256("alice"), hs256("bob"), hs256("carol"), hs256(ttl=-600), hs256("dave")]
    header, query, first, expired, refresh = tokens
    async with Client.connect(app, additional_headers=bearer(header)) as client:
        assert await client.request({"type": "ping"}) == {"type": "pong"}
    async with connect(url(app, f"?token={query}")) as ws:
        assert await Client(ws).request({"type": "ping"}) == {"type": "pong"}
    async with Client.connect(app) as client:
        await client.request({"type": "auth", "token": first})
    async with Client.connect(app) as client:
        await client.send({"type": "auth", "token": expired})
        await closed_with(client)
    async with Client.connect(app) as client:
        await client.request({"type": "auth", "token": refresh.replace("e", "f")})
    with pytest.raises(InvalidStatus):
        async with connect(url(app, f"?token={expired}")):
            pass
    # The test's own client (websockets.client) logs its token; the server must not.
    server_records = [r for r in caplog.records if r.name != "websockets.client"]
    assert any(r.name == "websockets.server" for r in server_records), "debug logging is on"
    logged = "\n".join(r.getMessage() for r in server_records)
    for token in tokens:
        for part in secret_parts(token):
            assert part not in logged, part


# -- 15. values no JSON encoder can write back ---------------------------------------------------

ODD_IDS = [
    '{"type": "ping", "id": 18446744073709551616}',
    '{"type": "ping", "id": 9007199254740993}',
    '{"type": "ping", "id": -18446744073709551617}',
    '{"type": "ping", "id": "\\ud800"}',
    '{"type": "ping", "id": 1e300}',
    '{"type": "ping", "id": NaN}',
    '{"type": "auth", "token": "\\ud800", "id": 1}',
    '{"type": "auth", "token": "abc\\u0000def", "id": 1}',
    '{"type": "auth", "token": "é.é.é", "id": 1}',
    '{"type": "ping", "id": ' + "[" * 5000 + "]" * 5000 + "}",
]


@pytest.mark.parametrize("frame", ODD_IDS)
async def test_odd_values_before_auth_get_a_typed_error(app: SlurmcastApp, frame: str) -> None:
    async with Client.connect(app) as client:
        reply = await client.request(frame)
        assert reply["type"] == "error" and reply["code"] in {
            "invalid_json",
            "invalid_field",
            "invalid_token",
        }, reply


ODD_ADMIN_REQUESTS = [
    '{"type": "broadcast", "channel": "alerts", "message": {"deep": '
    + "[" * 300
    + "]" * 300
    + "}}",
    '{"type": "broadcast", "channel": "alerts", "message": {"s": "\\ud800"}}',
    '{"type": "subscribe", "channel": "jobs", "since": {"offset": 1e300, "epoch": "a"}}',
    '{"type": "subscribe", "channel": "jobs", '
    '"since": {"offset": 18446744073709551615, "epoch": "a"}}',
    '{"type": "history", "channel": "jobs", "since": {"offset": 9007199254740993, "epoch": "a"}}',
    '{"type": "history", "channel": "jobs", "limit": 1e300}',
    '{"type": "subscribe", "channel": "jobs", "filter": {"user": 18446744073709551616}}',
    '{"type": "mark_read", "ids": ["\\u0000"]}',
    '{"type": "refresh", "token": "\\ud800"}',
]


@pytest.mark.parametrize("frame", ODD_ADMIN_REQUESTS)
async def test_odd_values_after_auth_get_a_typed_error(app: SlurmcastApp, frame: str) -> None:
    async with Client.connect(app, additional_headers=bearer(admin())) as client:
        reply = await client.request(frame)
        assert reply["type"] == "error", reply
        assert await client.request({"type": "ping", "id": 7}) == {"type": "pong", "id": 7}


async def test_a_number_beyond_64_bits_in_a_broadcast_is_published_not_a_crash(
    app: SlurmcastApp,
) -> None:
    frame = '{"type": "broadcast", "channel": "alerts", "message": {"n": 1234567890123456789012}}'
    async with Client.connect(app, additional_headers=bearer(admin())) as root:
        await root.subscribe("alerts")
        await root.send(frame)
        pushed = await root.recv()
        assert pushed["type"] == "broadcast" and pushed["data"]["n"] == 1.2345678901234568e21
        assert (await root.recv())["type"] == "published"


# -- 17. the account filter ----------------------------------------------------------------------


async def test_jobs_filtered_by_account_are_only_that_accounts() -> None:
    fast = {"sim_speed": 600.0, "jobs_interval": 0.05}
    async with (
        running_server(**fast) as app,
        Client.connect(app) as ml,
        Client.connect(app) as everyone,
    ):
        reply = await ml.request(
            {"type": "subscribe", "channel": "jobs", "filter": {"account": "ml"}}
        )
        assert reply["type"] == "subscribed"
        await everyone.subscribe("jobs")
        # Unfiltered, other accounts' jobs come by...
        await everyone.wait_for(
            lambda m: m["channel"] == "jobs" and m["data"].get("account") not in (None, "ml")
        )
        # ...while the filtered subscriber sees only ml's (alice's and erin's).
        seen: list[dict[str, Any]] = []
        while len(seen) < 10:
            message = await ml.recv()
            if message.get("channel") == "jobs":
                seen.append(message["data"])
        assert {job["account"] for job in seen} == {"ml"}
        assert {job["user"] for job in seen} <= {"alice", "erin"}
