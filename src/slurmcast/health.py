"""What ``GET /health`` says: every part's state, and whether any is degraded.

Degraded (the source failing or reporting problems, the notification database
or the broker unreachable) is still HTTP 200: a Redis blip must not make a
load balancer drop every instance at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from slurmcast import __version__
from slurmcast.hub import Hub
from slurmcast.monitors.leader import Leadership
from slurmcast.monitors.poller import ClusterMonitor
from slurmcast.node import Node
from slurmcast.ports import Broker, Source
from slurmcast.storage import NotificationStore


class ConnectionStats(Protocol):
    def stats(self) -> dict[str, Any]: ...


class HealthReport:
    """Builds the /health document from the live parts of one instance."""

    def __init__(
        self,
        *,
        instance: str,
        hub: Hub,
        node: Node,
        broker: Broker,
        source: Source,
        monitor: ClusterMonitor,
        leadership: Leadership,
        notifications: NotificationStore,
        http_connections: Callable[[], ConnectionStats],
        cluster_totals: Callable[[], dict[str, Any]],
    ) -> None:
        self.instance = instance
        self.hub = hub
        self.node = node
        self.broker = broker
        self.source = source
        self.monitor = monitor
        self.leadership = leadership
        self.notifications = notifications
        self.http_connections = http_connections
        self.cluster_totals = cluster_totals
        self._started = time.monotonic()

    def __call__(self) -> dict[str, Any]:
        source = self.monitor.health.to_dict()
        details = self.source.describe()
        source["details"] = details
        storage = self.notifications.health()
        broker = self.broker.describe()
        degraded = (
            self.monitor.health.degraded
            or bool(details.get("problems"))
            or not storage["available"]
            or not broker["connected"]
        )
        return {
            "status": "degraded" if degraded else "healthy",
            "version": __version__,
            "instance": {"id": self.instance, "leader": self.leadership.is_leader},
            "broker": broker,
            "cluster": self.cluster_totals() or None,
            "clients": self.hub.client_count,
            "subscriptions": self.hub.subscription_counts(),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "source": source,
            "storage": storage,
            "http": self.http_connections().stats(),
            "published": self.node.published,
            "polls": dict(self.monitor.polls),
        }
