"""Frames prepared once for many clients: headers, deflate, msgpack."""

from __future__ import annotations

import os
import zlib

import msgpack
import orjson
import pytest
from websockets.frames import Frame, Opcode

from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.transport.encoding import (
    COMPRESS_FROM,
    PLAIN_JSON,
    REPLAY_FRAMES,
    Encoding,
    WireFormat,
    decode_msgpack_request,
    server_frame,
)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_plain_frames_match_websockets_own_at_every_length_boundary(size: int) -> None:
    payload = b"x" * size
    assert server_frame(Opcode.TEXT, payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


def test_compressed_frames_set_rsv1_and_inflate_back() -> None:
    envelope = orjson.dumps({"type": "alert", "data": {"text": "node down " * 50}})
    frame = Encoding(WireFormat.JSON, 15).frame(envelope)
    assert frame[0] == 0x80 | 0x40 | Opcode.TEXT.value
    length, payload = frame[1], frame[2:]
    assert length == len(payload) < len(envelope)
    inflated = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
    assert inflated == envelope


def test_small_or_incompressible_messages_go_uncompressed() -> None:
    small = b'{"type":"pong"}'
    assert len(small) < COMPRESS_FROM
    assert Encoding(WireFormat.JSON, 15).frame(small) == PLAIN_JSON.frame(small)
    # Random hex deflates to more than half its size, but never below the
    # plain frame: whichever is smaller goes.
    noise = orjson.dumps({"hex": os.urandom(512).hex()})
    frame = Encoding(WireFormat.JSON, 15).frame(noise)
    assert len(frame) <= len(PLAIN_JSON.frame(noise))


def test_equal_encodings_share_frames() -> None:
    # The hub keys its per-publication frame cache on the encoding.
    assert Encoding(WireFormat.JSON, 15) == Encoding(WireFormat.JSON, 15)
    distinct = {
        Encoding(),
        PLAIN_JSON,
        Encoding(WireFormat.MSGPACK),
        Encoding(WireFormat.JSON, 10),
        Encoding(WireFormat.JSON, 15),
    }
    assert len(distinct) == 4


def test_msgpack_frames_hold_the_same_message() -> None:
    envelope = orjson.dumps({"type": "job_update", "data": {"job_id": "7", "nodes": ["a"]}})
    frame = Encoding(WireFormat.MSGPACK).frame(envelope)
    assert frame[0] == 0x80 | Opcode.BINARY.value
    assert msgpack.unpackb(frame[2:]) == orjson.loads(envelope)


def test_replies_report_their_size_before_compression() -> None:
    reply = {"type": "history", "publications": [orjson.Fragment(b'{"n":1}')] * 100}
    frame, size = Encoding(WireFormat.JSON, 15).reply(reply)
    assert size == len(orjson.dumps(reply)) and len(frame) < size
    frame, size = Encoding(WireFormat.MSGPACK).reply(reply)
    assert msgpack.unpackb(frame[4:] if frame[1] == 126 else frame[2:])["publications"][0] == {
        "n": 1
    }


def test_msgpack_requests_become_the_json_the_session_reads() -> None:
    assert (
        decode_msgpack_request(msgpack.packb({"type": "ping", "id": 1}))
        == b'{"type":"ping","id":1}'
    )
    for bad in (b"", b"\xc1", msgpack.packb({"a": b"\x00"}), msgpack.packb({1: 2})):
        with pytest.raises(ValueError):
            decode_msgpack_request(bad)


def _positioned(offset: int, data: str = "x" * 300) -> Publication:
    payload = orjson.dumps({"channel": "jobs", "type": "job_update", "data": data})
    return Publication("jobs", payload).at(StreamPosition(offset, "e1"))


def test_a_replayed_publication_is_encoded_once_per_encoding() -> None:
    # After a restart thousands of clients replay the same messages: one deflate
    # per message, not one per client.
    encoding = Encoding(WireFormat.JSON, 15)
    first, size = encoding.publication_frame(_positioned(7))
    again, _ = encoding.publication_frame(_positioned(7))
    assert again is first
    assert size == len(_positioned(7).wire())
    assert first[0] & 0x40, "compressed (RSV1)"
    header = 2 if first[1] & 0x7F < 126 else 4
    inflated = zlib.decompressobj(-15).decompress(first[header:] + b"\x00\x00\xff\xff")
    assert inflated == _positioned(7).wire()
    assert encoding.publication_frame(_positioned(8))[0] is not first


def test_the_replay_frames_kept_are_bounded() -> None:
    encoding = Encoding(WireFormat.MSGPACK)
    oldest, _ = encoding.publication_frame(_positioned(1))
    for offset in range(2, REPLAY_FRAMES + 2):
        encoding.publication_frame(_positioned(offset))
    assert encoding.publication_frame(_positioned(1))[0] is not oldest
    assert encoding.publication_frame(_positioned(REPLAY_FRAMES + 1))[0] == server_frame(
        Opcode.BINARY, msgpack.packb(orjson.loads(_positioned(REPLAY_FRAMES + 1).wire()))
    )
