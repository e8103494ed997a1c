"""The notification rules and deliveries API (issue 18). Being written."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    return None
