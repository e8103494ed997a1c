"""How requests and messages travel on one connection: JSON or msgpack.

A client that wants msgpack offers the ``slurmcast.msgpack`` subprotocol at the
handshake. Only the server's answer decides the connection's format: an older
server that does not know the subprotocol answers without one, and the
connection stays JSON, so asking for msgpack never costs a working connection.

* ``json``: requests and messages are JSON in text frames.
* ``msgpack``: the server sends every message as a binary frame holding the
  same object encoded with MessagePack; the client sends its requests the
  same way. The decoded messages are the same dicts as JSON's.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

import msgpack
import orjson
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from slurmcast.client.stream import Message

#: The encodings a client can ask for.
WireFormat = Literal["json", "msgpack"]
WIRE_FORMATS: Final[tuple[WireFormat, ...]] = get_args(WireFormat)
#: The subprotocol that asks the server for msgpack (the server's
#: ``transport.encoding.MSGPACK_SUBPROTOCOL``; the client does not import the server).
MSGPACK_SUBPROTOCOL: Final = "slurmcast.msgpack"


class UndecodableFrame(ValueError):
    """A frame from the server that is not one message in the connection's format."""


def check_wire_format(value: str) -> WireFormat:
    """``value`` if it names a wire format.

    Raises:
        ValueError: any other value.
    """
    for known in WIRE_FORMATS:
        if value == known:
            return known
    raise ValueError(f"wire_format must be one of {', '.join(WIRE_FORMATS)}, not {value!r}")


def subprotocols_for(wire_format: WireFormat) -> list[Subprotocol] | None:
    """What to offer at the handshake: JSON needs no subprotocol."""
    return [Subprotocol(MSGPACK_SUBPROTOCOL)] if wire_format == "msgpack" else None


def format_of(ws: ClientConnection) -> WireFormat:
    """The format the server agreed to on this connection."""
    return "msgpack" if ws.subprotocol == MSGPACK_SUBPROTOCOL else "json"


def encode(message: Message, wire_format: WireFormat) -> str | bytes:
    """A request as the data of one frame: binary msgpack, or JSON text."""
    if wire_format == "msgpack":
        packed: bytes = msgpack.packb(message, use_bin_type=True)
        return packed
    return orjson.dumps(message).decode()


def decode(frame: str | bytes, wire_format: WireFormat) -> Any:
    """One frame's message: a binary frame is msgpack where msgpack was agreed,
    anything else is JSON (what every server sends without the subprotocol).

    Raises:
        UndecodableFrame: not one message in the connection's format.
    """
    if isinstance(frame, bytes) and wire_format == "msgpack":
        try:
            return msgpack.unpackb(frame, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise UndecodableFrame(f"not msgpack: {exc}") from None
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise UndecodableFrame(f"not JSON: {exc}") from None
