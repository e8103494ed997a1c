"""Compression and msgpack on the wire: negotiated per client, encoded once per publication.

A client that negotiates ``permessage-deflate`` and one that does not, a
msgpack client and a JSON one, all on the same channel, get the same
messages; the raw frames show what was actually sent (RSV1, opcode).
"""

from __future__ import annotations

import asyncio
import base64
import os
import zlib
from typing import Any

import msgpack
import orjson
import pytest
from websockets.frames import Opcode

from slurmcast.app import SlurmcastApp

from support.rawws import RawClient
from support.server import WAIT, Client, http_json, running_server

MSGPACK = "slurmcast.msgpack"
#: A message that compresses well and is far above the 128-byte threshold.
BIG = {"text": "job 42 finished on node001 " * 40}
DEFLATE_OFFER = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}


def inflate(payload: bytes, window_bits: int = 15) -> bytes:
    """One permessage-deflate message without context takeover (RFC 7692 7.2.2)."""
    return zlib.decompressobj(-window_bits).decompress(payload + b"\x00\x00\xff\xff")


async def broadcast(app: SlurmcastApp, channel: str, message: dict[str, Any]) -> None:
    status, answer = await http_json(
        app, "POST", "/broadcast", {"channel": channel, "message": message}
    )
    assert status == 200, answer


async def read_frame(client: RawClient) -> tuple[int, bool, bytes]:
    return await asyncio.to_thread(client.read_frame_bits)


async def raw_subscribe(client: RawClient, channel: str) -> None:
    client.send_text(orjson.dumps({"type": "subscribe", "channel": channel}).decode())
    opcode, compressed, payload = await read_frame(client)
    assert opcode == Opcode.TEXT and not compressed  # a short reply goes as it is
    assert orjson.loads(payload)["type"] == "subscribed"


async def msgpack_recv(client: Client) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        raw = await client.ws.recv()
    assert isinstance(raw, bytes), "a msgpack client gets binary frames"
    value = msgpack.unpackb(raw)
    assert isinstance(value, dict)
    return value


async def test_deflate_and_plain_clients_on_the_same_channel_get_the_same_messages() -> None:
    async with (
        running_server() as app,
        Client.connect(app) as deflating,
        Client.connect(app, compression=None) as plain,
    ):
        assert [e.name for e in deflating.ws.protocol.extensions] == ["permessage-deflate"]
        assert plain.ws.protocol.extensions == []
        await deflating.subscribe("alerts")
        await plain.subscribe("alerts")
        await broadcast(app, "alerts", BIG)
        got = [await deflating.recv(), await plain.recv()]
        assert got[0] == got[1]
        assert got[0]["data"] == BIG


async def test_what_goes_on_the_wire_with_and_without_deflate() -> None:
    async with running_server() as app:
        deflating = await asyncio.to_thread(RawClient, app.ws.port, headers=DEFLATE_OFFER)
        plain = await asyncio.to_thread(RawClient, app.ws.port)
        try:
            # One compressed message may not depend on another: both sides
            # start every message afresh.
            answer = deflating.response_headers["sec-websocket-extensions"]
            assert "server_no_context_takeover" in answer
            assert "client_no_context_takeover" in answer
            assert "sec-websocket-extensions" not in plain.response_headers
            await raw_subscribe(deflating, "alerts")
            await raw_subscribe(plain, "alerts")
            await broadcast(app, "alerts", BIG)
            opcode, compressed, deflated = await read_frame(deflating)
            assert opcode == Opcode.TEXT and compressed
            opcode, compressed, raw = await read_frame(plain)
            assert opcode == Opcode.TEXT and not compressed
            assert inflate(deflated) == raw
            assert len(deflated) * 5 < len(raw)
        finally:
            deflating.close()
            plain.close()


async def test_the_client_s_window_size_is_respected() -> None:
    # Repeats 2 KB apart: a 15-bit window would reach back to them, a 10-bit
    # (1 KB) one must not, or this client could not inflate the message.
    block = base64.b64encode(os.urandom(1500)).decode()
    offer = {"Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=10"}
    async with running_server() as app:
        client = await asyncio.to_thread(RawClient, app.ws.port, headers=offer)
        try:
            assert (
                "server_max_window_bits=10" in client.response_headers["sec-websocket-extensions"]
            )
            await raw_subscribe(client, "alerts")
            await broadcast(app, "alerts", {"a": block, "b": block})
            _, compressed, payload = await read_frame(client)
            assert compressed
            assert orjson.loads(inflate(payload, 10))["data"] == {"a": block, "b": block}
        finally:
            client.close()


