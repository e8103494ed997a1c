from slurmcast.core.filters import parse_filter
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.core.subscription import Subscription


def publication(offset: int, state: str = "RUNNING") -> Publication:
    return Publication(
        channel="jobs",
        payload=b'{"type":"job_state_change"}',
        tags={"status": state},
        position=StreamPosition(offset, "e"),
    )


def test_floor_skips_what_the_start_covered_then_lets_everything_through() -> None:
    subscription = Subscription("jobs", floor=5)
    assert not subscription.wants(publication(4))
    assert not subscription.wants(publication(5))
    assert subscription.wants(publication(6))
    assert subscription.floor == 0
    assert subscription.wants(publication(7))


def test_filter_decides_for_live_publications() -> None:
    subscription = Subscription("jobs", filter=parse_filter("jobs", {"status": "FAILED"}))
    assert not subscription.wants(publication(1, "RUNNING"))
    assert subscription.wants(publication(2, "FAILED"))
