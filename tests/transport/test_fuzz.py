"""Random and malformed frames and tokens never crash the server or disturb others.

A real server runs in a background thread for the whole module; hypothesis
throws frames at it from fresh connections while a well-behaved client,
connected throughout, must keep getting answers.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from slurmcast.app import SlurmcastApp

from support.server import server_settings
from support.tokens import SECRET, hs256

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
TYPES = st.sampled_from(
    ["auth", "refresh", "subscribe", "unsubscribe", "ping", "broadcast", "pong", "", "SUBSCRIBE"]
)
CHANNELS = st.sampled_from(
    ["jobs", "nodes", "alerts", "user:alice", "user:bob", "user:", "all", "", 3, None]
)
TOKENS = st.one_of(
    st.text(max_size=60),
    st.sampled_from([hs256(ttl=-600), hs256(secret="z" * 40), "a.b.c", "e30.e30.", hs256()]),
)


@st.composite
def requests(draw: st.DrawFn) -> str | bytes:
    shape = draw(st.integers(0, 4))
    if shape == 0:
        return draw(st.text(max_size=200))
    if shape == 1:
        return draw(st.binary(max_size=200))
    if shape == 2:
        return json.dumps(draw(JSON_VALUES))
    message: dict[str, Any] = {"type": draw(TYPES)}
    keys = st.sampled_from(["channel", "channels", "id", "token", "message"])
    for key in draw(st.lists(keys, max_size=4)):
        if key == "token":
            message[key] = draw(TOKENS)
        elif key == "channel":
            message[key] = draw(CHANNELS)
        elif key == "channels":
            message[key] = draw(st.lists(CHANNELS, max_size=3) | JSON_VALUES)
        elif key == "message":
            message[key] = draw(st.dictionaries(st.text(max_size=5), JSON_VALUES) | JSON_VALUES)
        else:
            message[key] = draw(JSON_VALUES)
    return json.dumps(message)


class ServerThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.data_dir = tempfile.TemporaryDirectory(prefix="slurmcast-fuzz-")
        self.app = SlurmcastApp(
            server_settings(
                auth="jwt",
                jwt_secret=SECRET,
                # The bystander pings once per example: never rate-limit it here.
                rate_limit=10_000_000,
                rate_burst=10_000,
                data_dir=self.data_dir.name,
            )
        )
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.app.start())
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
        self.data_dir.cleanup()

    def url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.app.ws.port}/{query}"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    running = ServerThread()
    running.thread.start()
    assert running.ready.wait(30)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def bystander(server: ServerThread) -> Iterator[ClientConnection]:
    with connect(server.url(f"?token={hs256('alice')}")) as ws:
        ws.send(json.dumps({"type": "subscribe", "channel": "jobs"}))
        assert json.loads(ws.recv(10))["type"] == "subscribed"
        yield ws


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    frames=st.lists(requests(), min_size=1, max_size=8),
    how=st.sampled_from(["handshake", "first message", "no token"]),
    token=st.one_of(st.just(hs256("alice")), st.just(hs256("root", roles=["admin"])), TOKENS),
)
def test_garbage_never_breaks_the_server(
    server: ServerThread,
    bystander: ClientConnection,
    frames: list[str | bytes],
    how: str,
    token: str,
) -> None:
    query = "?token=" + quote(token, safe="") if how == "handshake" else ""
    if how == "first message":
        frames = [json.dumps({"type": "auth", "token": token}), *frames]
    try:
        with connect(server.url(query), open_timeout=10, close_timeout=2) as ws:
            for frame in frames:
                ws.send(frame)
            for _ in frames:
                reply = json.loads(ws.recv(5))
                # Every answer is one of the documented kinds, never a traceback.
                assert reply["type"] in {
                    "error",
                    "authenticated",
                    "refreshed",
                    "subscribed",
                    "unsubscribed",
                    "pong",
                    "published",
                    "broadcast",
                }, reply
                if reply["type"] == "error":
                    assert reply["code"] and reply["message"]
    except InvalidStatus as refused:
        assert refused.response.status_code in (400, 401), refused.response.status_code
    except ConnectionClosed as closed:
        # Only the documented closes: auth failure or policy (1008), too big (1009).
        assert closed.rcvd is None or closed.rcvd.code in (1000, 1008, 1009), closed.rcvd
    # Meanwhile the well-behaved client is served as usual (channel messages
    # may arrive before the pong; they are skipped).
    bystander.send(json.dumps({"type": "ping", "id": 1}))
    while (answer := json.loads(bystander.recv(10))).get("channel"):
        pass
    assert answer == {"type": "pong", "id": 1}
