"""Authentication and authorization over real sockets with real tokens."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from slurmcast.app import SlurmcastApp
from slurmcast.transport.ws_connection import WsConnection

from support.recorder import Recorder
from support.server import Client, http_json, running_server
from support.tokens import SECRET, admin, hs256
from support.waiting import eventually

JWT = {"auth": "jwt", "jwt_secret": SECRET}


@pytest.fixture
async def app() -> AsyncIterator[SlurmcastApp]:
    async with running_server(**JWT) as app:
        yield app


def url(app: SlurmcastApp, query: str = "") -> str:
    return f"ws://127.0.0.1:{app.ws.port}/{query}"


async def handshake_refusal(uri: str, **kwargs: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with connect(uri, **kwargs):
            pass
    return info.value


async def test_bearer_header_and_query_token_are_accepted(app: SlurmcastApp) -> None:
    async with connect(url(app), additional_headers={"Authorization": f"Bearer {hs256()}"}) as ws:
        client = Client(ws)
        await client.subscribe("jobs")
    async with connect(url(app, f"?token={hs256('bob')}")) as ws:
        client = Client(ws)
        assert await client.request({"type": "ping"}) == {"type": "pong"}


@pytest.mark.parametrize(
    ("token", "code", "words"),
    [
        (lambda: hs256(ttl=-600), "token_expired", "expired"),
        (lambda: hs256(secret="x" * 40), "invalid_token", "signature"),
        (lambda: "garbage", "invalid_token", "malformed"),
    ],
)
async def test_bad_handshake_token_gets_401_with_reason(
    app: SlurmcastApp, token: Callable[[], str], code: str, words: str
) -> None:
    refusal = await handshake_refusal(
        url(app), additional_headers={"Authorization": f"Bearer {token()}"}
    )
    assert refusal.response.status_code == 401
    body = refusal.response.body.decode()
    assert f'"code":"{code}"' in body and words in body


async def test_first_message_auth(app: SlurmcastApp) -> None:
    async with Client.connect(app) as client:
        reply = await client.request({"type": "auth", "token": hs256("carol"), "id": 1})
        assert reply["type"] == "authenticated" and reply["user"] == "carol" and reply["id"] == 1
        await client.subscribe("nodes")


async def test_nothing_before_auth_and_bad_first_token_closes_1008(app: SlurmcastApp) -> None:
    async with Client.connect(app) as client:
        reply = await client.request({"type": "subscribe", "channel": "jobs"})
        assert reply["code"] == "unauthorized"
        reply = await client.request({"type": "auth", "token": hs256(ttl=-600)})
        assert reply["code"] == "token_expired"
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1008 and "Authentication failed" in info.value.rcvd.reason


async def test_missing_auth_message_closes_1008_after_timeout() -> None:
    async with running_server(**JWT, auth_timeout=0.3) as app, Client.connect(app) as client:
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1008
        assert info.value.rcvd.reason == "Authentication failed: no auth message within 0.3s"


async def test_expiry_then_refresh_keeps_the_connection() -> None:
    async with running_server(**JWT, refresh_grace=30) as app, Client.connect(app) as client:
        await client.request({"type": "auth", "token": hs256(ttl=1)})
        await client.subscribe("jobs")
        warning = await client.recv()
        assert warning["type"] == "error" and warning["code"] == "token_expired"
        reply = await client.request({"type": "refresh", "token": hs256(ttl=3600)})
        assert reply["type"] == "refreshed"
        assert await client.request({"type": "ping"}) == {"type": "pong"}


async def test_refresh_before_expiry_moves_the_servers_deadline(app: SlurmcastApp) -> None:
    async with Client.connect(app) as client:
        first = await client.request({"type": "auth", "token": hs256(ttl=60)})
        refreshed = await client.request({"type": "refresh", "token": hs256(ttl=3600)})
        assert refreshed["type"] == "refreshed" and refreshed["expires_at"] > first["expires_at"]
        # The hub sees Subscribers; the WebSocket server's clients are WsConnections.
        (connection,) = cast(set[WsConnection], app.hub._clients)
        assert connection.session is not None
        assert connection.session.deadline == connection.session.principal.expires_at
        assert connection.session.deadline is not None
        assert connection.session.deadline > time.time() + 3000


async def test_expired_without_refresh_closes_4001() -> None:
    async with running_server(**JWT, refresh_grace=0.3) as app, Client.connect(app) as client:
        await client.request({"type": "auth", "token": hs256(ttl=1)})
        assert (await client.recv())["code"] == "token_expired"
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 4001


async def test_private_channels(app: SlurmcastApp) -> None:
    async with Client.connect(app) as alice:
        await alice.request({"type": "auth", "token": hs256("alice")})
        reply = await alice.request({"type": "subscribe", "channel": "user:bob"})
        assert reply["code"] == "forbidden"
        await alice.subscribe("user:alice")
    async with Client.connect(app) as root:
        await root.request({"type": "auth", "token": admin()})
        await root.subscribe("user:bob")


async def test_users_see_only_their_own_jobs_admins_see_all() -> None:
    fast = {**JWT, "sim_speed": 600.0, "jobs_interval": 0.05, "nodes_interval": 0.05}
    async with (
        running_server(**fast) as app,
        Client.connect(app) as alice,
        Client.connect(app) as root,
    ):
        await alice.request({"type": "auth", "token": hs256("alice")})
        await root.request({"type": "auth", "token": admin()})
        await alice.subscribe("jobs", "notifications", "user:alice")
        await root.subscribe("jobs", "notifications")
        async with Recorder.on(alice) as alice_seen, Recorder.on(root) as root_seen:
            # Wait until the admin has seen jobs of alice and of someone else.
            await root_seen.expect(
                lambda m: m["type"] == "job_submitted" and m["data"]["user"] == "alice"
            )
            await root_seen.expect(
                lambda m: m["type"] == "job_submitted" and m["data"]["user"] != "alice"
            )
            await alice_seen.expect(lambda m: m["type"] == "job_submitted")
            await alice_seen.expect(lambda m: m["channel"] == "user:alice")
        job_messages = [
            m
            for m in alice_seen.messages
            if m["channel"] in ("jobs", "notifications", "user:alice")
        ]
        owners = {m["data"].get("user") for m in job_messages}
        assert owners == {"alice"}
        assert any(
            m["channel"] == "user:alice" and m["type"] == "notification" for m in job_messages
        )


async def test_everyone_sees_all_jobs_when_visibility_is_all() -> None:
    fast = {**JWT, "sim_speed": 600.0, "jobs_interval": 0.05, "jobs_visibility": "all"}
    async with running_server(**fast) as app, Client.connect(app) as bob:
        await bob.request({"type": "auth", "token": hs256("bob")})
        await bob.subscribe("jobs")
        await bob.wait_for(lambda m: m["type"] == "job_submitted" and m["data"]["user"] != "bob")


async def test_client_broadcast_for_admins_only(app: SlurmcastApp) -> None:
    async with Client.connect(app) as user, Client.connect(app) as root:
        await user.request({"type": "auth", "token": hs256("alice")})
        await root.request({"type": "auth", "token": admin()})
        await user.subscribe("alerts")
        message = {"type": "broadcast", "channel": "alerts", "message": {"text": "hi"}, "id": 4}
        assert (await user.request(message))["code"] == "forbidden"
        reply = await root.request(message)
        assert reply == {"type": "published", "channel": "alerts", "delivered": 1, "id": 4}
        pushed = await user.recv()
        assert pushed["type"] == "broadcast" and pushed["data"] == {"text": "hi"}
        typed = {**message, "message": {"type": "drain_notice", "data": {"node": "n1"}}, "id": 5}
        assert (await root.request(typed))["delivered"] == 1
        pushed = await user.recv()
        assert pushed["type"] == "drain_notice" and pushed["data"] == {"node": "n1"}
        forged = {**message, "message": {"type": "job_update", "data": {}}, "id": 6}
        refused = await root.request(forged)
        assert refused["code"] == "reserved_type" and refused["id"] == 6


async def test_rate_limit_is_answered_then_enforced() -> None:
    limits = {**JWT, "rate_limit": 60, "rate_burst": 3, "flood_warnings": 2}
    async with (
        running_server(**limits) as app,
        Client.connect(app, additional_headers={"Authorization": f"Bearer {hs256()}"}) as client,
    ):
        for _ in range(3):
            await client.send({"type": "ping"})
        limited = None
        for _ in range(6):
            await client.send({"type": "ping"})
        codes = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                message = await client.recv()
                codes.append(message.get("code", message["type"]))
                if message.get("code") == "rate_limited":
                    limited = message
        assert codes[:3] == ["pong"] * 3 and "rate_limited" in codes
        assert limited is not None and limited["retry_after"] > 0
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1008


async def test_connection_limits() -> None:
    async with (
        running_server(**JWT, max_connections=2) as app,
        Client.connect(app),
        Client.connect(app),
    ):
        await eventually(lambda: http_json(app, "GET", "/health"), lambda r: r[1]["clients"] == 2)
        refusal = await handshake_refusal(url(app))
        assert refusal.response.status_code == 503
    async with running_server(**JWT, max_connections_per_ip=1) as app, Client.connect(app):
        await eventually(lambda: http_json(app, "GET", "/health"), lambda r: r[1]["clients"] == 1)
        assert (await handshake_refusal(url(app))).response.status_code == 429


async def test_per_user_limit_at_handshake_and_at_first_message() -> None:
    async with running_server(**JWT, max_connections_per_user=1) as app:
        headers = {"Authorization": f"Bearer {hs256('alice')}"}
        async with connect(url(app), additional_headers=headers) as first:
            assert await Client(first).request({"type": "ping"}) == {"type": "pong"}
            refusal = await handshake_refusal(url(app), additional_headers=headers)
            assert refusal.response.status_code == 429
            async with Client.connect(app) as late:
                await late.send({"type": "auth", "token": hs256("alice")})
                with pytest.raises(ConnectionClosed) as info:
                    while True:
                        await late.recv()
                assert info.value.rcvd is not None
                assert info.value.rcvd.code == 4029


async def test_origin_allow_list() -> None:
    async with running_server(**JWT, allowed_origins="https://dash.example.org") as app:
        refusal = await handshake_refusal(url(app), origin="https://evil.example.com")
        assert refusal.response.status_code == 403
        async with connect(url(app), origin=Origin("https://dash.example.org")):
            pass
        async with connect(url(app)):  # scripts send no Origin
            pass


async def test_denials_are_logged_with_user_and_address_never_the_token(
    app: SlurmcastApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token = hs256("alice")
    async with Client.connect(app) as client:
        await client.request({"type": "auth", "token": token})
        await client.request({"type": "subscribe", "channel": "user:bob"})
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("user alice" in m and "127.0.0.1" in m and "forbidden" in m for m in refused)
    assert all(token not in r.getMessage() for r in caplog.records)


async def test_rs256_and_es256_tokens_over_a_real_socket(tmp_path: Path) -> None:
    from support.tokens import make_keys

    rsa_pair, ec_pair, jwks = make_keys(tmp_path)
    async with running_server(auth="jwt", jwks=str(jwks)) as app:
        for pair, user in ((rsa_pair, "rsauser"), (ec_pair, "ecuser")):
            async with Client.connect(app) as client:
                reply = await client.request({"type": "auth", "token": pair.token(user)})
                assert reply["type"] == "authenticated" and reply["user"] == user
    async with running_server(auth="jwt", jwt_public_key=str(rsa_pair.public_pem_file)) as app:
        headers = {"Authorization": f"Bearer {rsa_pair.token('bob')}"}
        async with connect(url(app), additional_headers=headers) as ws:
            assert await Client(ws).request({"type": "ping"}) == {"type": "pong"}
        # An HS256 token means nothing to a server that only knows a public key.
        refusal = await handshake_refusal(
            url(app), additional_headers={"Authorization": f"Bearer {hs256()}"}
        )
        assert refusal.response.status_code == 401


async def test_open_server_on_a_public_address_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="slurmcast")
    async with running_server(host="0.0.0.0"):
        pass
    assert any("authentication is disabled" in r.getMessage() for r in caplog.records)
    caplog.clear()
    async with running_server(**JWT, host="0.0.0.0"):
        pass
    assert not any("authentication is disabled" in r.getMessage() for r in caplog.records)
