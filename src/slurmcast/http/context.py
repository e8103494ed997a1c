"""What the handlers find in the application: its ``web.AppKey``s and their types."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from slurmcast.core.policy import AccessPolicy
from slurmcast.http.guard import ApiGuard
from slurmcast.node import Node
from slurmcast.ports import NotificationStorePort

HealthProvider = Callable[[], dict[str, Any]]

NODE_KEY = web.AppKey("node", Node)
HEALTH_KEY: web.AppKey[HealthProvider] = web.AppKey("health")
GUARD_KEY = web.AppKey("guard", ApiGuard)
POLICY_KEY = web.AppKey("policy", AccessPolicy)
#: Present only when notifications are stored (with ``NEW_ID_KEY``).
STORE_KEY: web.AppKey[NotificationStorePort] = web.AppKey("store")
NEW_ID_KEY: web.AppKey[Callable[[], str]] = web.AppKey("new_id")