async def test_history_replies_are_compressed_too() -> None:
    async with running_server() as app:
        for n in range(20):
            await broadcast(app, "alerts", {"n": n, **BIG})
        client = await asyncio.to_thread(RawClient, app.ws.port, headers=DEFLATE_OFFER)
        try:
            client.send_text('{"type":"history","channel":"alerts","limit":20}')
            opcode, compressed, payload = await read_frame(client)
            assert opcode == Opcode.TEXT and compressed
            reply = orjson.loads(inflate(payload))
            assert [p["data"]["n"] for p in reply["publications"]] == list(range(20))
        finally:
            client.close()


async def test_compression_can_be_turned_off_on_the_server() -> None:
    async with running_server(compression="none") as app, Client.connect(app) as client:
        assert client.ws.protocol.extensions == []
        assert await client.request({"type": "ping"}) == {"type": "pong"}


async def test_a_msgpack_client_gets_the_same_messages_as_binary_frames() -> None:
    async with (
        running_server() as app,
        Client.connect(app, subprotocols=[MSGPACK]) as packed,
        Client.connect(app) as text,
    ):
        assert packed.ws.subprotocol == MSGPACK
        assert text.ws.subprotocol is None
        await packed.send(msgpack.packb({"type": "subscribe", "channel": "alerts", "id": 1}))
        reply = await msgpack_recv(packed)
        assert reply["type"] == "subscribed" and reply["id"] == 1
        assert set(reply["position"]) == {"offset", "epoch"}
        await text.subscribe("alerts")
        await broadcast(app, "alerts", BIG)
        assert await msgpack_recv(packed) == await text.recv()


async def test_msgpack_history_and_json_text_requests_from_a_msgpack_client() -> None:
    async with running_server() as app:
        for n in range(3):
            await broadcast(app, "alerts", {"n": n})
        async with Client.connect(app, subprotocols=[MSGPACK]) as packed:
            request = {"type": "history", "channel": "alerts", "limit": 10, "id": "h"}
            await packed.send(msgpack.packb(request))
            reply = await msgpack_recv(packed)
            # Stored publications are maps like any other, not JSON strings.
            assert [p["data"]["n"] for p in reply["publications"]] == [0, 1, 2]
            # JSON text still works; the answer comes in the negotiated format.
            await packed.send('{"type":"ping","id":2}')
            assert await msgpack_recv(packed) == {"type": "pong", "id": 2}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\xc1", "invalid_msgpack"),  # not msgpack at all
        (msgpack.packb({"type": "ping"}) + b"\x01", "invalid_msgpack"),  # trailing bytes
        (msgpack.packb({"type": "ping", "id": b"\x00"}), "invalid_msgpack"),  # no JSON form
        (msgpack.packb({1: "ping"}), "invalid_msgpack"),  # keys must be strings
        (msgpack.packb([1, 2, 3]), "not_an_object"),  # msgpack, but not a request
    ],
)
async def test_bad_msgpack_gets_an_error_and_the_connection_keeps_serving(
    frame: bytes, code: str
) -> None:
    async with running_server() as app, Client.connect(app, subprotocols=[MSGPACK]) as packed:
        await packed.send(frame)
        reply = await msgpack_recv(packed)
        assert reply["type"] == "error" and reply["code"] == code, reply
        await packed.send(msgpack.packb({"type": "ping", "id": 3}))
        assert await msgpack_recv(packed) == {"type": "pong", "id": 3}


async def test_msgpack_and_deflate_together() -> None:
    offer = {**DEFLATE_OFFER, "Sec-WebSocket-Protocol": MSGPACK}
    async with running_server() as app:
        client = await asyncio.to_thread(RawClient, app.ws.port, headers=offer)
        try:
            assert client.response_headers["sec-websocket-protocol"] == MSGPACK
            client.send_binary(msgpack.packb({"type": "subscribe", "channel": "alerts"}))
            opcode, _, payload = await read_frame(client)
            assert opcode == Opcode.BINARY and msgpack.unpackb(payload)["type"] == "subscribed"
            await broadcast(app, "alerts", BIG)
            opcode, compressed, payload = await read_frame(client)
            assert opcode == Opcode.BINARY and compressed
            assert msgpack.unpackb(inflate(payload))["data"] == BIG
        finally:
            client.close()


async def test_an_unknown_subprotocol_is_ignored_and_json_is_spoken() -> None:
    async with running_server() as app, Client.connect(app, subprotocols=["chat"]) as client:
        assert client.ws.subprotocol is None
        assert await client.request({"type": "ping"}) == {"type": "pong"}
