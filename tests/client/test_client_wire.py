"""Wire formats and compression: msgpack clients, clients without deflate, older servers.

A msgpack client must be indistinguishable from a JSON client to the
application: same messages, same replies, same errors. The frames are
watched where the client encodes and decodes them, so a client that quietly
kept speaking JSON would fail these tests.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate

import slurmcast.client.connection as connection_module
import slurmcast.client.opening as opening_module
from slurmcast.app import SlurmcastApp
from slurmcast.client import (
    AuthenticationFailed,
    ClientError,
    ConnectionState,
    Position,
    SlurmcastClient,
    WireFormat,
)
from slurmcast.client.wire import MSGPACK_SUBPROTOCOL, UndecodableFrame, decode, encode
from slurmcast.transport.encoding import MSGPACK_SUBPROTOCOL as SERVER_MSGPACK_SUBPROTOCOL

from support.server import http_json, running_server
from support.tokens import SECRET, hs256
from support.waiting import eventually, take

T = TypeVar("T")

QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}
#: Values JSON and msgpack could disagree on if the client decoded carelessly.
AWKWARD = {
    "text": "näïve 🚀 \u2028 \x00",
    "float": 0.1,
    "whole_float": 2.0,
    "negative": -7,
    "big": 2**63 - 1,
    "flags": [True, False, None],
    "nested": {"empty": {}, "list": [], "deep": [[{"k": "v"}]]},
}


def url(app: SlurmcastApp) -> str:
    return f"ws://127.0.0.1:{app.ws.port}/"


async def _value(value: T) -> T:
    return value


class Frames:
    """The data of every frame the client sends and receives, by kind (text or binary)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        self.received: list[str] = []
        for module in (connection_module, opening_module):
            monkeypatch.setattr(module, "encode", self._encode)
            monkeypatch.setattr(module, "decode", self._decode)

    @staticmethod
    def kind(data: str | bytes) -> str:
        return "text" if isinstance(data, str) else "binary"

    def _encode(self, message: dict[str, Any], wire_format: WireFormat) -> str | bytes:
        data = encode(message, wire_format)
        self.sent.append(self.kind(data))
        return data

    def _decode(self, frame: str | bytes, wire_format: WireFormat) -> Any:
        self.received.append(self.kind(frame))
        return decode(frame, wire_format)


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> Frames:
    return Frames(monkeypatch)


@pytest.fixture
async def app() -> AsyncIterator[SlurmcastApp]:
    async with running_server(**QUIET) as app:
        yield app


async def _polled(app: SlurmcastApp) -> bool:
    return app.monitor.jobs is not None and app.monitor.nodes is not None


def test_the_subprotocol_is_the_servers() -> None:
    assert MSGPACK_SUBPROTOCOL == SERVER_MSGPACK_SUBPROTOCOL


def test_frames_decode_by_the_negotiated_format() -> None:
    request = {"type": "ping", "id": 3, "data": AWKWARD}
    packed = encode(request, "msgpack")
    assert isinstance(packed, bytes) and decode(packed, "msgpack") == request
    text = encode(request, "json")
    assert isinstance(text, str) and decode(text, "json") == request
    # A text frame is JSON whatever was negotiated.
    assert decode(text, "msgpack") == request
    with pytest.raises(UndecodableFrame, match="not msgpack"):
        decode(b"\xc1", "msgpack")
    with pytest.raises(UndecodableFrame, match="not msgpack"):
        decode(packed + b"\x01", "msgpack")  # two objects in one frame
    with pytest.raises(UndecodableFrame, match="not JSON"):
        decode(packed, "json")


async def test_msgpack_is_negotiated_and_used_both_ways(app: SlurmcastApp, frames: Frames) -> None:
    async with SlurmcastClient(url(app), wire_format="msgpack") as client:
        ws = client._ws
        assert ws is not None and ws.subprotocol == MSGPACK_SUBPROTOCOL
        # msgpack and deflate go together.
        (deflate,) = ws.protocol.extensions
        assert isinstance(deflate, PerMessageDeflate)
        sub = await client.subscribe("jobs")
        await app.node.publish("jobs", "broadcast", AWKWARD, datetime.now(UTC))
        (message,) = await take(sub, 1)
        assert message["data"] == AWKWARD
        assert isinstance(message["offset"], int) and isinstance(message["epoch"], str)
        assert await client.ping() >= 0
    assert frames.sent and set(frames.sent) == {"binary"}
    assert frames.received and set(frames.received) == {"binary"}


