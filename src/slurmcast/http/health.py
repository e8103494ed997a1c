"""``GET /health``: always open, but only counts and status for non-admins while protected."""

from __future__ import annotations

from aiohttp import web

from slurmcast.http.context import GUARD_KEY, HEALTH_KEY
from slurmcast.http.responses import json_response

#: Keys /health shows to everyone while the API is protected.
PUBLIC_HEALTH_KEYS = ("status", "version", "clients", "subscriptions", "uptime_s")


async def health(request: web.Request) -> web.Response:
    report = request.app[HEALTH_KEY]()
    guard = request.app[GUARD_KEY]
    if guard.protected and not guard.is_admin(request):
        report = {key: report[key] for key in PUBLIC_HEALTH_KEYS if key in report}
    return json_response(report)
