"""How one connection wants its messages on the wire: JSON or msgpack, deflated or not.

A publication is encoded once per *encoding*, not once per client: every
client that negotiated the same format and compression parameters gets the
same bytes. That is what makes compression free per client:
``permessage-deflate`` is negotiated with ``server_no_context_takeover``, so a
compressed message depends on nothing but its payload and the window size, and
one deflate per publication serves every client with those parameters.

* ``json`` (the default): text frames of UTF-8 JSON, as before.
* ``msgpack`` (subprotocol ``slurmcast.msgpack``): binary frames holding the
  same messages encoded with MessagePack.
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import msgpack
import orjson
from websockets.frames import Opcode

from slurmcast.core.publication import Publication

#: The subprotocol a client asks for to get msgpack (``Sec-WebSocket-Protocol``).
MSGPACK_SUBPROTOCOL: Final = "slurmcast.msgpack"
#: Deflating less than this costs more than it saves (a frame header and the
#: deflate block overhead are about a dozen bytes).
COMPRESS_FROM: Final = 128
#: Replayed publications whose frames each encoding keeps: a restart brings
#: thousands of clients recovering the same recent messages.
REPLAY_FRAMES: Final = 4096
# permessage-deflate's empty-block tail, which the sender removes (RFC 7692 7.2.1).
_TAIL: Final = b"\x00\x00\xff\xff"


class WireFormat(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"


@dataclass(frozen=True, slots=True)
class Encoding:
    """One way of putting messages on the wire; equal encodings share frames.

    ``deflate_bits``: the deflate window (``server_max_window_bits``) when
    ``permessage-deflate`` was negotiated, else None.
    """

    format: WireFormat = WireFormat.JSON
    deflate_bits: int | None = None
    # (channel, offset, epoch) -> (frame, size before compression), oldest first.
    _replayed: dict[tuple[str, int, str], tuple[bytes, int]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def publication_frame(self, publication: Publication) -> tuple[bytes, int]:
        """A publication's frame outside the hub's fan-out (a replay, a held one),
        and its size before compression: built once per encoding and position,
        not once per client, like the live frames."""
        position = publication.position
        if position is None:
            wire = publication.wire()
            return self.frame(wire), len(wire)
        key = (publication.channel, position.offset, position.epoch)
        known = self._replayed.get(key)
        if known is None:
            wire = publication.wire()
            known = self._replayed[key] = (self.frame(wire), len(wire))
            if len(self._replayed) > REPLAY_FRAMES:
                del self._replayed[next(iter(self._replayed))]
        return known

    def frame(self, envelope_json: bytes) -> bytes:
        """A whole frame for one message, given as its JSON encoding."""
        if self.format is WireFormat.MSGPACK:
            return self._frame(Opcode.BINARY, _msgpack(orjson.loads(envelope_json)))
        return self._frame(Opcode.TEXT, envelope_json)

    def reply(self, reply: dict[str, Any]) -> tuple[bytes, int]:
        """A whole frame for a reply object (values may be ``orjson.Fragment``),
        and the size of its message before compression (what it cost to make)."""
        if self.format is WireFormat.MSGPACK:
            # Through JSON first: history replies hold stored publications as
            # pre-encoded JSON fragments, which become maps like the rest.
            payload = _msgpack(orjson.loads(orjson.dumps(reply)))
            return self._frame(Opcode.BINARY, payload), len(payload)
        payload = orjson.dumps(reply)
        return self._frame(Opcode.TEXT, payload), len(payload)

    def _frame(self, opcode: Opcode, payload: bytes) -> bytes:
        if self.deflate_bits is not None and len(payload) >= COMPRESS_FROM:
            deflated = deflate(payload, self.deflate_bits)
            if len(deflated) < len(payload):
                return server_frame(opcode, deflated, compressed=True)
        return server_frame(opcode, payload)


#: The encoding of a client that negotiated nothing.
PLAIN_JSON: Final = Encoding()


@functools.cache
def encoding_for(format: WireFormat, deflate_bits: int | None) -> Encoding:
    """The one shared ``Encoding`` for these parameters (the hub compares them by identity)."""
    if format is WireFormat.JSON and deflate_bits is None:
        return PLAIN_JSON
    return Encoding(format, deflate_bits)


def server_frame(opcode: Opcode, payload: bytes, *, compressed: bool = False) -> bytes:
    """One whole, unmasked frame (RFC 6455 5.2); ``compressed`` sets RSV1 (RFC 7692).

    Written here rather than with websockets' ``Frame.serialize``, which refuses
    RSV1 outside a connection's own extensions: these frames are prepared once
    for many connections.
    """
    first = 0x80 | (0x40 if compressed else 0) | opcode.value
    length = len(payload)
    if length < 126:
        header = bytes((first, length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


def deflate(payload: bytes, window_bits: int) -> bytes:
    """``payload`` as one permessage-deflate message without context takeover."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4] if data.endswith(_TAIL) else data


def _msgpack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def decode_msgpack_request(data: bytes) -> bytes:
    """A client's msgpack request as the JSON the session reads.

    Going through JSON applies the same rules to both formats: what orjson
    cannot write (bytes, NaN written as null, integers beyond 64 bits) is
    refused or normalised exactly as for a JSON client.

    Raises:
        ValueError: not one msgpack object, or not representable in JSON.
    """
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ValueError(f"message is not valid msgpack: {exc}") from None
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise ValueError(f"message cannot be read as a request: {exc}") from None