async def test_a_msgpack_and_a_json_client_get_the_same_messages(app: SlurmcastApp) -> None:
    await eventually(lambda: _polled(app), bool)
    async with (
        SlurmcastClient(url(app)) as json_client,
        SlurmcastClient(url(app), wire_format="msgpack") as msgpack_client,
    ):
        assert json_client._ws is not None and json_client._ws.subprotocol is None
        streams = []
        for client in (json_client, msgpack_client):
            nodes = await client.subscribe("nodes", snapshot=True)
            jobs = await client.subscribe("jobs", filter={"user": "alice"})
            everyone = await client.subscribe("all")
            streams.append((nodes, jobs, everyone))
        (json_snapshot,) = await take(streams[0][0], 1)
        (msgpack_snapshot,) = await take(streams[1][0], 1)
        assert json_snapshot["type"] == "snapshot" and json_snapshot["data"]
        assert msgpack_snapshot == json_snapshot
        now = datetime.now(UTC)
        for user in ("bob", "alice", "carol", "alice"):
            data = {"job_id": user, "user": user, "status": "RUNNING", "extra": AWKWARD}
            await app.node.publish("jobs", "job_update", data, now, user)
        status, _ = await http_json(app, "POST", "/broadcast", {"message": AWKWARD})
        assert status == 200
        json_jobs, msgpack_jobs = await take(streams[0][1], 2), await take(streams[1][1], 2)
        assert [m["data"]["user"] for m in json_jobs] == ["alice", "alice"]
        assert msgpack_jobs == json_jobs
        json_all, msgpack_all = await take(streams[0][2], 1), await take(streams[1][2], 1)
        assert json_all[0]["data"] == AWKWARD and msgpack_all == json_all
        json_page = await json_client.history("jobs", limit=3)
        msgpack_page = await msgpack_client.history("jobs", limit=3)
        assert len(json_page.publications) == 3 and msgpack_page == json_page


async def test_msgpack_requests_are_answered_and_refused_like_json_ones(
    app: SlurmcastApp, frames: Frames
) -> None:
    for seq in range(5):
        await app.node.publish("jobs", "broadcast", {"seq": seq}, datetime.now(UTC))
    async with SlurmcastClient(url(app), wire_format="msgpack") as client:
        page = await client.history("jobs", limit=3)
        assert [p["data"]["seq"] for p in page.publications] == [2, 3, 4]
        assert page.position is not None
        since = Position(page.position.offset - 1, page.position.epoch)
        page = await client.history("jobs", since=since)
        assert [p["data"]["seq"] for p in page.publications] == [4] and page.complete is True
        assert await client.mark_read(["notif-0000000000000000"]) == []
        with pytest.raises(ClientError) as info:
            await client.history("jobs", limit=0)
        assert info.value.code == "invalid_field"
        with pytest.raises(ClientError) as info:
            await client.subscribe("gpus")
        assert info.value.code == "unknown_channel"
        with pytest.raises(ClientError) as info:
            await client.subscribe("notifications", snapshot=True)
        assert info.value.code == "snapshot_not_available"
        assert await client.ping() >= 0
    assert set(frames.sent) == {"binary"} and set(frames.received) == {"binary"}


