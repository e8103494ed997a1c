"""The presence reporter: this instance's counts out, everyone's totals in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from slurmcast.instances.presence_local import LocalPresence
from slurmcast.instances.presence_report import PresenceReporter, totals

from support.waiting import eventually


def test_totals_sum_clients_and_subscriptions_per_channel() -> None:
    reports = {
        "a": {"clients": 2, "subscriptions": {"jobs": 2, "nodes": 1}},
        "b": {"clients": 5, "subscriptions": {"jobs": 1, "alerts": 4}},
    }
    assert totals(reports) == {
        "instances": 2,
        "clients": 7,
        "subscriptions": {"jobs": 3, "nodes": 1, "alerts": 4},
    }
    assert totals({}) == {"instances": 0, "clients": 0, "subscriptions": {}}


class Unreachable:
    async def report(self, instance: str, counts: dict[str, Any]) -> None:
        raise ConnectionError("no route to Redis")

    async def instances(self) -> dict[str, dict[str, Any]]:
        raise ConnectionError("no route to Redis")


async def test_the_reporter_keeps_reporting_and_totals_follow() -> None:
    clients = [1]
    reporter = PresenceReporter(
        LocalPresence(), "me", lambda: {"clients": clients[0], "subscriptions": {}}, 0.01
    )
    task = asyncio.create_task(reporter.run())
    try:
        await eventually(_value(reporter), lambda t: t.get("clients") == 1)
        clients[0] = 4
        await eventually(_value(reporter), lambda t: t.get("clients") == 4)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_unreachable_store_empties_the_totals_and_the_loop_goes_on() -> None:
    reporter = PresenceReporter(Unreachable(), "me", lambda: {"clients": 1}, 0.01)
    reporter.totals = {"instances": 1}
    task = asyncio.create_task(reporter.run())
    try:
        await eventually(_value(reporter), lambda t: t == {})
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _value(reporter: PresenceReporter) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def probe() -> dict[str, Any]:
        return reporter.totals

    return probe
