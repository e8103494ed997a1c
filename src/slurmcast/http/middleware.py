"""The screens every request passes before its handler.

A request with a body must say ``Content-Type: application/json`` (charset
utf-8, if any): a browser page elsewhere can only send text/plain or form
bodies without the CORS preflight this server never answers, so it cannot
post to an API that has no key.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from slurmcast.errors import ErrorCode, SlurmcastError
from slurmcast.http.errors import HttpError
from slurmcast.http.responses import error_response

log = logging.getLogger("slurmcast.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

#: Methods whose body, if any, must be JSON.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error; an unexpected one into a logged 500."""
    try:
        return await handler(request)
    except HttpError as exc:
        return error_response(exc.status, exc.wire_code, exc.message)
    except SlurmcastError as exc:
        if not exc.temporary:
            raise
        # Redis or the database is down: nothing was done; the caller may retry.
        log.warning("%s %s refused: %s", request.method, request.path, exc.message)
        response = error_response(503, exc.code.value, exc.message)
        response.headers["Retry-After"] = "1"
        return response
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "body_too_large", exc.text or "request body is too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, ErrorCode.INTERNAL.value, "internal server error")


@web.middleware
async def require_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """415 for a write whose body is not declared JSON (see the module's docstring).

    A write without a body needs no Content-Type (aiohttp's client, for one,
    declares its empty bodies application/octet-stream).
    """
    if (
        request.method in WRITE_METHODS
        and request.body_exists
        and request.match_info.http_exception is None
    ):
        charset = (request.charset or "utf-8").lower()
        if request.content_type != "application/json" or charset not in ("utf-8", "utf8"):
            raise HttpError(
                415,
                "unsupported_media_type",
                "send the body as JSON, with Content-Type: application/json",
            )
    return await handler(request)


def refuse_odd_expectations(handler: RequestHandler) -> RequestHandler:
    """417 for an ``Expect`` header other than ``100-continue``, before aiohttp sees it.

    aiohttp's own answer quotes the header in its text and fails (500) when
    the header holds bytes that are not UTF-8. It runs before any middleware,
    and for routes not found too, so the server wraps its request handler
    with this (it is no aiohttp middleware).
    """

    async def screened(request: web.BaseRequest) -> web.StreamResponse:
        expect = request.headers.get("Expect")
        if expect is not None and expect.lower() != "100-continue":
            response = error_response(
                417, "expectation_failed", "the only Expect header supported is 100-continue"
            )
            response.force_close()
            return response
        return await handler(request)

    return screened
