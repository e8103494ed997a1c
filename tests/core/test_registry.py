from slurmcast.core.registry import SubscriptionRegistry


def test_add_remove_and_counts():
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    assert registry.add("a", "jobs") is True
    assert registry.add("a", "jobs") is False
    registry.add("b", "jobs")
    registry.add("b", "nodes")
    assert registry.counts(["jobs", "nodes", "alerts"]) == {"jobs": 2, "nodes": 1, "alerts": 0}
    assert registry.remove("a", "nodes") is False
    assert registry.remove("a", "jobs") is True
    assert set(registry.subscribers("jobs")) == {"b"}
    assert registry.remove_client("b") == ["jobs", "nodes"]
    assert registry.counts(["jobs", "nodes"]) == {"jobs": 0, "nodes": 0}
    assert registry.channels_of("b") == frozenset()
