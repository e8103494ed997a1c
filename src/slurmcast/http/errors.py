"""``HttpError``: the failure every handler raises, answered as a JSON error; and the
mappings of a store's errors and of a paged list's ``limit`` onto it."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import web

from slurmcast.errors import ErrorCode, ProtocolError, SlurmcastError, StorageError

T = TypeVar("T")


class HttpError(SlurmcastError):
    """An error answered with ``status`` and ``{"code": wire_code, ...}``.

    ``code`` may be an ``ErrorCode`` or, for the few codes only the HTTP API
    uses, plain text (e.g. ``"unsupported_media_type"``).
    """

    def __init__(self, status: int, code: ErrorCode | str, message: str) -> None:
        super().__init__(message, code=code if isinstance(code, ErrorCode) else None)
        self.status = status
        self.wire_code = str(code)


async def from_store(call: Awaitable[T]) -> T:
    """Await a store's answer: the database down is a 503, a value it refuses a 400."""
    try:
        return await call
    except StorageError as exc:
        raise HttpError(503, exc.code, exc.message) from None
    except ProtocolError as exc:
        raise HttpError(400, exc.code, exc.message) from None


def page_limit(request: web.Request, default: int = 50, most: int = 500) -> int:
    """The ``limit`` query parameter of a paged list.

    Raises:
        HttpError: 400 for one that is not an integer from 1 to ``most``.
    """
    try:
        limit = int(request.query.get("limit", str(default)))
    except ValueError:
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'limit' must be an integer") from None
    if not 0 < limit <= most:
        raise HttpError(400, ErrorCode.INVALID_FIELD, f"'limit' must be from 1 to {most}")
    return limit
