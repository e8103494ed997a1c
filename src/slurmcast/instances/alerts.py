"""This instance's own conditions: its notification database and its Redis connection.

They are raised once and resolved once like every alert (``AlertBook``). With
several instances each one says its own (``<condition>:<instance>`` ids), since
one instance losing its database says nothing about the others. A broker
alert cannot go through the broker (that is what failed): it is written to
this instance's subscribers only, without a position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from slurmcast.core.alerts import AlertBook, AlertSeverity
from slurmcast.node import Node

log = logging.getLogger("slurmcast")


class InstanceAlerts:
    def __init__(
        self, node: Node, instance: str, *, shared: bool, clock: Callable[[], datetime]
    ) -> None:
        self.node = node
        self.instance = instance
        self.clock = clock
        self._book = AlertBook()
        # A lone instance keeps the historical id; dashboards may match on it.
        self._storage_id = f"storage_unavailable:{instance}" if shared else "storage_unavailable"

    async def storage_down(self, message: str) -> None:
        now = self.clock()
        alerts = self._book.set(
            self._storage_id,
            "storage_unavailable",
            AlertSeverity.CRITICAL,
            f"The notification database is unavailable; live channels keep flowing: {message}",
            {"error": message},
            now,
        )
        await self.node.publish_events(alerts, now)

    async def storage_up(self) -> None:
        now = self.clock()
        alerts = self._book.clear(
            self._storage_id, "The notification database is available again", {}, now
        )
        await self.node.publish_events(alerts, now)

    async def broker_connection(self, connected: bool, error: str) -> None:
        """Redis went away or came back: tell this instance's alert subscribers."""
        now = self.clock()
        alert_id = f"broker_unavailable:{self.instance}"
        if connected:
            log.info("Redis is reachable again")
            alerts = self._book.clear(alert_id, "Redis is reachable again", {}, now)
        else:
            log.error("Redis is unreachable (%s): publishing is refused until it returns", error)
            alerts = self._book.set(
                alert_id,
                "broker_unavailable",
                AlertSeverity.CRITICAL,
                f"Instance {self.instance} cannot reach Redis: clients stay connected, "
                "publishing is refused until it returns",
                {"instance": self.instance, "error": error},
                now,
            )
        self.node.publish_locally(alerts, now)
