"""The HTTP API (port 5012 by default): POST /broadcast, GET /health.

Every error is JSON, ``{"success": false, "code": ..., "message": ...}``,
with the same codes the WebSocket protocol uses.

Write endpoints need an admin: an ``X-API-Key`` equal to the configured key
(compared in constant time) or an ``Authorization: Bearer`` JWT with the
``admin`` role. With neither an API key nor JWT auth configured (the
zero-setup default) they are open. ``GET /health`` is always open, but shows
only counts and status to anyone who is not an admin while protection is on.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from slurmcast.auth.jwt import parse_bearer
from slurmcast.core.channels import CHANNEL_NAMES
from slurmcast.core.policy import ADMIN_ROLE, ANONYMOUS, AccessPolicy, Principal
from slurmcast.core.publication import ALL_CLIENTS
from slurmcast.errors import AuthError, ErrorCode, SlurmcastError
from slurmcast.node import Node
from slurmcast.storage import NotificationStorePort

log = logging.getLogger("slurmcast.http")

HealthProvider = Callable[[], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Whoever presents the API key acts as an admin.
API_KEY_ADMIN = Principal("api-key", frozenset({ADMIN_ROLE}))

#: Keys /health shows to everyone while the API is protected.
PUBLIC_HEALTH_KEYS = ("status", "version", "clients", "subscriptions", "uptime_s")


class ApiGuard:
    """Decides who is an admin of the HTTP API.

    Args:
        api_key: the configured key ('' = none).
        verify: the JWT verifier when JWT auth is on, else None.
    """

    def __init__(self, api_key: str, verify: Callable[[str], Principal] | None) -> None:
        self._api_key = api_key.encode()
        self._verify = verify

    @property
    def protected(self) -> bool:
        return bool(self._api_key) or self._verify is not None

    def require_admin(self, request: web.Request) -> str:
        """Who the admin is ("api-key" or the user); raises 401/403 ``HttpError``."""
        if not self.protected:
            return "anonymous"
        offered = request.headers.get("X-API-Key")
        if offered is not None:
            if self._api_key and hmac.compare_digest(offered.encode(), self._api_key):
                return "api-key"
            raise HttpError(401, ErrorCode.UNAUTHORIZED, "the API key is not valid")
        token = parse_bearer(request.headers.get("Authorization"))
        if token is None:
            raise HttpError(
                401,
                ErrorCode.UNAUTHORIZED,
                "this endpoint needs an X-API-Key header or an admin's Bearer token",
            )
        if self._verify is None:
            raise HttpError(401, ErrorCode.UNAUTHORIZED, "JWT authentication is not enabled")
        try:
            principal = self._verify(token)
        except AuthError as exc:
            raise HttpError(401, exc.code, exc.message) from None
        if not principal.is_admin:
            raise HttpError(403, ErrorCode.FORBIDDEN, "this endpoint is for admins")
        return principal.user or "admin"

    def reader(self, request: web.Request) -> Principal:
        """Who is reading: an admin (API key), a token's user, or anyone when auth is off.

        Raises:
            HttpError: 401 when JWT auth is on and no valid credentials came.
        """
        if self._verify is None:
            return ANONYMOUS
        offered = request.headers.get("X-API-Key")
        if offered is not None and self._api_key:
            if hmac.compare_digest(offered.encode(), self._api_key):
                return API_KEY_ADMIN
            raise HttpError(401, ErrorCode.UNAUTHORIZED, "the API key is not valid")
        token = parse_bearer(request.headers.get("Authorization"))
        if token is None:
            raise HttpError(
                401, ErrorCode.UNAUTHORIZED, "this endpoint needs a Bearer token or an X-API-Key"
            )
        try:
            return self._verify(token)
        except AuthError as exc:
            raise HttpError(401, exc.code, exc.message) from None

    def is_admin(self, request: web.Request) -> bool:
        try:
            self.require_admin(request)
        except HttpError:
            return False
        return True


NODE_KEY = web.AppKey("node", Node)
HEALTH_KEY: web.AppKey[HealthProvider] = web.AppKey("health")
GUARD_KEY = web.AppKey("guard", ApiGuard)
POLICY_KEY = web.AppKey("policy", AccessPolicy)
STORE_KEY: web.AppKey[NotificationStorePort] = web.AppKey("store")
NEW_ID_KEY: web.AppKey[Callable[[], str]] = web.AppKey("new_id")


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


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 ``invalid_json`` / ``not_an_object`` otherwise."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, ErrorCode.NOT_AN_OBJECT, "body must be a JSON object")
    return body


async def broadcast(request: web.Request) -> web.Response:
    """Publish ``message`` on ``channel`` (or to every client with ``"all"``)."""
    who = request.app[GUARD_KEY].require_admin(request)
    body = await json_object(request)
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
    log.info(
        "HTTP broadcast on %s by %s from %s delivered to %d",
        channel,
        who,
        request.remote,
        delivered,
    )
    return json_response({"success": True, "channel": channel, "delivered": delivered})


async def health(request: web.Request) -> web.Response:
    report = request.app[HEALTH_KEY]()
    guard = request.app[GUARD_KEY]
    if guard.protected and not guard.is_admin(request):
        report = {key: report[key] for key in PUBLIC_HEALTH_KEYS if key in report}
    return json_response(report)


def create_app(
    node: Node,
    health_provider: HealthProvider,
    max_body: int,
    guard: ApiGuard | None = None,
    policy: AccessPolicy | None = None,
    store: NotificationStorePort | None = None,
    new_id: Callable[[], str] | None = None,
) -> web.Application:
    from slurmcast.http.notifications import add_routes
    from slurmcast.http.snapshots import snapshot

    app = web.Application(middlewares=[json_errors], client_max_size=max_body)
    app[NODE_KEY] = node
    app[HEALTH_KEY] = health_provider
    app[GUARD_KEY] = guard or ApiGuard("", None)
    app[POLICY_KEY] = policy or AccessPolicy()
    app.router.add_get("/snapshot/{channel}", snapshot)
    if store is not None:
        app[STORE_KEY] = store
        app[NEW_ID_KEY] = new_id or (lambda: "")
        add_routes(app)
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
