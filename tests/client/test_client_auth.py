"""The client on a ``--auth jwt`` server: tokens per connection, refresh, expiry, refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypedDict, TypeVar

import pytest

from slurmcast.app import SlurmcastApp
from slurmcast.client import AuthenticationFailed, ClientError, ConnectionState, SlurmcastClient

from support.server import WAIT, running_server
from support.tokens import SECRET, admin, hs256
from support.waiting import eventually, take

T = TypeVar("T")


class Backoff(TypedDict):
    """Backoff keyword arguments of ``SlurmcastClient``."""

    backoff_initial: float
    backoff_max: float


# No leeway: a token's expiry is its `exp`, to the second.
JWT = {
    "auth": "jwt",
    "jwt_secret": SECRET,
    "jwt_leeway": 0.0,
    "jobs_interval": 3600.0,
    "nodes_interval": 3600.0,
    "metrics_interval": 3600.0,
}
FAST_BACKOFF: Backoff = {"backoff_initial": 0.02, "backoff_max": 0.2}


class Tokens:
    """A token provider minting the given tokens in turn (the last one again and again)."""

    def __init__(self, *makers: Callable[[], str]) -> None:
        self.makers = makers
        self.calls = 0

    def __call__(self) -> str:
        maker = self.makers[min(self.calls, len(self.makers) - 1)]
        self.calls += 1
        return maker()


class States:
    """An ``on_state`` hook that can be awaited."""

    def __init__(self) -> None:
        self.seen: list[ConnectionState] = []
        self._changed = asyncio.Event()

    def __call__(self, state: ConnectionState) -> None:
        self.seen.append(state)
        self._changed.set()

    async def reach(self, state: ConnectionState, times: int = 1) -> None:
        async with asyncio.timeout(WAIT):
            while self.seen.count(state) < times:
                self._changed.clear()
                await self._changed.wait()


def url(app: SlurmcastApp) -> str:
    return f"ws://127.0.0.1:{app.ws.port}/"


async def job_of(app: SlurmcastApp, user: str, job_id: str) -> None:
    data = {"job_id": job_id, "user": user, "status": "RUNNING"}
    await app.node.publish("jobs", "job_update", data, datetime.now(UTC), user)


async def _value(value: T) -> T:
    return value


async def test_the_token_provider_is_asked_for_every_connection() -> None:
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return hs256("alice")

    states = States()
    async with (
        running_server(**JWT) as app,
        SlurmcastClient(
            url(app), token_provider=provider, on_state=states, **FAST_BACKOFF
        ) as client,
    ):
        assert client.user == "alice" and calls == 1
        sub = await client.subscribe("jobs")
        await job_of(app, "alice", "1")
        assert client._ws is not None
        await client._ws.close()
        await states.reach(ConnectionState.CONNECTED, 2)
        assert calls == 2
        await job_of(app, "bob", "2")  # not alice's: never delivered
        await job_of(app, "alice", "3")
        async with asyncio.timeout(WAIT):
            received = [await anext(sub), await anext(sub)]
        assert [m["data"]["job_id"] for m in received] == ["1", "3"]
        assert sub.resyncs == 0


async def test_an_expiring_token_is_refreshed_without_reconnecting() -> None:
    tokens = Tokens(lambda: hs256("alice", ttl=2), lambda: hs256("alice", ttl=3600))
    states = States()
    async with (
        running_server(**JWT, refresh_grace=30) as app,
        SlurmcastClient(url(app), token_provider=tokens, on_state=states) as client,
    ):
        first = client.expires_at
        assert first is not None
        # The server warns at expiry; the client answers with the provider's new token.
        await eventually(lambda: _value(client.expires_at), lambda expires: expires != first)
        assert tokens.calls == 2
        assert await client.ping() >= 0
        assert states.seen.count(ConnectionState.CONNECTED) == 1
        assert client.state is ConnectionState.CONNECTED


async def test_after_a_4001_close_the_client_reconnects_with_a_new_token() -> None:
    tokens = Tokens(
        lambda: hs256("alice", ttl=2),  # expires soon...
        lambda: hs256("alice", ttl=-60),  # ...the refresh is refused: the server closes 4001
        lambda: hs256("alice", ttl=3600),  # the reconnection's token
    )
    states = States()
    async with (
        running_server(**JWT, refresh_grace=0.3) as app,
        SlurmcastClient(url(app), token_provider=tokens, on_state=states, **FAST_BACKOFF) as client,
    ):
        sub = await client.subscribe("jobs")
        await job_of(app, "alice", "1")
        await states.reach(ConnectionState.CONNECTED, 2)
        assert tokens.calls == 3
        await job_of(app, "alice", "2")
        async with asyncio.timeout(WAIT):
            received = [await anext(sub), await anext(sub)]
        assert [m["data"]["job_id"] for m in received] == ["1", "2"]
        assert received[1]["offset"] == received[0]["offset"] + 1 and sub.resyncs == 0


async def test_an_expired_static_token_fails_clearly() -> None:
    async with (
        running_server(**JWT, refresh_grace=0.3) as app,
        SlurmcastClient(url(app), token=hs256("alice", ttl=2), **FAST_BACKOFF) as client,
    ):
        sub = await client.subscribe("jobs")
        with pytest.raises(AuthenticationFailed) as info:
            async with asyncio.timeout(WAIT):
                async for _ in sub:
                    pass
        assert info.value.code == "token_expired" and "token_provider" in info.value.message
        assert client.state is ConnectionState.FAILED and client.error is info.value
        with pytest.raises(AuthenticationFailed):
            await client.ping()


async def test_a_bad_token_fails_at_once_and_a_provider_is_asked_only_once_more() -> None:
    async with running_server(**JWT) as app:
        states = States()
        client = SlurmcastClient(url(app), token="garbage", on_state=states)
        with pytest.raises(AuthenticationFailed) as info:
            await client.connect()
        assert info.value.code == "invalid_token" and "malformed" in info.value.message
        assert client.state is ConnectionState.FAILED
        assert states.seen == [ConnectionState.CONNECTING, ConnectionState.FAILED]
        await client.close()

        tokens = Tokens(lambda: hs256("alice", secret="not-the-servers-secret-0123456789abcdef"))
        client = SlurmcastClient(url(app), token_provider=tokens)
        with pytest.raises(AuthenticationFailed) as info:
            await client.connect()
        assert "signature" in info.value.message and tokens.calls == 2
        await client.close()


async def test_a_token_refused_on_reconnection_ends_in_the_failed_state() -> None:
    bad = "not-the-servers-secret-0123456789abcdef"
    tokens = Tokens(lambda: hs256("alice"), lambda: hs256("alice", secret=bad))
    states = States()
    async with (
        running_server(**JWT) as app,
        SlurmcastClient(url(app), token_provider=tokens, on_state=states, **FAST_BACKOFF) as client,
    ):
        sub = await client.subscribe("jobs")
        assert client._ws is not None
        await client._ws.close()
        await states.reach(ConnectionState.FAILED)
        assert tokens.calls == 3  # the first connection, then the refused token twice
        assert client.error is not None and client.error.code == "invalid_token"
        with pytest.raises(AuthenticationFailed):
            await anext(sub)


async def test_an_admin_broadcasts_and_a_user_is_refused() -> None:
    async with (
        running_server(**JWT) as app,
        SlurmcastClient(url(app), token=admin()) as root,
        SlurmcastClient(url(app), token=hs256("alice")) as alice,
    ):
        messages = await alice.subscribe("alerts")
        assert await root.broadcast("alerts", {"text": "hi"}) == 1
        assert await root.broadcast("alerts", {"type": "maintenance", "data": {"at": 6}}) == 1
        got = await take(messages, 2)
        assert [(m["type"], m["data"]) for m in got] == [
            ("broadcast", {"text": "hi"}),
            ("maintenance", {"at": 6}),
        ]
        with pytest.raises(ClientError) as refused:
            await alice.broadcast("alerts", {"text": "me too"})
        assert refused.value.code == "forbidden"
        with pytest.raises(ClientError) as reserved:
            await root.broadcast("jobs", {"type": "job_update", "data": {}})
        assert reserved.value.code == "reserved_type"
