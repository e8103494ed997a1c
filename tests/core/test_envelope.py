"""The envelope every channel message travels in."""

from datetime import UTC, datetime, timedelta, timezone

from slurmcast.core.envelope import envelope


def test_envelope_shape() -> None:
    now = datetime(2026, 3, 1, 9, 30, 5, 123456, tzinfo=UTC)
    message = envelope("jobs", "job_submitted", {"job_id": "7"}, now)
    assert message == {
        "channel": "jobs",
        "type": "job_submitted",
        "timestamp": "2026-03-01T09:30:05.123Z",
        "data": {"job_id": "7"},
    }
    assert list(message) == ["channel", "type", "timestamp", "data"]


def test_timestamp_is_utc_with_milliseconds_whatever_the_zone() -> None:
    paris = timezone(timedelta(hours=1))
    now = datetime(2026, 3, 1, 0, 15, 0, tzinfo=paris)
    assert envelope("nodes", "node_state_change", None, now)["timestamp"] == (
        "2026-02-28T23:15:00.000Z"
    )


def test_data_is_passed_through_untouched() -> None:
    data = [1, {"nested": True}]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert envelope("metrics", "cluster_metrics", data, now)["data"] is data
