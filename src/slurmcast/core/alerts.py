"""Threshold alerts that fire once and resolve once.

``AlertBook`` remembers which conditions are firing. A condition that holds
on every cycle raises one ``firing`` alert, and one ``resolved`` alert when it
clears; usage thresholds clear only below ``threshold - hysteresis`` so a
value hovering around the line does not flap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from slurmcast.core.channels import Channel
from slurmcast.core.metrics import MetricsSample
from slurmcast.core.records import UNAVAILABLE_NODE_STATES, NodeRecord, NodeState
from slurmcast.core.timefmt import iso_z


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert message. ``id`` names the condition: firing and resolved share it."""

    id: str
    rule: str
    severity: AlertSeverity
    status: AlertStatus
    message: str
    details: dict[str, Any]
    at: datetime
    since: datetime
    channel: ClassVar[Channel] = Channel.ALERTS
    event_type: ClassVar[str] = "alert"
    owner: ClassVar[str | None] = None

    def data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity.value,
            "status": self.status.value,
            "message": self.message,
            "details": self.details,
            "since": iso_z(self.since),
        }


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Configurable limits. ``None`` disables a usage rule."""

    cpu_usage: float | None = 90.0
    memory_usage: float | None = 95.0
    hysteresis: float = 5.0


@dataclass
class AlertBook:
    """The set of firing conditions, and the rules that open and close them."""

    thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    firing: dict[str, Alert] = field(default_factory=dict)

    def set(
        self,
        alert_id: str,
        rule: str,
        severity: AlertSeverity,
        message: str,
        details: dict[str, Any],
        now: datetime,
    ) -> list[Alert]:
        """Mark a condition as holding; returns the alert only if it is new or escalated.

        A condition already firing at the same severity stays silent; one
        whose severity changes (a draining node going down) fires again.
        """
        current = self.firing.get(alert_id)
        if current is not None and current.severity is severity:
            return []
        alert = Alert(
            id=alert_id,
            rule=rule,
            severity=severity,
            status=AlertStatus.FIRING,
            message=message,
            details=details,
            at=now,
            since=current.since if current is not None else now,
        )
        self.firing[alert_id] = alert
        return [alert]

    def clear(
        self, alert_id: str, message: str, details: dict[str, Any], now: datetime
    ) -> list[Alert]:
        """Mark a condition as cleared; returns the ``resolved`` alert if it was firing."""
        current = self.firing.pop(alert_id, None)
        if current is None:
            return []
        return [
            Alert(
                id=alert_id,
                rule=current.rule,
                severity=current.severity,
                status=AlertStatus.RESOLVED,
                message=message,
                details=details,
                at=now,
                since=current.since,
            )
        ]

    def on_metrics(self, sample: MetricsSample, now: datetime) -> list[Alert]:
        """Cluster usage rules (CPU, memory) with hysteresis."""
        alerts: list[Alert] = []
        for rule, label, value, limit in (
            ("cpu_usage_high", "CPU", sample.cpu_usage, self.thresholds.cpu_usage),
            ("memory_usage_high", "memory", sample.memory_usage, self.thresholds.memory_usage),
        ):
            if limit is None:
                continue
            details = {rule.removesuffix("_high"): value, "threshold": limit}
            if value > limit:
                alerts += self.set(
                    rule,
                    rule,
                    AlertSeverity.WARNING,
                    f"Cluster {label} usage is {value}% (threshold {limit:g}%)",
                    details,
                    now,
                )
            elif value < limit - self.thresholds.hysteresis:
                alerts += self.clear(
                    rule, f"Cluster {label} usage is back to {value}%", details, now
                )
        return alerts

    def on_nodes(self, nodes: Mapping[str, NodeRecord], now: datetime) -> list[Alert]:
        """One condition per node that cannot take work (down, drain, fail, not responding)."""
        alerts: list[Alert] = []
        for name, node in nodes.items():
            alert_id = f"node_unavailable:{name}"
            if node.state in UNAVAILABLE_NODE_STATES or node.not_responding:
                critical = node.not_responding or node.state in (
                    NodeState.DOWN,
                    NodeState.FAIL,
                    NodeState.FAILING,
                )
                what = "not responding" if node.not_responding else node.state.value
                reason = f" ({node.reason})" if node.reason else ""
                alerts += self.set(
                    alert_id,
                    "node_unavailable",
                    AlertSeverity.CRITICAL if critical else AlertSeverity.WARNING,
                    f"Node {name} is {what}{reason}",
                    _node_details(node),
                    now,
                )
            else:
                alerts += self.clear(
                    alert_id, f"Node {name} is {node.state.value} again", _node_details(node), now
                )
        for alert_id in [a for a in self.firing if a.startswith("node_unavailable:")]:
            name = alert_id.split(":", 1)[1]
            if name not in nodes:
                alerts += self.clear(
                    alert_id, f"Node {name} was removed from the cluster", {"node": name}, now
                )
        return alerts


def _node_details(node: NodeRecord) -> dict[str, Any]:
    return {
        "node": node.name,
        "state": node.state.value,
        "flags": sorted(node.flags),
        "reason": node.reason,
    }
