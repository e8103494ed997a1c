"""What the handlers find in the application: its ``web.AppKey``s and their types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from slurmcast.core.policy import AccessPolicy
from slurmcast.http.guard import ApiGuard
from slurmcast.node import Node
from slurmcast.ports import NotificationStorePort
from slurmcast.sinks.config import SinksConfig
from slurmcast.storage.outbox import OutboxStore

HealthProvider = Callable[[], dict[str, Any]]

NODE_KEY = web.AppKey("node", Node)
HEALTH_KEY: web.AppKey[HealthProvider] = web.AppKey("health")
GUARD_KEY = web.AppKey("guard", ApiGuard)
POLICY_KEY = web.AppKey("policy", AccessPolicy)
#: Present only when notifications are stored (with ``NEW_ID_KEY``).
STORE_KEY: web.AppKey[NotificationStorePort] = web.AppKey("store")
NEW_ID_KEY: web.AppKey[Callable[[], str]] = web.AppKey("new_id")


@dataclass(frozen=True, slots=True)
class NotifyApi:
    """What the notification rules and deliveries API (``http.notify``) works with.

    ``rules_changed`` is called after a rule is created, changed or deleted (the planner
    reloads its rules); ``deliveries_changed`` after a dead delivery is put back (the
    delivery worker looks at the outbox at once).
    """

    outbox: OutboxStore
    sinks: SinksConfig
    clock: Callable[[], datetime]
    rules_changed: Callable[[], None] = lambda: None
    deliveries_changed: Callable[[], None] = lambda: None


#: Present only when notification delivery is configured (a ``[sinks]`` table).
NOTIFY_KEY = web.AppKey("notify", NotifyApi)
