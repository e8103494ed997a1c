"""This instance's own alerts: raised once, resolved once; a broker alert stays local."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from slurmcast.brokers.memory import MemoryBroker
from slurmcast.hub import Hub
from slurmcast.instances.alerts import InstanceAlerts
from slurmcast.node import Node

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def started_node() -> Node:
    node = Node(MemoryBroker(), Hub())
    await node.start()
    return node


async def alert_messages(node: Node) -> list[dict[str, Any]]:
    history = await node.history("alerts", since=None, limit=100)
    return [orjson.loads(p.wire()) for p in history.publications]


async def test_storage_alerts_fire_once_and_resolve_once_through_the_broker() -> None:
    node = await started_node()
    alerts = InstanceAlerts(node, "i1", shared=False, clock=lambda: NOW)
    await alerts.storage_down("disk full")
    await alerts.storage_down("disk still full")  # the same condition: no second alert
    await alerts.storage_up()
    await alerts.storage_up()
    messages = await alert_messages(node)
    assert [m["data"]["status"] for m in messages] == ["firing", "resolved"]
    assert {m["data"]["id"] for m in messages} == {"storage_unavailable"}
    assert "disk full" in messages[0]["data"]["message"]


async def test_with_several_instances_each_names_its_own_condition() -> None:
    node = await started_node()
    alerts = InstanceAlerts(node, "i2", shared=True, clock=lambda: NOW)
    await alerts.storage_down("gone")
    (message,) = await alert_messages(node)
    assert message["data"]["id"] == "storage_unavailable:i2"


async def test_a_broker_alert_does_not_go_through_the_broker() -> None:
    node = await started_node()
    alerts = InstanceAlerts(node, "i3", shared=True, clock=lambda: NOW)
    await alerts.broker_connection(False, "connection refused")
    await alerts.broker_connection(True, "")
    assert await alert_messages(node) == []
    assert node.published == 0
