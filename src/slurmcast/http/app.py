"""The HTTP API (port 5012 by default): POST /broadcast, GET /health.

Every error is JSON, ``{"success": false, "code": ..., "message": ...}``,
with the same codes the WebSocket protocol uses, plus a few of its own
(``unsupported_media_type``, ``body_too_large``, ``invalid_body``,
``nesting_too_deep``, ``field_too_large``, ``too_many_requests``).

A request with a body must say ``Content-Type: application/json`` (charset
utf-8, if any): a browser page elsewhere can only send text/plain or form
bodies without the CORS preflight this server never answers, so it cannot
post to an API that has no key.

Write endpoints need an admin: an ``X-API-Key`` equal to the configured key
(compared in constant time) or an ``Authorization: Bearer`` JWT with the
``admin`` role. With neither an API key nor JWT auth configured (the
zero-setup default) they are open. ``GET /health`` is always open, but shows
only counts and status to anyone who is not an admin while protection is on.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.log import server_logger

from slurmcast.auth.jwt import parse_bearer
from slurmcast.core.channels import CHANNEL_NAMES
from slurmcast.core.policy import ADMIN_ROLE, ANONYMOUS, AccessPolicy, Principal
from slurmcast.core.publication import ALL_CLIENTS
from slurmcast.errors import AuthError, ErrorCode, SlurmcastError
from slurmcast.http.connections import ConnectionGuard, ConnectionLimits, QuietClientErrors
from slurmcast.node import Node
from slurmcast.storage import NotificationStorePort

log = logging.getLogger("slurmcast.http")

HealthProvider = Callable[[], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

#: Whoever presents the API key acts as an admin.
API_KEY_ADMIN = Principal("api-key", frozenset({ADMIN_ROLE}))

#: Keys /health shows to everyone while the API is protected.
PUBLIC_HEALTH_KEYS = ("status", "version", "clients", "subscriptions", "uptime_s")

#: Levels of nesting a posted JSON value may have. orjson reads 1024 but
#: writes only 254: a deeper value would be accepted, then fail every reply
#: and page that holds it.
MAX_JSON_DEPTH = 32

#: Methods whose body, if any, must be JSON.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ApiGuard:
    """Decides who is an admin of the HTTP API.

    Args:
        api_key: the configured key ('' = none).
        verify: the JWT verifier when JWT auth is on, else None.
    """

    def __init__(self, api_key: str, verify: Callable[[str], Principal] | None) -> None:
        self._api_key = _header_bytes(api_key)
        self._verify = verify

    @property
    def protected(self) -> bool:
        return bool(self._api_key) or self._verify is not None

    def require_admin(self, request: web.Request) -> str:
        """Who the admin is ("api-key" or the user); raises 401/403 ``HttpError``."""
        return self.admin(request)[0]

    def admin(self, request: web.Request) -> tuple[str, Principal | None]:
        """Who the admin is, and their token's principal when they came with one.

        Raises:
            HttpError: 401 without valid credentials, 403 for a token without the admin role.
        """
        if not self.protected:
            return "anonymous", None
        offered = request.headers.get("X-API-Key")
        if offered is not None:
            if self._api_key and self._key_matches(offered):
                return "api-key", None
            raise HttpError(401, ErrorCode.UNAUTHORIZED, "the API key is not valid")
        token = _bearer(request)
        if token is None:
            raise HttpError(
                401,
                ErrorCode.UNAUTHORIZED,
                "this endpoint needs an X-API-Key header or an admin's Bearer token",
            )
        if self._verify is None:
            raise HttpError(401, ErrorCode.UNAUTHORIZED, "JWT authentication is not enabled")
        principal = self._verified(token)
        if not principal.is_admin:
            raise HttpError(403, ErrorCode.FORBIDDEN, "this endpoint is for admins")
        return principal.user or "admin", principal

    def reader(self, request: web.Request) -> Principal:
        """Who is reading: an admin (API key), a token's user, or anyone when auth is off.

        Raises:
            HttpError: 401 when JWT auth is on and no valid credentials came.
        """
        if self._verify is None:
            return ANONYMOUS
        offered = request.headers.get("X-API-Key")
        if offered is not None and self._api_key:
            if self._key_matches(offered):
                return API_KEY_ADMIN
            raise HttpError(401, ErrorCode.UNAUTHORIZED, "the API key is not valid")
        token = _bearer(request)
        if token is None:
            raise HttpError(
                401, ErrorCode.UNAUTHORIZED, "this endpoint needs a Bearer token or an X-API-Key"
            )
        return self._verified(token)

    def _key_matches(self, offered: str) -> bool:
        return hmac.compare_digest(_header_bytes(offered), self._api_key)

    def _verified(self, token: str) -> Principal:
        assert self._verify is not None
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


def _header_bytes(value: str) -> bytes:
    """A header value as bytes, whatever it holds.

    aiohttp decodes header bytes that are not UTF-8 into lone surrogates,
    which a strict ``encode()`` refuses: a credential is compared as bytes.
    """
    return value.encode("utf-8", "surrogatepass")


def _bearer(request: web.Request) -> str | None:
    """The Bearer token of the request, if any; 401 for one that cannot be a JWT."""
    token = parse_bearer(request.headers.get("Authorization"))
    if token is not None and not token.isascii():
        # A JWT is base64url and dots; the verifier would choke on other characters.
        raise HttpError(401, ErrorCode.INVALID_TOKEN, "the token is not valid: it is not ASCII")
    return token


NODE_KEY = web.AppKey("node", Node)
HEALTH_KEY: web.AppKey[HealthProvider] = web.AppKey("health")
GUARD_KEY = web.AppKey("guard", ApiGuard)
POLICY_KEY = web.AppKey("policy", AccessPolicy)
STORE_KEY: web.AppKey[NotificationStorePort] = web.AppKey("store")
NEW_ID_KEY: web.AppKey[Callable[[], str]] = web.AppKey("new_id")


class HttpError(SlurmcastError):
    """An error answered with ``status`` and ``{"code": wire_code, ...}``.

    ``code`` may be an ``ErrorCode`` or, for the few codes only the HTTP API
    uses, plain text (e.g. ``"unsupported_media_type"``).
    """

    def __init__(self, status: int, code: ErrorCode | str, message: str) -> None:
        super().__init__(message, code=code if isinstance(code, ErrorCode) else None)
        self.status = status
        self.wire_code = str(code)


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


async def broadcast(request: web.Request) -> web.Response:
    """Publish ``message`` on ``channel`` (or to every client with ``"all"``)."""
    who, principal = request.app[GUARD_KEY].admin(request)
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
    allowed = principal.channels if principal is not None else None
    if allowed is not None and channel not in allowed:
        # The token's channel allow-list binds admins too (as on the WebSocket).
        raise HttpError(403, ErrorCode.FORBIDDEN, f"your token does not allow channel {channel}")
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

    app = web.Application(middlewares=[json_errors, require_json], client_max_size=max_body)
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


def refuse_odd_expectations(handler: RequestHandler) -> RequestHandler:
    """417 for an ``Expect`` header other than ``100-continue``, before aiohttp sees it.

    aiohttp's own answer quotes the header in its text and fails (500) when
    the header holds bytes that are not UTF-8. It runs before any middleware,
    and for routes not found too, so it is screened here.
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


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a ``ConnectionGuard`` first."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=128
        )


class HttpServer:
    """The API's listener.

    Args:
        limits: deadlines and the per-address limit of its connections
            (``ConnectionGuard``; counted in ``connections.stats()``).
    """

    def __init__(
        self, app: web.Application, host: str, port: int, limits: ConnectionLimits | None = None
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.connections = ConnectionGuard(limits or ConnectionLimits())
        self._runner: web.AppRunner | None = None
        self._site: GuardedSite | None = None

    @property
    def port(self) -> int:
        assert self._site is not None and self._site._server is not None, "not started"
        sockets = getattr(self._site._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1])

    async def start(self) -> None:
        # aiohttp's keep-alive timer is left alone: the guard closes idle
        # connections long before it would.
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            logger=QuietClientErrors(server_logger),
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        # Around the application, so as to see every request, found or not;
        # read by each connection's protocol when it is made, i.e. after this.
        server.request_handler = self.connections.track(
            refuse_odd_expectations(server.request_handler)
        )
        self._site = GuardedSite(self._runner, self.host, self.requested_port, self.connections)
        await self._site.start()
        log.info("HTTP API listening on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            log.info("HTTP API stopped")
