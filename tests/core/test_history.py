import pytest

from slurmcast.core.history import ChannelHistory, HistoryResult, recover
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.errors import ProtocolError


def pub(n: int, epoch: str = "e1") -> Publication:
    return Publication("jobs", b'{"n":%d}' % n).at(StreamPosition(n, epoch))


def filled(count: int, size: int = 100, ttl: float | None = None) -> ChannelHistory:
    history = ChannelHistory("e1", size, ttl)
    for i in range(count):
        history.append(Publication("jobs", b'{"n":%d}' % i), now=float(i))
    return history


def test_offsets_increase_by_one_and_wire_carries_the_position() -> None:
    history = filled(3)
    assert history.position == StreamPosition(3, "e1")
    result = history.since(0, 10, now=3)
    assert [p.offset for p in result.publications] == [1, 2, 3]
    assert result.publications[0].wire() == b'{"n":0,"offset":1,"epoch":"e1"}'


def test_size_and_age_limits() -> None:
    history = filled(10, size=4)
    result = history.since(None, 100, now=10)
    assert [p.offset for p in result.publications] == [7, 8, 9, 10] and result.oldest == 7
    aged = filled(10, size=100, ttl=3.5)
    assert [p.offset for p in aged.since(None, 100, now=10).publications] == [8, 9, 10]


def test_latest_and_paging() -> None:
    history = filled(10)
    assert [p.offset for p in history.latest(3, now=10).publications] == [8, 9, 10]
    assert [p.offset for p in history.since(4, 2, now=10).publications] == [5, 6]


def result(offsets: list[int], top: int, oldest: int, epoch: str = "e1") -> HistoryResult:
    return HistoryResult([pub(n, epoch) for n in offsets], StreamPosition(top, epoch), oldest)


def test_recover_merges_history_and_held_without_duplicates() -> None:
    outcome = recover(StreamPosition(4, "e1"), result([5, 6, 7], 7, 1), [pub(6), pub(7), pub(8)])
    assert outcome.recovered
    assert [p.offset for p in outcome.publications] == [5, 6, 7, 8]
    assert outcome.position == StreamPosition(8, "e1")


def test_recover_when_nothing_was_missed() -> None:
    outcome = recover(StreamPosition(7, "e1"), result([], 7, 1), [])
    assert outcome.recovered and outcome.publications == []
    assert outcome.position == StreamPosition(7, "e1")


@pytest.mark.parametrize(
    ("since", "history", "held", "why"),
    [
        (StreamPosition(4, "old"), result([5, 6], 6, 1), [], "epoch changed"),
        (StreamPosition(2, "e1"), result([5, 6], 6, 5), [], "fell out of the window"),
        (StreamPosition(9, "e1"), result([], 6, 1), [], "ahead of the channel"),
        (StreamPosition(4, "e1"), result([5], 6, 1), [], "history does not reach the top"),
        (StreamPosition(4, "e1"), result([5, 6], 6, 1), [pub(8)], "gap between history and live"),
    ],
)
def test_never_a_partial_replay(
    since: StreamPosition, history: HistoryResult, held: list[Publication], why: str
) -> None:
    outcome = recover(since, history, held)
    assert not outcome.recovered, why
    assert outcome.position == history.top
    # Only live publications after the reported position are handed on.
    assert all(p.offset > history.top.offset for p in outcome.publications)


def test_position_parsing() -> None:
    assert StreamPosition.parse({"offset": 3, "epoch": "ab"}) == StreamPosition(3, "ab")
    for bad in (
        {"offset": -1, "epoch": "a"},
        {"offset": True, "epoch": "a"},
        {"offset": 1},
        {"offset": 1, "epoch": ""},
        [1, "a"],
        {"offset": 1, "epoch": "x" * 65},
    ):
        with pytest.raises(ProtocolError):
            StreamPosition.parse(bad)
