from typing import Any

import pytest

from slurmcast.core.filters import parse_filter, tags_for
from slurmcast.errors import ErrorCode, ProtocolError

JOB = {
    "job_id": "12",
    "user": "alice",
    "partition": "gpu",
    "status": "RUNNING",
    "name": "train",
    "nodes": ["node001", "node002"],
}


def test_equality_membership_and_case() -> None:
    tags = tags_for("jobs", JOB)
    assert tags["node"] == ("node001", "node002")
    assert parse_filter("jobs", {"user": "alice"}).matches(tags)
    assert parse_filter("jobs", {"status": ["running", "FAILED"], "partition": ["gpu"]}).matches(
        tags
    )
    assert not parse_filter("jobs", {"user": "bob"}).matches(tags)
    assert parse_filter("jobs", {"node": "node002"}).matches(tags)
    assert parse_filter("jobs", {"job_id": 12}).matches(tags)
    # Users are case-sensitive names; states are not.
    assert not parse_filter("jobs", {"user": "Alice"}).matches(tags)


def test_every_condition_must_hold_and_missing_fields_do_not_match() -> None:
    tags = tags_for("jobs", {**JOB, "nodes": []})
    assert not parse_filter("jobs", {"user": "alice", "status": "PENDING"}).matches(tags)
    assert not parse_filter("jobs", {"name": "x"}).matches(tags_for("jobs", {"user": "alice"}))


def test_messages_without_tags_pass_every_filter() -> None:
    assert parse_filter("jobs", {"user": "bob"}).matches({})


def test_per_channel_fields() -> None:
    note = {
        "type": "job_failed",
        "severity": "error",
        "user": "bob",
        "data": {"job_id": "7", "status": "FAILED"},
    }
    assert parse_filter("notifications", {"type": "job_failed", "job_id": "7"}).matches(
        tags_for("notifications", note)
    )
    assert parse_filter("user:bob", {"severity": "ERROR"}).matches(tags_for("user:bob", note))
    node = {"node": "node003", "state": "DRAINED", "partitions": ["cpu", "debug"]}
    assert parse_filter("nodes", {"partition": "debug", "state": "drained"}).matches(
        tags_for("nodes", node)
    )
    alert = {
        "rule": "node_unavailable",
        "severity": "critical",
        "status": "firing",
        "details": {"node": "node003"},
    }
    assert parse_filter("alerts", {"node": "node003", "status": "firing"}).matches(
        tags_for("alerts", alert)
    )


@pytest.mark.parametrize(
    ("channel", "value", "words"),
    [
        ("jobs", "alice", "must be an object"),
        ("jobs", {"colour": "red"}, "cannot filter jobs on 'colour'"),
        ("jobs", {"user": []}, "1 to 100 values"),
        ("jobs", {"user": [{"a": 1}]}, "takes strings"),
        ("jobs", {"user": True}, "takes strings"),
        ("metrics", {"node": "x"}, "no filterable fields"),
    ],
)
def test_invalid_filters_say_what_is_wrong(channel: str, value: Any, words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_filter(channel, value)
    assert info.value.code is ErrorCode.INVALID_FILTER and words in info.value.message


def test_account_filter_matches_the_job_payload() -> None:
    from slurmcast.core.events import job_payload

    from support.builders import job

    physics = job_payload(job("1", account="physics"))
    chemistry = job_payload(job("2", account="chemistry"))
    wanted = parse_filter("jobs", {"account": "physics"})
    assert wanted.matches(tags_for("jobs", physics))
    assert not wanted.matches(tags_for("jobs", chemistry))
