"""The HTTP API (port 5012 by default): POST /broadcast, GET /health.

Every error is JSON, ``{"success": false, "code": ..., "message": ...}``,
with the same codes the WebSocket protocol uses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from slurmcast.core.channels import CHANNEL_NAMES
from slurmcast.core.publication import ALL_CLIENTS
from slurmcast.errors import ErrorCode, SlurmcastError
from slurmcast.node import Node

log = logging.getLogger("slurmcast.http")

HealthProvider = Callable[[], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NODE_KEY = web.AppKey("node", Node)
HEALTH_KEY: web.AppKey[HealthProvider] = web.AppKey("health")


class HttpError(SlurmcastError):
    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"success": False, "code": code, "message": message}, status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error; an unexpected one into a logged 500."""
    try:
        return await handler(request)
    except HttpError as exc:
        return error_response(exc.status, exc.code.value, exc.message)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "body_too_large", exc.text or "request body is too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, ErrorCode.INTERNAL.value, "internal server error")


async def broadcast(request: web.Request) -> web.Response:
    """Publish ``message`` on ``channel`` (or to every client with ``"all"``)."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, ErrorCode.NOT_AN_OBJECT, "body must be a JSON object")
    channel = body.get("channel", ALL_CLIENTS)
    if not isinstance(channel, str):
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'channel' must be a string")
    if channel != ALL_CLIENTS and channel not in CHANNEL_NAMES:
        known = ", ".join(sorted(CHANNEL_NAMES))
        raise HttpError(
            400,
            ErrorCode.UNKNOWN_CHANNEL,
            f"unknown channel {channel[:64]!r}; use one of {known}, or 'all'",
        )
    if "message" not in body or body["message"] is None:
        raise HttpError(400, ErrorCode.MISSING_MESSAGE, "body needs a 'message' object")
    message = body["message"]
    if not isinstance(message, dict):
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'message' must be a JSON object")
    node = request.app[NODE_KEY]
    delivered = await node.publish(channel, "broadcast", message, datetime.now(UTC))
    log.info("HTTP broadcast on %s from %s delivered to %d", channel, request.remote, delivered)
    return json_response({"success": True, "channel": channel, "delivered": delivered})


async def health(request: web.Request) -> web.Response:
    return json_response(request.app[HEALTH_KEY]())


def create_app(node: Node, health_provider: HealthProvider, max_body: int) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=max_body)
    app[NODE_KEY] = node
    app[HEALTH_KEY] = health_provider
    app.router.add_post("/broadcast", broadcast)
    app.router.add_get("/health", health)
    return app


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        assert self._site is not None and self._site._server is not None, "not started"
        sockets = getattr(self._site._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.requested_port)
        await self._site.start()
        log.info("HTTP API listening on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            log.info("HTTP API stopped")
