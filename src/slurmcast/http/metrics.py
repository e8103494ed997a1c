"""``GET /metrics``: this instance's figures in the Prometheus text format.

Open on the HTTP port by default (``--metrics-auth none``), as exporters
usually are; with ``--metrics-auth api_key`` it needs the ``X-API-Key``
header or an admin's JWT, like the API's write endpoints (``http.guard``).
The figures are read only when this is called (``observability.collector``);
prometheus_client writes them, in OpenMetrics when the scraper asks for it,
gzipped when it accepts that.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from slurmcast.http.context import GUARD_KEY


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The registry ``GET /metrics`` writes, and whether it needs an admin."""

    registry: CollectorRegistry
    protected: bool = False


def add_routes(app: web.Application, config: MetricsConfig) -> None:
    handler = make_aiohttp_handler(config.registry)

    async def metrics(request: web.Request) -> web.StreamResponse:
        if config.protected:
            request.app[GUARD_KEY].require_admin(request)
        return await handler(request)

    app.router.add_get("/metrics", metrics)
