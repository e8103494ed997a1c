"""What a broadcast message becomes on the wire: the seed's rule, with the server's types kept.

The seed's ``POST /broadcast`` sent the posted message itself, so a message
``{"type": "maintenance", "data": {...}}`` reached clients as type
``maintenance``. slurmcast does the same, for HTTP and for admins' WebSocket
broadcasts, with two guards: the types the server itself emits (events and
replies) are refused, so a client can trust a ``job_update`` to come from
the monitors; and nothing posted is dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from slurmcast.errors import ErrorCode, ProtocolError

#: The type of a message posted without one.
DEFAULT_TYPE = "broadcast"

#: Types only the server sends: its events, the synthetic ones and its replies
#: (and the requests' own names, which would only confuse a client).
RESERVED_TYPES = frozenset(
    {
        "job_submitted",
        "job_update",
        "node_update",
        "node_resource_change",
        "node_added",
        "node_removed",
        "metrics_update",
        "notification",
        "alert",
        "snapshot",
        "resync",
        "subscribed",
        "unsubscribed",
        "pong",
        "error",
        "history",
        "authenticated",
        "published",
        "marked_read",
        "refreshed",
        "auth",
        "refresh",
        "subscribe",
        "unsubscribe",
        "ping",
        "mark_read",
    }
)

#: A custom type: a name, not free text (it ends up in clients' switch statements and logs).
TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")


def broadcast_message(message: Mapping[str, Any]) -> tuple[str, Any]:
    """The envelope ``type`` and ``data`` of a posted broadcast ``message``.

    * without ``type``: type ``broadcast``, the message itself as data (as before);
    * with a string ``type`` and ``data``: that type and that data, and nothing
      else may sit beside them (it would be lost);
    * with a ``type`` and no ``data``: that type, the other fields as data.

    Raises:
        ProtocolError: ``reserved_type`` for a type the server emits itself;
            ``invalid_field`` for a type that is not a short name;
            ``invalid_message`` for fields beside ``type`` and ``data``.
    """
    if "type" not in message:
        return DEFAULT_TYPE, dict(message)
    kind = message["type"]
    if not isinstance(kind, str) or not TYPE_PATTERN.fullmatch(kind):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            "a broadcast's 'type' must be a name: a letter, then up to 63 letters, digits "
            "or _ . : -",
        )
    if kind in RESERVED_TYPES:
        raise ProtocolError(
            ErrorCode.RESERVED_TYPE,
            f"type {kind!r} is one the server sends itself; choose another name",
        )
    if "data" not in message:
        return kind, {key: value for key, value in message.items() if key != "type"}
    extra = sorted(set(message) - {"type", "data"})
    if extra:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            "a message with 'type' and 'data' holds nothing else; move "
            + ", ".join(repr(key[:32]) for key in extra[:5])
            + " into 'data'",
        )
    return kind, message["data"]
