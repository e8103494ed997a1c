"""Random and malformed frames and tokens never crash the server or disturb others.

A real server runs in a background thread for the whole module; hypothesis
throws frames at it from fresh connections while a well-behaved client,
connected throughout, must keep getting answers. Every request type is
fuzzed, with the values JSON encoders choke on: lone surrogates, integers
beyond 64 bits, NaN and 1e300, nesting a thousand deep. The invariant: a
typed error (or a documented close), never 1011, never a traceback in the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from slurmcast.core.protocol import REQUEST_TYPES

from support.threaded import ServerThread, Tracebacks, collect_tracebacks, serving
from support.tokens import SECRET, hs256

#: Strings with what UTF-8 cannot carry (json.dumps escapes them as \\udXXX).
SURROGATES = st.sampled_from(["\ud800", "a\udfffb", "\udbff\udc00\ud800", "\x00", "é\u2028"])
TEXT = st.text(max_size=20) | SURROGATES
#: Numbers at and beyond every limit: 2**53, 2**63, 2**64, and what floats cannot hold.
ODD_NUMBERS = st.sampled_from(
    [2**53, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 1e300, -1e300, 1e-320]
) | st.floats(allow_nan=True, allow_infinity=True)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | ODD_NUMBERS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
#: Nesting as deep as the decoder allows (1024), and deeper.
DEPTHS = st.sampled_from([33, 255, 256, 1023, 1024, 1025, 3000])
# Every request type, and near misses.
TYPES = st.sampled_from([*REQUEST_TYPES, "pong", "", "SUBSCRIBE"])
CHANNELS = st.sampled_from(
    ["jobs", "nodes", "alerts", "user:alice", "user:bob", "user:", "all", "", 3, None, "\ud800"]
)
TOKENS = st.one_of(
    st.text(max_size=60),
    SURROGATES,
    st.sampled_from(
        [
            hs256(ttl=-600),
            hs256(secret="z" * 40),
            "a.b.c",
            "e30.e30.",
            hs256(),
            hs256(exp="99999999999"),
            hs256(exp=1e300),
            hs256(exp=float("inf")),
            hs256(exp=float("nan")),
            hs256(iat=10**30),
            hs256(sub="bob\n"),
            hs256(roles=["\ud800", "admin"]),
            hs256(channels=[["jobs"]]),
            hs256("root", roles=["admin"], channels=["alerts"]),
        ]
    ),
)
POSITIONS = (
    st.fixed_dictionaries(
        {"offset": st.integers(min_value=-1) | ODD_NUMBERS, "epoch": TEXT | st.integers()}
    )
    | JSON_VALUES
)
FIELDS: dict[str, Any] = {
    "channel": CHANNELS,
    "channels": st.lists(CHANNELS, max_size=3) | JSON_VALUES,
    "id": JSON_VALUES | ODD_NUMBERS | SURROGATES,
    "token": TOKENS,
    "message": st.dictionaries(TEXT, JSON_VALUES) | JSON_VALUES,
    "since": POSITIONS,
    "limit": st.integers() | ODD_NUMBERS | JSON_VALUES,
    "snapshot": st.booleans() | JSON_VALUES,
    "filter": st.dictionaries(
        st.sampled_from(["user", "account", "status", "node", "job_id", "x"]) | TEXT,
        TEXT | ODD_NUMBERS | st.lists(TEXT | st.integers(), max_size=3) | JSON_VALUES,
        max_size=3,
    )
    | JSON_VALUES,
    "ids": st.lists(TEXT, max_size=4) | JSON_VALUES,
}
#: The id of the ping that ends every example's frames.
END = "end-of-example"
#: Whatever a request may be answered with; anything else must be a channel's message.
REPLY_TYPES = {
    "error",
    "authenticated",
    "refreshed",
    "subscribed",
    "unsubscribed",
    "pong",
    "published",
    "history",
    "marked_read",
    "snapshot",
}


@st.composite
def requests(draw: st.DrawFn) -> str | bytes:
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return draw(st.text(max_size=200))
    if shape == 1:
        return draw(st.binary(max_size=200))
    if shape == 2:
        return json.dumps(draw(JSON_VALUES))
    message: dict[str, Any] = {"type": draw(TYPES)}
    for key in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=5)):
        message[key] = draw(FIELDS[key])
    text = json.dumps(message)
    if shape == 3:
        # One field nested deeper than anything should go (json.dumps would recurse).
        key = draw(st.sampled_from(["id", "message", "filter", "since", "channels", "ids"]))
        depth = draw(DEPTHS)
        nested = "[" * depth + "]" * depth
        message.pop(key, None)
        inner = json.dumps(message)[1:-1]
        text = "{" + (inner + ", " if inner else "") + json.dumps(key) + ": " + nested + "}"
    return text


class WsServer(ServerThread):
    def __init__(self) -> None:
        super().__init__(
            "slurmcast-fuzz-",
            auth="jwt",
            jwt_secret=SECRET,
            # The bystander pings once per example: never rate-limit it here.
            rate_limit=10_000_000,
            rate_burst=10_000,
        )

    def url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.app.ws.port}/{query}"


@pytest.fixture(scope="module")
def tracebacks() -> Iterator[Tracebacks]:
    with collect_tracebacks() as handler:
        yield handler


@pytest.fixture(scope="module")
def server(tracebacks: Tracebacks) -> Iterator[WsServer]:
    with serving(WsServer()) as running:
        yield running


@pytest.fixture(scope="module")
def bystander(server: WsServer) -> Iterator[ClientConnection]:
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
    server: WsServer,
    bystander: ClientConnection,
    tracebacks: Tracebacks,
    frames: list[str | bytes],
    how: str,
    token: str,
) -> None:
    raw = token.encode("utf-8", "surrogatepass")
    query = "?token=" + quote(raw, safe="") if how == "handshake" else ""
    if how == "first message":
        frames = [json.dumps({"type": "auth", "token": token}), *frames]
    try:
        with connect(server.url(query), open_timeout=10, close_timeout=2) as ws:
            for frame in frames:
                ws.send(frame)
            # Answered in order: once this one is, every frame before it was handled.
            ws.send(json.dumps({"type": "ping", "id": END}))
            while True:
                reply = json.loads(ws.recv(5))
                if reply.get("type") not in REPLY_TYPES and "channel" in reply:
                    continue  # a publication on a channel this connection subscribed to
                # Every answer is one of the documented kinds, never a traceback.
                assert reply["type"] in REPLY_TYPES, reply
                if reply["type"] == "error":
                    assert reply["code"] and reply["message"]
                if reply.get("id") == END:
                    break
    except InvalidStatus as refused:
        assert refused.response.status_code in (400, 401), refused.response.status_code
    except ConnectionClosed as closed:
        # Only the documented closes: auth failure or policy (1008), too big
        # (1009), not UTF-8 (1007); never 1011.
        assert closed.rcvd is None or closed.rcvd.code in (1000, 1007, 1008, 1009), closed.rcvd
    assert not tracebacks.records, [r.getMessage() for r in tracebacks.records]
    # Meanwhile the well-behaved client is served as usual (channel messages
    # may arrive before the pong; they are skipped).
    bystander.send(json.dumps({"type": "ping", "id": 1}))
    while (answer := json.loads(bystander.recv(10))).get("channel"):
        pass
    assert answer == {"type": "pong", "id": 1}
