from collections.abc import Iterable
from datetime import timedelta

from slurmcast.core.alerts import Alert, AlertBook, AlertSeverity, AlertThresholds
from slurmcast.core.metrics import MetricsSample
from slurmcast.core.records import NOT_RESPONDING, NodeState

from support.builders import T0, by_name, node


def sample(cpu: float, memory: float = 10.0) -> MetricsSample:
    return MetricsSample(cluster={"cpu_usage": cpu, "memory_usage": memory}, nodes=[])


def statuses(alerts: Iterable[Alert]) -> list[tuple[str, str]]:
    return [(a.id, a.status.value) for a in alerts]


def test_cpu_alert_fires_once_and_resolves_with_hysteresis() -> None:
    book = AlertBook(AlertThresholds(cpu_usage=90, hysteresis=5))
    assert book.on_metrics(sample(80), T0) == []
    (fired,) = book.on_metrics(sample(93.1), T0)
    assert fired.data()["status"] == "firing" and fired.data()["severity"] == "warning"
    assert fired.data()["details"] == {"cpu_usage": 93.1, "threshold": 90}
    # Still high, or hovering just under the line: silent.
    assert book.on_metrics(sample(95), T0) == []
    assert book.on_metrics(sample(88), T0) == []
    assert book.on_metrics(sample(91), T0) == []
    (resolved,) = book.on_metrics(sample(84.9), T0 + timedelta(minutes=1))
    assert resolved.data()["status"] == "resolved" and resolved.id == fired.id
    assert resolved.data()["since"] == "2026-01-01T12:00:00Z"
    assert book.on_metrics(sample(80), T0) == []


def test_disabled_rule_never_fires() -> None:
    book = AlertBook(AlertThresholds(cpu_usage=None, memory_usage=None))
    assert book.on_metrics(sample(100, 100), T0) == []


def test_node_alerts_fire_escalate_and_resolve() -> None:
    book = AlertBook()
    assert book.on_nodes(by_name(node()), T0) == []
    (drain,) = book.on_nodes(by_name(node(state=NodeState.DRAINING, reason="disk")), T0)
    assert drain.severity.value == "warning" and "disk" in drain.message
    # Draining -> drained: same severity, same condition, silent.
    assert book.on_nodes(by_name(node(state=NodeState.DRAINED)), T0) == []
    (down,) = book.on_nodes(by_name(node(state=NodeState.DOWN)), T0)
    assert down.severity.value == "critical" and down.status.value == "firing"
    (back,) = book.on_nodes(by_name(node(state=NodeState.IDLE)), T0)
    assert back.status.value == "resolved" and back.id == "node_unavailable:node001"


def test_not_responding_node_alerts_and_removed_node_resolves() -> None:
    book = AlertBook()
    alerts = book.on_nodes(by_name(node(flags=frozenset({NOT_RESPONDING}))), T0)
    assert statuses(alerts) == [("node_unavailable:node001", "firing")]
    assert "not responding" in alerts[0].message
    assert statuses(book.on_nodes({}, T0)) == [("node_unavailable:node001", "resolved")]


def test_generic_condition() -> None:
    book = AlertBook()
    assert len(book.set("x", "x", AlertSeverity.WARNING, "m", {}, T0)) == 1
    assert book.set("x", "x", AlertSeverity.WARNING, "m", {}, T0) == []
    assert len(book.clear("x", "ok", {}, T0)) == 1
    assert book.clear("x", "ok", {}, T0) == []
