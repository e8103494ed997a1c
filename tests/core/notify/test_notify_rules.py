"""Notification rules: parsing and its refusals, classification of job updates, matching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurmcast.core.notify.errors import ForbiddenDestination, InvalidRule, UnsafeDestination
from slurmcast.core.notify.rules import (
    ALERT_EVENTS,
    MAX_PATTERN_LENGTH,
    Destination,
    DestinationKind,
    NotifyEvent,
    Rule,
    classify,
    matches,
    parse_rule,
    pending_too_long,
)
from slurmcast.core.notify.ssrf import UrlPolicy
from slurmcast.errors import ErrorCode

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
URLS = UrlPolicy()
OWN = "alice@example.edu"


def parse(data: dict[str, Any], *, owner: str = "alice", admin: bool = False) -> Rule:
    return parse_rule(data, owner, admin, own_address=OWN, url_policy=URLS, rule_id="r1")


def email_rule(**fields: Any) -> dict[str, Any]:
    return {"events": ["job_failed"], "destination": {"kind": "email"}, **fields}


def job(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "job_id": "1251",
        "name": "train_bert",
        "status": "FAILED",
        "previous_status": "RUNNING",
        "user": "alice",
        "partition": "gpu",
        "submit_time": "2026-11-28T03:00:00Z",
        "start_time": "2026-11-28T03:10:00Z",
        "end_time": "2026-11-28T05:15:00Z",
        "exit_code": 3,
    }
    base.update(fields)
    return base


# --- parsing


def test_parse_a_full_rule() -> None:
    rule = parse(
        {
            "events": ["job_failed", "job_timeout", "job_pending_long"],
            "partitions": ["gpu", "gpu-long"],
            "name_pattern": "train_*",
            "min_run_seconds": 600,
            "pending_minutes": 120,
            "destination": {"kind": "webhook", "target": "https://hooks.example.com/x"},
        }
    )
    assert rule == Rule(
        id="r1",
        owner="alice",
        events=frozenset(
            {NotifyEvent.JOB_FAILED, NotifyEvent.JOB_TIMEOUT, NotifyEvent.JOB_PENDING_LONG}
        ),
        destination=Destination(DestinationKind.WEBHOOK, "https://hooks.example.com/x"),
        partitions=frozenset({"gpu", "gpu-long"}),
        name_pattern="train_*",
        min_run_seconds=600,
        pending_minutes=120,
    )


def test_minimal_rule_defaults_to_the_own_address() -> None:
    rule = parse(email_rule())
    assert rule.destination == Destination(DestinationKind.EMAIL, "default")
    assert (rule.partitions, rule.name_pattern, rule.min_run_seconds) == (frozenset(), None, None)


def test_id_from_data_when_none_is_given() -> None:
    rule = parse_rule(
        {**email_rule(), "id": "abc-1"}, "alice", False, own_address=OWN, url_policy=URLS
    )
    assert rule.id == "abc-1"


@given(
    events=st.sets(st.sampled_from(sorted(set(NotifyEvent) - ALERT_EVENTS)), min_size=1),
    partitions=st.sets(st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True), max_size=4),
    pattern=st.none() | st.from_regex(r"[a-z*?_]{1,20}", fullmatch=True),
    min_run=st.none() | st.integers(min_value=0, max_value=86400),
    pending=st.integers(min_value=1, max_value=1000),
)
def test_data_round_trips_through_parse(
    events: set[NotifyEvent],
    partitions: set[str],
    pattern: str | None,
    min_run: int | None,
    pending: int,
) -> None:
    rule = Rule(
        id="r1",
        owner="alice",
        events=frozenset(events),
        destination=Destination(DestinationKind.SLACK),
        partitions=frozenset(partitions),
        name_pattern=pattern,
        min_run_seconds=min_run,
        pending_minutes=pending if NotifyEvent.JOB_PENDING_LONG in events else None,
    )
    assert parse_rule(rule.data(), "alice", False, own_address=OWN, url_policy=URLS) == rule


def test_owner_in_data_is_ignored() -> None:
    rule = parse({**email_rule(), "owner": "mallory"})
    assert rule.owner == "alice"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**email_rule(), "colour": "red"}, "colour"),
        ({**email_rule(), "events": []}, "events"),
        ({**email_rule(), "events": "job_failed"}, "events"),
        ({**email_rule(), "events": ["job_exploded"]}, "events"),
        ({**email_rule(), "events": [1]}, "events"),
        ({**email_rule(), "partitions": "gpu"}, "partitions"),
        ({**email_rule(), "partitions": ["gpu", "bad name"]}, "partitions"),
        ({**email_rule(), "partitions": [3]}, "partitions"),
        ({**email_rule(), "partitions": [f"p{i}" for i in range(33)]}, "partitions"),
        ({**email_rule(), "name_pattern": ""}, "name_pattern"),
        ({**email_rule(), "name_pattern": "x" * (MAX_PATTERN_LENGTH + 1)}, "name_pattern"),
        ({**email_rule(), "name_pattern": "a\nb"}, "name_pattern"),
        ({**email_rule(), "name_pattern": 5}, "name_pattern"),
        ({**email_rule(), "min_run_seconds": -1}, "min_run_seconds"),
        ({**email_rule(), "min_run_seconds": True}, "min_run_seconds"),
        ({**email_rule(), "min_run_seconds": 1.5}, "min_run_seconds"),
        ({**email_rule(), "min_run_seconds": 10**9}, "min_run_seconds"),
        ({**email_rule(), "pending_minutes": 30}, "pending_minutes"),
        ({**email_rule(), "events": ["job_pending_long"]}, "pending_minutes"),
        (
            {**email_rule(), "events": ["job_pending_long"], "pending_minutes": 0},
            "pending_minutes",
        ),
        ({**email_rule(), "destination": "email"}, "destination"),
        ({**email_rule(), "destination": {"kind": "pager"}}, "destination"),
        ({**email_rule(), "destination": {"kind": "email", "to": "x"}}, "destination"),
        ({"events": ["job_failed"]}, "destination"),
        ({**email_rule(), "destination": {"kind": "email", "target": "nope"}}, "target"),
        (
            {**email_rule(), "destination": {"kind": "webhook", "target": "https://"}},
            "url",
        ),
    ],
)
def test_invalid_rules_name_their_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRule) as caught:
        parse(data)
    assert caught.value.code is ErrorCode.INVALID_FIELD
    assert caught.value.field == field


@pytest.mark.parametrize("rule_id", ["", "a b", "x" * 65, "../r"])
def test_invalid_ids(rule_id: str) -> None:
    with pytest.raises(InvalidRule) as caught:
        parse_rule(email_rule(), "alice", False, own_address=OWN, url_policy=URLS, rule_id=rule_id)
    assert caught.value.field == "id"


def test_missing_id() -> None:
    with pytest.raises(InvalidRule):
        parse_rule(email_rule(), "alice", False, own_address=OWN, url_policy=URLS)


def test_invalid_owner() -> None:
    with pytest.raises(InvalidRule):
        parse(email_rule(), owner="not a user")


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidRule):
        parse_rule(
            ["events"],  # type: ignore[arg-type]
            "alice",
            False,
            own_address=OWN,
            url_policy=URLS,
            rule_id="r1",
        )


@pytest.mark.parametrize("event", sorted(ALERT_EVENTS))
def test_only_admins_hear_of_alerts(event: str) -> None:
    data = email_rule(events=["job_failed", event])
    with pytest.raises(ForbiddenDestination) as caught:
        parse(data)
    assert caught.value.code is ErrorCode.FORBIDDEN
    assert NotifyEvent(event) in parse(data, admin=True).events


def test_a_user_cannot_mail_someone_else() -> None:
    data = email_rule(destination={"kind": "email", "target": "bob@example.edu"})
    with pytest.raises(ForbiddenDestination):
        parse(data)
    assert parse(data, admin=True).destination.target == "bob@example.edu"
    own = email_rule(destination={"kind": "email", "target": OWN})
    assert parse(own).destination.target == OWN


@pytest.mark.parametrize("kind", ["slack", "webhook"])
def test_webhook_urls_pass_the_ssrf_policy(kind: str) -> None:
    for url in ("https://169.254.169.254/latest", "http://hooks.example.com/x"):
        with pytest.raises(UnsafeDestination):
            parse(email_rule(destination={"kind": kind, "target": url}), admin=True)
    allowed = parse_rule(
        email_rule(destination={"kind": kind, "target": "http://chat.example.com/hooks/1"}),
        "alice",
        False,
        own_address=OWN,
        url_policy=UrlPolicy(allow_http=True),
        rule_id="r1",
    )
    assert allowed.destination.target == "http://chat.example.com/hooks/1"


@pytest.mark.parametrize("kind", ["slack", "webhook"])
def test_default_chat_destination_is_the_operators_sink(kind: str) -> None:
    rule = parse(email_rule(destination={"kind": kind, "target": "default"}))
    assert rule.destination == Destination(DestinationKind(kind), "default")


# --- classification


@pytest.mark.parametrize(
    ("status", "previous", "event"),
    [
        ("RUNNING", "PENDING", NotifyEvent.JOB_STARTED),
        ("RUNNING", "CONFIGURING", NotifyEvent.JOB_STARTED),
        ("CONFIGURING", "PENDING", None),
        ("RUNNING", "SUSPENDED", None),
        ("RUNNING", None, None),
        ("SUSPENDED", "RUNNING", None),
        ("COMPLETING", "RUNNING", None),
        ("PENDING", "PENDING", None),
        ("COMPLETED", "RUNNING", NotifyEvent.JOB_COMPLETED),
        ("COMPLETED", "COMPLETING", NotifyEvent.JOB_COMPLETED),
        ("FAILED", "RUNNING", NotifyEvent.JOB_FAILED),
        ("NODE_FAIL", "RUNNING", NotifyEvent.JOB_FAILED),
        ("BOOT_FAIL", "CONFIGURING", NotifyEvent.JOB_FAILED),
        ("SPECIAL_EXIT", "RUNNING", NotifyEvent.JOB_FAILED),
        ("TIMEOUT", "RUNNING", NotifyEvent.JOB_TIMEOUT),
        ("DEADLINE", "PENDING", NotifyEvent.JOB_TIMEOUT),
        ("OUT_OF_MEMORY", "RUNNING", NotifyEvent.JOB_OUT_OF_MEMORY),
        ("CANCELLED", "PENDING", NotifyEvent.JOB_CANCELLED),
        ("CANCELLED", "RUNNING", NotifyEvent.JOB_CANCELLED),
        ("PREEMPTED", "RUNNING", NotifyEvent.JOB_CANCELLED),
        ("REVOKED", "PENDING", None),
        ("REQUEUED", "RUNNING", None),
        ("SOMETHING_NEW", "RUNNING", None),
        ("failed", "running", NotifyEvent.JOB_FAILED),
    ],
)
def test_classify(status: str, previous: str | None, event: NotifyEvent | None) -> None:
    assert classify({"status": status, "previous_status": previous}) is event


def test_classify_every_terminal_state() -> None:
    from slurmcast.core.records import TERMINAL_JOB_STATES, JobState

    named = {
        state: classify({"status": state.value, "previous_status": "RUNNING"})
        for state in TERMINAL_JOB_STATES
    }
    assert {state for state, event in named.items() if event is None} == {JobState.REVOKED}


def test_unconfirmed_final_state_is_nothing() -> None:
    data = {"status": "COMPLETED", "previous_status": "RUNNING", "final_state_confirmed": False}
    assert classify(data) is None
    assert classify({**data, "final_state_confirmed": True}) is NotifyEvent.JOB_COMPLETED


@pytest.mark.parametrize("data", [{}, {"status": None}, {"status": 3}])
def test_classify_without_a_status(data: dict[str, Any]) -> None:
    assert classify(data) is None


@pytest.mark.parametrize(
    ("fields", "minutes", "expected"),
    [
        (
            {"status": "PENDING", "submit_time": "2026-11-28T05:00:00Z", "start_time": None},
            60,
            True,
        ),
        (
            {"status": "PENDING", "submit_time": "2026-11-28T05:00:01Z", "start_time": None},
            60,
            False,
        ),
        (
            {"status": "RUNNING", "submit_time": "2026-11-28T01:00:00Z", "start_time": None},
            60,
            False,
        ),
        ({"status": "PENDING", "submit_time": None, "start_time": None}, 1, False),
        ({"status": "PENDING", "submit_time": "garbage", "start_time": None}, 1, False),
    ],
)
def test_pending_too_long(fields: dict[str, Any], minutes: int, expected: bool) -> None:
    assert pending_too_long(job(**fields), minutes, NOW) is expected


# --- matching


def rule(**fields: Any) -> Rule:
    base: dict[str, Any] = {
        "id": "r1",
        "owner": "alice",
        "events": frozenset({NotifyEvent.JOB_FAILED}),
        "destination": Destination(DestinationKind.EMAIL),
    }
    base.update(fields)
    return Rule(**base)


def test_matches_the_owners_job_on_a_wanted_event() -> None:
    assert matches(rule(), NotifyEvent.JOB_FAILED, job(), NOW)


def test_other_events_do_not_match() -> None:
    assert not matches(rule(), NotifyEvent.JOB_COMPLETED, job(status="COMPLETED"), NOW)


def test_never_someone_elses_job() -> None:
    assert not matches(rule(), NotifyEvent.JOB_FAILED, job(user="bob"), NOW)
    assert not matches(rule(), NotifyEvent.JOB_FAILED, job(user=None), NOW)
    assert not matches(rule(), NotifyEvent.JOB_FAILED, None, NOW)


@pytest.mark.parametrize(
    ("partitions", "job_partition", "expected"),
    [
        ({"gpu"}, "gpu", True),
        ({"gpu"}, "cpu", False),
        ({"gpu", "cpu"}, "cpu", True),
        ({"gpu"}, "cpu,gpu", True),  # a pending job submitted to several
        ({"gpu"}, None, False),
        (set(), None, True),
    ],
)
def test_partition_filter(partitions: set[str], job_partition: str | None, expected: bool) -> None:
    assert (
        matches(
            rule(partitions=frozenset(partitions)),
            NotifyEvent.JOB_FAILED,
            job(partition=job_partition),
            NOW,
        )
        is expected
    )


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("train_*", "train_bert", True),
        ("train_*", "Train_bert", False),  # case-sensitive
        ("*bert", "train_bert", True),
        ("train_?ert", "train_bert", True),
        ("[ab]*", "bert", True),
        ("eval*", "train_bert", False),
        ("*", None, True),
        ("x*", None, False),
    ],
)
def test_name_pattern(pattern: str, name: str | None, expected: bool) -> None:
    assert (
        matches(rule(name_pattern=pattern), NotifyEvent.JOB_FAILED, job(name=name), NOW) is expected
    )


@pytest.mark.parametrize(
    ("min_run", "start", "end", "expected"),
    [
        (3600, "2026-11-28T03:00:00Z", "2026-11-28T04:00:00Z", True),  # exactly the minimum
        (3600, "2026-11-28T03:00:01Z", "2026-11-28T04:00:00Z", False),
        (60, None, "2026-11-28T04:00:00Z", False),  # never ran
        (0, None, None, True),
        (None, None, None, True),
    ],
)
def test_min_run_time_on_a_jobs_end(
    min_run: int | None, start: str | None, end: str | None, expected: bool
) -> None:
    got = matches(
        rule(min_run_seconds=min_run),
        NotifyEvent.JOB_FAILED,
        job(start_time=start, end_time=end),
        NOW,
    )
    assert got is expected


def test_min_run_time_does_not_apply_to_a_start() -> None:
    started = rule(events=frozenset({NotifyEvent.JOB_STARTED}), min_run_seconds=3600)
    running = job(status="RUNNING", previous_status="PENDING", end_time=None)
    assert matches(started, NotifyEvent.JOB_STARTED, running, NOW)


def test_pending_long_needs_the_wait() -> None:
    waiting = rule(events=frozenset({NotifyEvent.JOB_PENDING_LONG}), pending_minutes=30)
    submitted = NOW - timedelta(minutes=45)
    pending = job(status="PENDING", submit_time=submitted.isoformat(), start_time=None)
    assert matches(waiting, NotifyEvent.JOB_PENDING_LONG, pending, NOW)
    assert not matches(waiting, NotifyEvent.JOB_PENDING_LONG, pending, submitted)
    assert not matches(
        rule(events=frozenset({NotifyEvent.JOB_PENDING_LONG})),
        NotifyEvent.JOB_PENDING_LONG,
        pending,
        NOW,
    )


def test_alert_rules_ignore_job_filters() -> None:
    alerts = rule(events=frozenset(ALERT_EVENTS), partitions=frozenset({"gpu"}), name_pattern="x*")
    assert matches(alerts, NotifyEvent.ALERT_FIRING, None, NOW)
    assert matches(alerts, NotifyEvent.ALERT_RESOLVED, None, NOW)
    assert not matches(rule(), NotifyEvent.ALERT_FIRING, None, NOW)
