"""Client requests and server replies of the WebSocket protocol (docs/protocol.md).

``parse_request`` turns one decoded JSON value into a typed request or raises
``ProtocolError`` with the code that names exactly what was wrong; the reply
builders produce the server's JSON objects. Nothing here touches a socket.

Longer than ~400 lines on purpose: every request type and reply of the protocol, one
small function each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from slurmcast.core.broadcasts import broadcast_message
from slurmcast.core.channels import parse_channel
from slurmcast.core.filters import Filter, parse_filter
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.errors import ErrorCode, ProtocolError

RequestId = str | int

#: Longest string ``id`` echoed back; longer ones are a client bug, not a use case.
MAX_ID_LENGTH = 128
#: Most channels one subscribe/unsubscribe request may name.
MAX_CHANNELS_PER_REQUEST = 32

REQUEST_TYPES = (
    "auth",
    "refresh",
    "subscribe",
    "unsubscribe",
    "ping",
    "broadcast",
    "history",
    "mark_read",
)
#: Most messages one history request returns.
MAX_HISTORY_LIMIT = 1000
#: Most notification ids one mark_read request names.
MAX_MARK_READ = 500
#: Longest token accepted; real JWTs are a few hundred bytes to a few KiB.
MAX_TOKEN_LENGTH = 16384
#: Largest integer ``id`` (JavaScript's Number.MAX_SAFE_INTEGER): beyond it a
#: browser cannot even tell two ids apart.
MAX_INTEGER_ID = 2**53 - 1
#: Deepest nesting of a broadcast ``message`` (the JSON encoder stops at 254).
MAX_MESSAGE_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Subscribe to channels, optionally recovering from ``since``, with a snapshot, filtered."""

    channels: tuple[str, ...]
    request_id: RequestId | None = None
    since: StreamPosition | None = None
    snapshot: bool = False
    filter: Filter | None = None

    @property
    def has_options(self) -> bool:
        return self.since is not None or self.snapshot or self.filter is not None


@dataclass(frozen=True, slots=True)
class History:
    """Stored messages of a channel: the last ``limit``, or those after ``since``."""

    channel: str
    limit: int
    since: StreamPosition | None = None
    filter: Filter | None = None
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class MarkRead:
    ids: tuple[str, ...]
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channels: tuple[str, ...]
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class Broadcast:
    """An admin's broadcast, already typed (``core.broadcasts``): what clients will get."""

    channel: str
    event_type: str
    data: Any
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class Auth:
    """First-message authentication: ``{"type": "auth", "token": "..."}``."""

    token: str = field(repr=False)
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    """A new token for a live connection, before or after the old one expires."""

    token: str = field(repr=False)
    request_id: RequestId | None = None


Request = Subscribe | Unsubscribe | Ping | Broadcast | Auth | Refresh | History | MarkRead


def decode_frame(frame: str) -> Any:
    """Decode a text frame's JSON.

    orjson, not the standard library: whatever it accepts it can also write
    back (no lone surrogates, no NaN or Infinity, no integers beyond 64 bits,
    which become floats), so nothing a client sends can make a reply
    unencodable. It also refuses nesting deeper than 1024 without recursing.

    Raises:
        ProtocolError: ``invalid_json`` when the text is not JSON (or not
            representable: a lone surrogate, NaN, a number out of range).
    """
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"message is not valid JSON: {exc}") from None


def peek_request_id(frame: str) -> RequestId | None:
    """The ``id`` of a frame that will not be handled (rate-limited), if it has a valid one.

    A refusal that names its request lets a client with several requests in
    flight retry the right one.
    """
    try:
        value = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    try:
        return _parse_id(value)
    except ProtocolError:
        return None


def parse_request(value: Any) -> Request:
    """Validate one decoded client message.

    Args:
        value: the decoded JSON value of one text frame.

    Returns:
        The typed request.

    Raises:
        ProtocolError: with the code naming the first problem found, and the
            request's ``id`` when it could be read.
    """
    if not isinstance(value, dict):
        raise ProtocolError(
            ErrorCode.NOT_AN_OBJECT,
            f"message must be a JSON object, got {_json_type(value)}",
        )
    request_id = _parse_id(value)
    kind = value.get("type")
    if kind is None:
        raise ProtocolError(
            ErrorCode.MISSING_TYPE, "message has no 'type' field", request_id=request_id
        )
    if not isinstance(kind, str):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "'type' must be a string", request_id=request_id
        )
    if kind == "subscribe":
        return _parse_subscribe(value, request_id)
    if kind == "unsubscribe":
        return Unsubscribe(_parse_channels(value, request_id), request_id)
    if kind == "history":
        return _parse_history(value, request_id)
    if kind == "mark_read":
        return _parse_mark_read(value, request_id)
    if kind == "ping":
        return Ping(request_id)
    if kind == "broadcast":
        return _parse_broadcast(value, request_id)
    if kind == "auth":
        return Auth(_parse_token(value, request_id), request_id)
    if kind == "refresh":
        return Refresh(_parse_token(value, request_id), request_id)
    raise ProtocolError(
        ErrorCode.UNKNOWN_TYPE,
        f"unknown message type {kind[:64]!r}; known types: {', '.join(REQUEST_TYPES)}",
        request_id=request_id,
    )