async def test_msgpack_authentication_and_refresh() -> None:
    jwt = {"auth": "jwt", "jwt_secret": SECRET, "jwt_leeway": 0.0, **QUIET}
    tokens = iter([hs256("alice", ttl=2), hs256("alice", ttl=3600)])
    async with running_server(**jwt, refresh_grace=30) as app:
        async with SlurmcastClient(
            url(app), wire_format="msgpack", token_provider=lambda: next(tokens)
        ) as client:
            assert client.user == "alice"
            first = client.expires_at
            sub = await client.subscribe("jobs")
            await eventually(lambda: _value(client.expires_at), lambda expires: expires != first)
            data = {"job_id": "1", "user": "alice", "status": "RUNNING"}
            await app.node.publish("jobs", "job_update", data, datetime.now(UTC), "alice")
            assert (await take(sub, 1))[0]["data"] == data
        refused = SlurmcastClient(url(app), wire_format="msgpack", token="garbage")
        with pytest.raises(AuthenticationFailed) as info:
            await refused.connect()
        assert info.value.code == "invalid_token" and "malformed" in info.value.message
        await refused.close()


async def test_a_server_that_does_not_agree_to_msgpack_gets_json(
    monkeypatch: pytest.MonkeyPatch, frames: Frames, caplog: pytest.LogCaptureFixture
) -> None:
    # What an older server does: it ignores the offered subprotocol.
    monkeypatch.setattr(
        "slurmcast.transport.ws_server._select_subprotocol", lambda protocol, offered: None
    )
    async with running_server(**QUIET) as app:
        with caplog.at_level(logging.INFO, logger="slurmcast.client"):
            client = SlurmcastClient(url(app), wire_format="msgpack")
            await client.connect()
        try:
            assert client._ws is not None and client._ws.subprotocol is None
            assert f"did not agree to the {MSGPACK_SUBPROTOCOL} subprotocol" in caplog.text
            sub = await client.subscribe("jobs")
            await app.node.publish("jobs", "broadcast", AWKWARD, datetime.now(UTC))
            assert (await take(sub, 1))[0]["data"] == AWKWARD
            assert await client.ping() >= 0
        finally:
            await client.close()
    assert frames.sent and set(frames.sent) == {"text"}
    assert frames.received and set(frames.received) == {"text"}


def _deflate(client: SlurmcastClient) -> Iterator[PerMessageDeflate]:
    assert client._ws is not None
    for extension in client._ws.protocol.extensions:
        assert isinstance(extension, PerMessageDeflate)
        yield extension


async def test_compression_is_negotiated_without_context_takeover_and_can_be_turned_off(
    app: SlurmcastApp,
) -> None:
    big = {"text": "job 42 finished on node001 " * 100}
    async with (
        SlurmcastClient(url(app)) as deflating,
        SlurmcastClient(url(app), compression=False) as plain,
        SlurmcastClient(url(app), compression=False, wire_format="msgpack") as plain_msgpack,
    ):
        (deflate,) = _deflate(deflating)
        # The server's answer: neither side keeps a compression context between messages.
        assert deflate.remote_no_context_takeover and deflate.local_no_context_takeover
        assert list(_deflate(plain)) == [] and list(_deflate(plain_msgpack)) == []
        assert plain_msgpack._ws is not None
        assert plain_msgpack._ws.subprotocol == MSGPACK_SUBPROTOCOL
        subs = [await c.subscribe("alerts") for c in (deflating, plain, plain_msgpack)]
        await app.node.publish("alerts", "broadcast", big, datetime.now(UTC))
        received = [await take(sub, 1) for sub in subs]
        assert received[0][0]["data"] == big
        assert received[1] == received[0] and received[2] == received[0]


async def test_a_server_without_compression_serves_a_client_that_offers_it() -> None:
    async with (
        running_server(**QUIET, compression="none") as app,
        SlurmcastClient(url(app), wire_format="msgpack") as client,
    ):
        assert list(_deflate(client)) == []
        sub = await client.subscribe("jobs")
        await app.node.publish("jobs", "broadcast", AWKWARD, datetime.now(UTC))
        assert (await take(sub, 1))[0]["data"] == AWKWARD
        assert client.state is ConnectionState.CONNECTED


def test_an_unknown_wire_format_is_refused() -> None:
    with pytest.raises(ValueError, match="wire_format must be one of json, msgpack"):
        SlurmcastClient("ws://127.0.0.1:5011/", wire_format="xml")  # type: ignore[arg-type]
