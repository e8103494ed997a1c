"""WebSocket frames prepared once and written to many connections."""

from __future__ import annotations

from websockets.frames import Frame, Opcode


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked server-to-client text frame carrying ``payload``.

    Server frames are never masked (RFC 6455 5.1) and we negotiate no
    extension, so these bytes are identical for every client: built once per
    publication instead of once per subscriber.
    """
    return Frame(Opcode.TEXT, payload).serialize(mask=False)
