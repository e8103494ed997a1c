"""Reading a request's body: one JSON object, of bounded nesting."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from slurmcast.errors import ErrorCode
from slurmcast.http.errors import HttpError

#: Levels of nesting a posted JSON value may have. orjson reads 1024 but
#: writes only 254: a deeper value would be accepted, then fail every reply
#: and page that holds it.
MAX_JSON_DEPTH = 32


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 ``invalid_json`` / ``not_an_object`` otherwise.

    400 ``invalid_body`` when the body cannot be read (a broken
    Content-Encoding or chunked encoding), ``nesting_too_deep`` past
    ``MAX_JSON_DEPTH`` levels.
    """
    try:
        raw = await request.read()
    except web.RequestPayloadError:
        raise HttpError(
            400, "invalid_body", "the body cannot be read: its encoding or chunks are broken"
        ) from None
    except ConnectionError:
        # The client went away, or missed the body deadline: no one reads this.
        raise HttpError(400, "invalid_body", "the connection closed before the body") from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, ErrorCode.NOT_AN_OBJECT, "body must be a JSON object")
    if nesting_exceeds(body, MAX_JSON_DEPTH):
        raise HttpError(
            400, "nesting_too_deep", f"body is nested more than {MAX_JSON_DEPTH} levels deep"
        )
    return body


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` has more than ``limit`` levels of objects and arrays.

    Iterative: a recursive walk would overflow the stack on input orjson accepts.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children)
    return False
