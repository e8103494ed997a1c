"""This instance's counts reported to the others, and everyone's totals, for /health."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from slurmcast.cancellation import raise_if_cancelled
from slurmcast.ports import Presence

log = logging.getLogger("slurmcast")


class PresenceReporter:
    """Reports ``counts()`` under ``instance`` every ``interval`` seconds and keeps
    the totals of every instance's last report (empty while the store is unreachable)."""

    def __init__(
        self,
        presence: Presence,
        instance: str,
        counts: Callable[[], dict[str, Any]],
        interval: float,
    ) -> None:
        self.presence = presence
        self.instance = instance
        self.counts = counts
        self.interval = interval
        self.totals: dict[str, Any] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.presence.report(self.instance, self.counts())
                self.totals = totals(await self.presence.instances())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise_if_cancelled()
                log.debug("could not report presence: %s", exc)
                self.totals = {}
            await asyncio.sleep(self.interval)


def totals(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Cluster-wide sums of the instances' counts."""
    clients = sum(int(report.get("clients", 0)) for report in reports.values())
    subscriptions: dict[str, int] = {}
    for report in reports.values():
        for channel, count in report.get("subscriptions", {}).items():
            subscriptions[channel] = subscriptions.get(channel, 0) + int(count)
    return {"instances": len(reports), "clients": clients, "subscriptions": subscriptions}
