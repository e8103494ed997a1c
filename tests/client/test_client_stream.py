"""One subscription's stream, without sockets: positions, duplicates, snapshots, resyncs."""

from __future__ import annotations

from typing import Any

from slurmcast.client.stream import ChannelStream, Position, is_publication


def message(offset: int, epoch: str = "e1", **data: Any) -> dict[str, Any]:
    return {
        "channel": "jobs",
        "type": "job_update",
        "timestamp": "2026-11-28T04:19:06.880Z",
        "data": data,
        "offset": offset,
        "epoch": epoch,
    }


def part(
    number: int, parts: int, items: list[dict[str, Any]], offset: int = 10, epoch: str = "e1"
) -> dict[str, Any]:
    return {
        "type": "snapshot",
        "channel": "jobs",
        "position": {"offset": offset, "epoch": epoch},
        "data": items,
        "part": number,
        "parts": parts,
    }


def test_first_request_then_resubscription_from_the_last_position() -> None:
    stream = ChannelStream("jobs", snapshot=True, filter={"user": "alice"})
    assert stream.subscribe_request(1) == {
        "type": "subscribe",
        "channel": "jobs",
        "id": 1,
        "snapshot": True,
        "filter": {"user": "alice"},
    }
    stream.on_subscribed({"type": "subscribed", "position": {"offset": 10, "epoch": "e1"}})
    stream.on_snapshot(part(1, 1, []))
    stream.on_publication(message(11))
    assert stream.subscribe_request(2)["since"] == {"offset": 11, "epoch": "e1"}


def test_duplicates_and_stale_offsets_are_dropped_new_epochs_are_not() -> None:
    stream = ChannelStream("jobs")
    assert stream.on_subscribed({"position": {"offset": 5, "epoch": "e1"}}) == []
    delivered = []
    for offset in (6, 7, 7, 6, 8, 5, 9):
        delivered += stream.on_publication(message(offset))
    assert [m["offset"] for m in delivered] == [6, 7, 8, 9]
    assert stream.duplicates == 3 and stream.position == Position(9, "e1")
    # A new history starts over at small offsets: not a duplicate.
    assert stream.on_publication(message(1, epoch="e2"))
    assert stream.position == Position(1, "e2")
    # A message without a position (an old server) is delivered as is.
    assert stream.on_publication({"channel": "jobs", "timestamp": "t", "type": "x"})


def test_recovered_keeps_the_position_so_the_replay_is_delivered() -> None:
    stream = ChannelStream("jobs", snapshot=True, since=Position(7, "e1"))
    assert stream.subscribe_request(3)["since"] == {"offset": 7, "epoch": "e1"}
    reply = {"position": {"offset": 9, "epoch": "e1"}, "recovered": True}
    assert stream.on_subscribed(reply) == []
    assert [m["offset"] for m in stream.on_publication(message(8))] == [8]
    assert [m["offset"] for m in stream.on_publication(message(9))] == [9]
    # No snapshot comes when recovered; a stray one is ignored.
    assert stream.on_snapshot(part(1, 1, [{"job_id": "1"}])) == []
    assert stream.resyncs == 0


def test_not_recovered_means_a_resync_marker_then_the_fresh_snapshot_then_deltas() -> None:
    stream = ChannelStream("jobs", snapshot=True, since=Position(7, "old"))
    reply = {"position": {"offset": 40, "epoch": "new"}, "recovered": False}
    assert stream.on_subscribed(reply) == [
        {"type": "resync", "channel": "jobs", "position": {"offset": 40, "epoch": "new"}}
    ]
    assert stream.resyncs == 1
    assert stream.on_snapshot(part(1, 3, [{"job_id": "1"}], offset=40, epoch="new")) == []
    assert stream.on_snapshot(part(2, 3, [{"job_id": "2"}], offset=40, epoch="new")) == []
    (snapshot,) = stream.on_snapshot(part(3, 3, [{"job_id": "3"}], offset=40, epoch="new"))
    assert snapshot == {
        "type": "snapshot",
        "channel": "jobs",
        "position": {"offset": 40, "epoch": "new"},
        "data": [{"job_id": "1"}, {"job_id": "2"}, {"job_id": "3"}],
    }
    assert stream.on_publication(message(40, epoch="new")) == []
    assert [m["offset"] for m in stream.on_publication(message(41, epoch="new"))] == [41]


def test_not_recovered_without_snapshots_is_a_marker_only() -> None:
    stream = ChannelStream("jobs", since=Position(7, "old"))
    reply = {"position": {"offset": 40, "epoch": "new"}, "recovered": False}
    assert [m["type"] for m in stream.on_subscribed(reply)] == ["resync"]
    assert stream.position == Position(40, "new")
    assert "snapshot" not in stream.subscribe_request(4)


def test_a_new_connection_discards_a_half_received_snapshot() -> None:
    stream = ChannelStream("jobs", snapshot=True)
    stream.subscribe_request(1)
    stream.on_subscribed({"position": {"offset": 10, "epoch": "e1"}})
    assert stream.on_snapshot(part(1, 2, [{"job_id": "stale"}])) == []
    stream.subscribe_request(2)  # the connection dropped between the parts
    stream.on_subscribed({"position": {"offset": 12, "epoch": "e1"}})
    (snapshot,) = stream.on_snapshot(part(1, 1, [{"job_id": "fresh"}], offset=12))
    assert snapshot["data"] == [{"job_id": "fresh"}]


def test_publications_are_told_from_replies() -> None:
    assert is_publication(message(1))
    assert not is_publication(part(1, 1, []))
    assert not is_publication({"type": "subscribed", "channel": "jobs"})
    assert Position.from_dict({"offset": True, "epoch": "e"}) is None
    assert Position.from_dict(None) is None
