from slurmcast.core.registry import SubscriptionRegistry
from slurmcast.core.subscription import Subscription


def test_add_remove_and_counts() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    first = Subscription("jobs")
    assert registry.add("a", first) is True
    assert registry.add("a", Subscription("jobs")) is False
    assert registry.get("a", "jobs") is first  # the old record stays
    registry.add("b", Subscription("jobs"))
    registry.add("b", Subscription("nodes"))
    assert registry.counts(["jobs", "nodes", "alerts"]) == {"jobs": 2, "nodes": 1, "alerts": 0}
    assert registry.remove("a", "nodes") is False
    assert registry.remove("a", "jobs") is True
    assert set(registry.subscribers("jobs")) == {"b"}
    assert registry.remove_client("b") == ["jobs", "nodes"]
    assert registry.counts(["jobs", "nodes"]) == {"jobs": 0, "nodes": 0}
    assert registry.channels_of("b") == frozenset()
    assert registry.get("b", "jobs") is None
