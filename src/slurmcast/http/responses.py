"""What the API answers with: JSON, and its one shape of error.

Every error is ``{"success": false, "code": ..., "message": ...}``, with the
same codes the WebSocket protocol uses, plus a few of its own
(``unsupported_media_type``, ``body_too_large``, ``invalid_body``,
``nesting_too_deep``, ``field_too_large``, ``too_many_requests``).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"success": False, "code": code, "message": message}, status)
