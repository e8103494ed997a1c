"""The HTTP API (port 5012 by default), assembled: its routes and middlewares.

* ``POST /broadcast`` (``http.broadcast``), ``GET /health`` (``http.health``);
* ``GET /snapshot/<channel>`` (``http.snapshots``);
* ``/notifications`` (``http.notifications``), when notifications are stored;
* ``/notify/...``: notification rules and deliveries (``http.notify``), when sinks are set up;
* ``/``, ``/static/...``, ``/dashboard.json``: the web dashboard (``http.dashboard``);
* ``GET /metrics``: Prometheus' figures (``http.metrics``), when given a registry.

Every answer carries the security headers of ``http.headers``.

Who may call what is ``http.guard``'s; the error format ``http.responses``'s;
serving it is ``http.server``'s.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from slurmcast.core.policy import AccessPolicy
from slurmcast.http import dashboard, metrics, notify
from slurmcast.http.assets import StaticAssets
from slurmcast.http.broadcast import broadcast
from slurmcast.http.context import (
    GUARD_KEY,
    HEALTH_KEY,
    NEW_ID_KEY,
    NODE_KEY,
    NOTIFY_KEY,
    POLICY_KEY,
    STORE_KEY,
    HealthProvider,
    NotifyApi,
)
from slurmcast.http.dashboard import DashboardConfig
from slurmcast.http.guard import ApiGuard
from slurmcast.http.headers import add_security_headers
from slurmcast.http.health import health
from slurmcast.http.metrics import MetricsConfig
from slurmcast.http.middleware import json_errors, require_json
from slurmcast.http.notifications import add_routes
from slurmcast.http.openapi import openapi
from slurmcast.http.snapshots import snapshot
from slurmcast.node import Node
from slurmcast.ports import NotificationStorePort
from slurmcast.web import STATIC_DIR


def create_app(
    node: Node,
    health_provider: HealthProvider,
    max_body: int,
    guard: ApiGuard | None = None,
    policy: AccessPolicy | None = None,
    store: NotificationStorePort | None = None,
    new_id: Callable[[], str] | None = None,
    dashboard_config: DashboardConfig | None = None,
    metrics_config: MetricsConfig | None = None,
    notify_api: NotifyApi | None = None,
) -> web.Application:
    app = web.Application(middlewares=[json_errors, require_json], client_max_size=max_body)
    app.on_response_prepare.append(add_security_headers)
    app[NODE_KEY] = node
    app[HEALTH_KEY] = health_provider
    app[GUARD_KEY] = guard or ApiGuard("", None)
    app[POLICY_KEY] = policy or AccessPolicy()
    app.router.add_get("/snapshot/{channel}", snapshot)
    if store is not None:
        app[STORE_KEY] = store
        app[NEW_ID_KEY] = new_id or (lambda: "")
        add_routes(app)
    if notify_api is not None:
        app[NOTIFY_KEY] = notify_api
        notify.add_routes(app)
    app.router.add_post("/broadcast", broadcast)
    app.router.add_get("/health", health)
    app.router.add_get("/openapi.json", openapi)
    if dashboard_config is not None:
        dashboard.add_routes(app, dashboard_config, StaticAssets.load(STATIC_DIR))
    if metrics_config is not None:
        metrics.add_routes(app, metrics_config)
    return app
