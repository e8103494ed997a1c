"""The web dashboard: ``GET /``, ``GET /static/<file>`` and ``GET /dashboard.json``.

The page is static (``slurmcast.web``); everything live reaches it over the
WebSocket port through the project's JS client, and notifications through this
API. ``/dashboard.json`` tells the page where that port is and what the server
allows, so one page works with and without authentication.

The page's Content-Security-Policy allows scripts, styles and images from this
origin only and WebSocket connections to the gateway alone: the host name the
browser used with ``--ws-port``, or ``--public-ws-url``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from slurmcast.http.assets import Asset, StaticAssets
from slurmcast.http.errors import HttpError
from slurmcast.http.responses import json_response

#: A Host header's name part we are willing to write into a CSP: a DNS name,
#: IPv4, or bracketed IPv6, and nothing that could end a directive.
HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """What the page needs to know about the server.

    Args:
        ws_port: the WebSocket port (a callable: bound only once the server started).
        public_ws_url: where the page connects instead, behind a proxy ("" = derive).
    """

    ws_port: Callable[[], int]
    public_ws_url: str = ""
    auth: str = "none"
    notifications: bool = True
    jobs_visibility: str = "own"
    #: Notification rules and deliveries (``/notify``) exist: the page shows their panel.
    notify: bool = False

    def page_csp(self, host_header: str) -> str:
        sources = ["'self'"]
        match = HOST.match(host_header)
        if match:
            host, port = match.group(1), self.ws_port()
            sources += [f"ws://{host}:{port}", f"wss://{host}:{port}"]
        if self.public_ws_url:
            sources.append(self.public_ws_url)
        return "; ".join(
            (
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "img-src 'self' data:",
                "font-src 'self'",
                "manifest-src 'self'",
                f"connect-src {' '.join(sources)}",
                "frame-ancestors 'none'",
                "base-uri 'none'",
                "form-action 'self'",
            )
        )


DASHBOARD_KEY = web.AppKey("dashboard", DashboardConfig)
ASSETS_KEY = web.AppKey("assets", StaticAssets)


def add_routes(app: web.Application, settings: DashboardConfig, assets: StaticAssets) -> None:
    app[DASHBOARD_KEY] = settings
    app[ASSETS_KEY] = assets
    app.router.add_get("/", page)
    app.router.add_get("/dashboard.json", config)
    app.router.add_get("/static/{name:.+}", static)


async def page(request: web.Request) -> web.StreamResponse:
    response = _serve(request, _asset(request, "index.html"))
    response.headers["Content-Security-Policy"] = request.app[DASHBOARD_KEY].page_csp(request.host)
    return response


async def static(request: web.Request) -> web.StreamResponse:
    return _serve(request, _asset(request, request.match_info["name"]))


async def config(request: web.Request) -> web.StreamResponse:
    settings = request.app[DASHBOARD_KEY]
    response = json_response(
        {
            "ws_port": settings.ws_port(),
            "ws_url": settings.public_ws_url or None,
            "auth": settings.auth,
            "notifications": settings.notifications,
            "jobs_visibility": settings.jobs_visibility,
            "notify": settings.notify,
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _asset(request: web.Request, name: str) -> Asset:
    asset = request.app[ASSETS_KEY].get(name)
    if asset is None:
        raise HttpError(404, "not_found", f"no file {name}")
    return asset


def _serve(request: web.Request, asset: Asset) -> web.StreamResponse:
    # The names carry no content hash: the browser revalidates every time and
    # mostly gets a 304, so a new release is seen at the next load.
    gzipped = asset.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", "")
    etag = asset.gzip_etag if gzipped else asset.etag
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    body = asset.gzipped if gzipped and asset.gzipped is not None else asset.body
    response = web.Response(body=body, content_type=asset.content_type, headers=headers)
    if asset.content_type.startswith("text/"):
        response.charset = "utf-8"
    return response