def _parse_id(value: Mapping[str, Any]) -> RequestId | None:
    request_id: Any = value.get("id")
    if request_id is None:
        return None
    # bool is an int subclass; an id of `true` is a client bug worth reporting.
    valid = (
        isinstance(request_id, int)
        and not isinstance(request_id, bool)
        and -MAX_INTEGER_ID <= request_id <= MAX_INTEGER_ID
    ) or (isinstance(request_id, str) and len(request_id) <= MAX_ID_LENGTH)
    if not valid:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"'id' must be an integer of at most 2**53 - 1 in magnitude, or a string of "
            f"at most {MAX_ID_LENGTH} characters",
        )
    return request_id  # type: ignore[no-any-return]  # checked just above


def _parse_channels(value: Mapping[str, Any], request_id: RequestId | None) -> tuple[str, ...]:
    has_one, has_many = "channel" in value, "channels" in value
    if has_one and has_many:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            "give either 'channel' or 'channels', not both",
            request_id=request_id,
        )
    if has_one:
        return (parse_channel(value["channel"], request_id=request_id),)
    if not has_many:
        raise ProtocolError(
            ErrorCode.MISSING_CHANNEL,
            "message needs 'channel' (a name) or 'channels' (a list of names)",
            request_id=request_id,
        )
    names = value["channels"]
    if not isinstance(names, list) or not names or len(names) > MAX_CHANNELS_PER_REQUEST:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"'channels' must be a list of 1 to {MAX_CHANNELS_PER_REQUEST} channel names",
            request_id=request_id,
        )
    # Validate all before acting on any: a request is accepted or rejected whole.
    parsed = [parse_channel(name, request_id=request_id) for name in names]
    return tuple(dict.fromkeys(parsed))


def _parse_subscribe(value: Mapping[str, Any], request_id: RequestId | None) -> Subscribe:
    channels = _parse_channels(value, request_id)
    since = None
    if value.get("since") is not None:
        if len(channels) != 1 or "channels" in value:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                "'since' needs a single 'channel' (positions are per channel)",
                request_id=request_id,
            )
        since = StreamPosition.parse(value["since"], request_id=request_id)
    snapshot = value.get("snapshot", False)
    if not isinstance(snapshot, bool):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "'snapshot' must be true or false", request_id=request_id
        )
    subscription_filter = None
    if value.get("filter") is not None:
        # One filter for several channels must make sense for each of them.
        parsed = [parse_filter(c, value["filter"], request_id=request_id) for c in channels]
        subscription_filter = parsed[0]
    return Subscribe(channels, request_id, since, snapshot, subscription_filter)


def _parse_history(value: Mapping[str, Any], request_id: RequestId | None) -> History:
    if "channel" not in value:
        raise ProtocolError(
            ErrorCode.MISSING_CHANNEL, "history needs a 'channel'", request_id=request_id
        )
    channel = parse_channel(value["channel"], request_id=request_id)
    limit = value.get("limit", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_HISTORY_LIMIT:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"'limit' must be an integer from 1 to {MAX_HISTORY_LIMIT}",
            request_id=request_id,
        )
    since = None
    if value.get("since") is not None:
        since = StreamPosition.parse(value["since"], request_id=request_id)
    history_filter = None
    if value.get("filter") is not None:
        history_filter = parse_filter(channel, value["filter"], request_id=request_id)
    return History(channel, limit, since, history_filter, request_id)


def _parse_mark_read(value: Mapping[str, Any], request_id: RequestId | None) -> MarkRead:
    ids = value.get("ids")
    if (
        not isinstance(ids, list)
        or not 0 < len(ids) <= MAX_MARK_READ
        # Printable: ids go to the database, and PostgreSQL refuses NUL in text.
        or not all(isinstance(i, str) and 0 < len(i) <= 64 and i.isprintable() for i in ids)
    ):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"'ids' must be a list of 1 to {MAX_MARK_READ} notification ids",
            request_id=request_id,
        )
    return MarkRead(tuple(dict.fromkeys(ids)), request_id)


