"""Between ``Notification``, database rows, the wire shape and page cursors."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from slurmcast.core.notifications import Notification
from slurmcast.core.timefmt import iso_z
from slurmcast.errors import ErrorCode, ProtocolError
from slurmcast.storage.models import ID_LENGTH, TITLE_LENGTH, USER_LENGTH

log = logging.getLogger("slurmcast.storage")

_CURSOR_VERSION = "1"
_ELLIPSIS = "…"


class _Unreadable:
    """What ``load_json`` returns for a stored value it cannot decode."""

    def __repr__(self) -> str:
        return "UNREADABLE"


#: A ``data`` column whose stored JSON could not be decoded.
UNREADABLE: Any = _Unreadable()


def load_json(text: str | bytes) -> Any:
    """The engine's JSON column decoder: ``UNREADABLE`` instead of an exception.

    A row written by hand or by another program may hold JSON that Python's
    decoder refuses (or nests deeper than its recursion limit); raised from
    inside a fetch, that would fail every page the row belongs to.
    """
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return UNREADABLE


def row_values(notification: Notification) -> dict[str, Any]:
    """The column values for one notification.

    A title longer than the column is shortened (it is display text); an id or
    user that does not fit is refused rather than cut, since a cut one would
    name a different notification or person.

    Raises:
        ProtocolError: ``INVALID_FIELD`` for an empty or too long id or user.
    """
    if not notification.id or len(notification.id) > ID_LENGTH:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"a notification id must be 1 to {ID_LENGTH} characters"
        )
    if notification.user is not None and len(notification.user) > USER_LENGTH:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"a notification user must be at most {USER_LENGTH} characters"
        )
    title = notification.title
    if len(title) > TITLE_LENGTH:
        title = title[: TITLE_LENGTH - 1] + _ELLIPSIS
    return {
        "id": notification.id,
        "user": notification.user,
        "type": str(notification.type),
        "title": title,
        "message": notification.message,
        "severity": str(notification.severity),
        "read": False,
        "created_at": notification.created_at,
        "data": notification.details,
    }


def wire(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A stored row in the shape ``Notification.data()`` publishes, with its ``read`` flag.

    A ``data`` value that cannot be sent (undecodable, not an object, or more
    deeply nested than the JSON encoder allows) is replaced by ``{}`` and
    logged: one such row must not make every page that holds it fail.
    """
    return {
        "id": row["id"],
        "type": row["type"],
        "title": row["title"],
        "message": row["message"],
        "severity": row["severity"],
        "read": bool(row["read"]),
        "user": row["user"],
        "created_at": iso_z(row["created_at"]),
        "data": _sendable_data(row["id"], row["data"]),
    }


_warned: set[str] = set()
_WARNED_LIMIT = 1000


def _sendable_data(notification_id: str, data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if data is UNREADABLE:
        problem = "cannot be decoded as JSON"
    elif not isinstance(data, dict):
        problem = f"is a JSON {type(data).__name__}, not an object"
    else:
        try:
            orjson.dumps(data)
        except orjson.JSONEncodeError as exc:  # nested too deep, or an integer over 64 bits
            problem = f"cannot be encoded ({exc})"
        else:
            return data
    # Once per row and process: a dashboard polling the page must not flood the log.
    if notification_id in _warned:
        return {}
    if len(_warned) >= _WARNED_LIMIT:
        _warned.clear()
    _warned.add(notification_id)
    log.warning(
        "stored notification %.64r: its data %s; it is sent with empty data",
        notification_id,
        problem,
    )
    return {}


def encode_cursor(created_at: datetime, notification_id: str) -> str:
    """An opaque page cursor: the (created_at, id) of the last item shown.

    The id breaks ties between notifications created in the same microsecond,
    so a page boundary never skips or repeats one.
    """
    moment = created_at.astimezone(UTC).isoformat(timespec="microseconds")
    raw = f"{_CURSOR_VERSION}|{moment}|{notification_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) inside a cursor from ``encode_cursor``.

    Raises:
        ProtocolError: ``INVALID_FIELD`` when it is not such a cursor.
    """
    created_at: datetime | None = None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, moment, notification_id = raw.split("|", 2)
        parsed = datetime.fromisoformat(moment)
        if (
            version == _CURSOR_VERSION
            and parsed.tzinfo is not None
            and _storable_id(notification_id)
        ):
            # In UTC here: year 1 at +14:00 has no UTC time, and the
            # database column would overflow converting it.
            created_at = parsed.astimezone(UTC)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        pass
    if created_at is None:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'before' is not a cursor from this server")
    return created_at, notification_id


def _storable_id(notification_id: str) -> bool:
    # PostgreSQL refuses NUL in text; such an id names no row anyway.
    return len(notification_id) <= ID_LENGTH and "\0" not in notification_id


def describe_error(exc: BaseException, password: str | None = None) -> str:
    """A one-line ``Kind: reason`` for logs and /health, without SQL or the password.

    SQLAlchemy wraps the driver's exception (asyncpg's in turn in an adapter
    class); the innermost one has the name that says what happened, such as
    ``InvalidCatalogNameError: database "x" does not exist``.
    """
    cause: BaseException = exc
    if isinstance(exc, StatementError) and exc.orig is not None:
        cause = exc.orig
        if cause.__cause__ is not None:
            cause = cause.__cause__
    lines = str(cause).strip().splitlines()
    text = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    if password:
        text = text.replace(password, "***")
    return text[:500]


def is_row_error(exc: SQLAlchemyError) -> bool:
    """True when the database refused the values, not the connection.

    Such a row would fail on every retry, so the writer drops it instead of
    holding every later notification behind it. SQLSTATE classes 22 (data
    exception) and 23 (constraint violation) are about the row; asyncpg only
    maps the latter to ``IntegrityError``, so the SQLSTATE is read directly.
    """
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return True  # a value could not even be converted (e.g. not JSON-serialisable)
    if not isinstance(exc, DBAPIError):
        return False
    if isinstance(exc, DataError | IntegrityError):
        return True
    cause = exc.orig.__cause__ if exc.orig is not None else None
    if isinstance(cause, ValueError):
        return True  # asyncpg refused to encode a value (its client-side DataError)
    sqlstate = getattr(cause, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in {"22", "23"}