def _parse_token(value: Mapping[str, Any], request_id: RequestId | None) -> str:
    token = value.get("token")
    if token is None:
        raise ProtocolError(
            ErrorCode.MISSING_TOKEN, "message needs a 'token'", request_id=request_id
        )
    # A JWT is printable ASCII (base64url and dots); anything else is not one,
    # and need not reach the verifier.
    if (
        not isinstance(token, str)
        or not token
        or len(token) > MAX_TOKEN_LENGTH
        or not (token.isascii() and token.isprintable())
    ):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"'token' must be a non-empty string of printable ASCII, at most "
            f"{MAX_TOKEN_LENGTH} characters",
            request_id=request_id,
        )
    return token


def _parse_broadcast(value: Mapping[str, Any], request_id: RequestId | None) -> Broadcast:
    channel = value.get("channel")
    if channel is None:
        raise ProtocolError(
            ErrorCode.MISSING_CHANNEL, "broadcast needs a 'channel'", request_id=request_id
        )
    if channel != "all":
        channel = parse_channel(channel, request_id=request_id)
    message = value.get("message")
    if message is None:
        raise ProtocolError(
            ErrorCode.MISSING_MESSAGE, "broadcast needs a 'message'", request_id=request_id
        )
    if not isinstance(message, dict):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "'message' must be a JSON object", request_id=request_id
        )
    if json_depth(message) > MAX_MESSAGE_DEPTH:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"'message' is nested deeper than {MAX_MESSAGE_DEPTH} levels",
            request_id=request_id,
        )
    try:
        event_type, data = broadcast_message(message)
    except ProtocolError as exc:
        raise ProtocolError(exc.code, exc.message, request_id=request_id) from None
    return Broadcast(str(channel), event_type, data, request_id)


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a decoded JSON value (0 for a scalar).

    Iterative: a value nested deeply enough to matter must not recurse here.
    """
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        pending.extend((child, depth) for child in children)
    return deepest


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def _with_id(reply: dict[str, Any], request_id: RequestId | None) -> dict[str, Any]:
    if request_id is not None:
        reply["id"] = request_id
    return reply


def subscribed(
    channel: str,
    request_id: RequestId | None,
    *,
    already: bool = False,
    position: StreamPosition | None = None,
    recovered: bool | None = None,
) -> dict[str, Any]:
    """The ``subscribed`` reply; ``position`` is where the client's stream starts."""
    message = f"Already subscribed to {channel}" if already else f"Subscribed to {channel}"
    reply: dict[str, Any] = {"type": "subscribed", "channel": channel, "message": message}
    if position is not None:
        reply["position"] = position.to_dict()
    if recovered is not None:
        reply["recovered"] = recovered
    return _with_id(reply, request_id)


def unsubscribed(
    channel: str, request_id: RequestId | None, *, was_subscribed: bool = True
) -> dict[str, Any]:
    message = (
        f"Unsubscribed from {channel}" if was_subscribed else f"Was not subscribed to {channel}"
    )
    return _with_id({"type": "unsubscribed", "channel": channel, "message": message}, request_id)


def pong(request_id: RequestId | None) -> dict[str, Any]:
    return _with_id({"type": "pong"}, request_id)


def error(code: ErrorCode, message: str, request_id: RequestId | None = None) -> dict[str, Any]:
    return _with_id({"type": "error", "code": code.value, "message": message}, request_id)


def snapshot_part(
    channel: str, position: StreamPosition, items: list[Any], part: int, parts: int
) -> dict[str, Any]:
    """One ``snapshot`` message: part ``part`` of ``parts`` of a channel's state."""
    return {
        "type": "snapshot",
        "channel": channel,
        "position": position.to_dict(),
        "data": items,
        "part": part,
        "parts": parts,
    }


def history_reply(
    channel: str,
    top: StreamPosition,
    publications: Sequence[Publication],
    complete: bool | None,
    request_id: RequestId | None,
) -> dict[str, Any]:
    """The ``history`` reply; stored publications go in as they were sent (JSON fragments)."""
    reply: dict[str, Any] = {
        "type": "history",
        "channel": channel,
        "position": top.to_dict(),
        "publications": [orjson.Fragment(p.wire()) for p in publications],
    }
    if complete is not None:
        reply["complete"] = complete
    return _with_id(reply, request_id)


def published(channel: str, delivered: int, request_id: RequestId | None) -> dict[str, Any]:
    return _with_id({"type": "published", "channel": channel, "delivered": delivered}, request_id)


def marked_read(ids: list[str], request_id: RequestId | None) -> dict[str, Any]:
    return _with_id({"type": "marked_read", "ids": ids}, request_id)
