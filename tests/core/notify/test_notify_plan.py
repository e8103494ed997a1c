"""Planning deliveries: which rules want which job events and alerts, which notification the
deliveries hang on, one delivery per destination, and idempotency keys that do not change
when the same thing is planned again."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from slurmcast.core.alerts import Alert, AlertBook, AlertSeverity, AlertStatus
from slurmcast.core.events import JobStateChanged, JobSubmitted, NodeStateChanged, job_payload
from slurmcast.core.notifications import (
    Notification,
    NotificationType,
    Severity,
    notifications_for,
)
from slurmcast.core.notify.plan import (
    PENDING_ID_PREFIX,
    DeliverySpec,
    Planned,
    idempotency_key,
    plan_events,
    plan_pending,
)
from slurmcast.core.notify.rules import FINAL_EVENTS, NotifyEvent, Rule
from slurmcast.core.records import JobState, NodeState
from slurmcast.core.timefmt import iso_z

from support.builders import T0, finished, job, node
from support.notify_rules import Ids, make_rule

NOW = T0 + timedelta(hours=4)
ENDS = sorted(event.value for event in FINAL_EVENTS)
HEX64 = re.compile(r"[0-9a-f]{64}")
SLACK = {"kind": "slack"}
HOOK = {"kind": "webhook", "target": "https://hooks.example.com/a"}
OTHER_HOOK = {"kind": "webhook", "target": "https://hooks.example.com/b"}


def step(*changes: JobStateChanged | JobSubmitted, poller: Ids | None = None) -> list[object]:
    """A poller step's events: the job changes and the notifications the poller made of them."""
    ids = poller if poller is not None else Ids("poll-")
    return [*changes, *notifications_for(changes, NOW, ids)]


def plan(
    rules: Sequence[Rule], events: Sequence[object], ids: Ids | None = None, now: Any = NOW
) -> list[Planned]:
    return plan_events(rules, events, now, ids if ids is not None else Ids())


def ended(job_id: str = "9", state: JobState = JobState.FAILED, **fields: Any) -> JobStateChanged:
    return JobStateChanged(finished(job_id, state, **fields), JobState.RUNNING)


def started(
    job_id: str = "9", previous: JobState = JobState.PENDING, **fields: Any
) -> JobStateChanged:
    record = job(job_id, JobState.RUNNING, start_time=T0 + timedelta(minutes=10), **fields)
    return JobStateChanged(record, previous)


def keys(planned: Sequence[Planned]) -> list[str]:
    return [d.idempotency_key for p in planned for d in p.deliveries]


def only(planned: Sequence[Planned]) -> tuple[Planned, DeliverySpec]:
    (one,) = planned
    (delivery,) = one.deliveries
    return one, delivery


# --- a job's end


def test_a_job_end_hangs_its_deliveries_on_the_pollers_notification() -> None:
    change = ended("9", JobState.FAILED, exit_code=3)
    events = step(change)
    poller_note = events[1]
    assert isinstance(poller_note, Notification)
    ids = Ids()
    one, delivery = only(plan([make_rule("r1", "job_failed")], events, ids))
    assert one.notification is poller_note and one.new is False
    assert ids.issued == []  # no notification of its own
    assert delivery.owner == "alice" and delivery.rule_id == "r1"
    assert (delivery.kind, delivery.target) == ("email", "default")
    assert delivery.payload == {
        "event": "job_failed",
        "data": change.data(),
        "at": iso_z(NOW, millis=True),
    }
    assert HEX64.fullmatch(delivery.idempotency_key)


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (JobState.COMPLETED, NotifyEvent.JOB_COMPLETED),
        (JobState.FAILED, NotifyEvent.JOB_FAILED),
        (JobState.NODE_FAIL, NotifyEvent.JOB_FAILED),
        (JobState.BOOT_FAIL, NotifyEvent.JOB_FAILED),
        (JobState.SPECIAL_EXIT, NotifyEvent.JOB_FAILED),
        (JobState.TIMEOUT, NotifyEvent.JOB_TIMEOUT),
        (JobState.DEADLINE, NotifyEvent.JOB_TIMEOUT),
        (JobState.OUT_OF_MEMORY, NotifyEvent.JOB_OUT_OF_MEMORY),
        (JobState.CANCELLED, NotifyEvent.JOB_CANCELLED),
        (JobState.PREEMPTED, NotifyEvent.JOB_CANCELLED),
    ],
)
def test_each_final_state_is_its_event(state: JobState, event: NotifyEvent) -> None:
    everything = make_rule("all", *ENDS)
    _, delivery = only(plan([everything], step(ended("9", state))))
    assert delivery.payload["event"] == event.value
    # A rule for every other end says nothing of this one.
    others = [e for e in ENDS if e != event.value]
    assert plan([make_rule("others", *others)], step(ended("9", state))) == []


def test_a_revoked_job_is_no_end_rules_hear_of() -> None:
    events = step(ended("9", JobState.REVOKED))
    assert any(isinstance(e, Notification) for e in events)  # the poller still tells
    assert plan([make_rule("all", *ENDS)], events) == []


def test_an_end_the_poller_made_no_notification_of_plans_nothing() -> None:
    ids = Ids()
    assert plan([make_rule("r1", "job_failed")], [ended("9")], ids) == []
    assert ids.issued == []


def test_an_unconfirmed_final_state_plans_nothing() -> None:
    guess = JobStateChanged(finished("9", JobState.COMPLETED), JobState.RUNNING, confirmed=False)
    rule = make_rule("r1", "job_completed")
    assert plan([rule], step(guess)) == []
    # Not even with a notification of that job at hand (from another source of events).
    confirmed_note = notifications_for([ended("9", JobState.COMPLETED)], NOW, Ids("x"))
    assert plan([rule], [guess, *confirmed_note]) == []


def test_the_deliveries_go_on_the_end_notification_not_the_submission() -> None:
    submitted = JobSubmitted(job("9"))
    done = JobStateChanged(finished("9", JobState.COMPLETED), JobState.PENDING)
    events = step(submitted, done)
    one, _ = only(plan([make_rule("r1", "job_completed")], events))
    assert one.notification.type is NotificationType.JOB_COMPLETED and not one.new
    # Without the end's notification, the submission's is not a place to hang them.
    submission_only = [
        e for e in events if not isinstance(e, Notification) or e.type == "job_submitted"
    ]
    assert len(submission_only) == 3
    assert plan([make_rule("r1", "job_completed")], submission_only) == []


def test_each_ending_job_gets_its_own_notification() -> None:
    events = step(ended("9", JobState.FAILED), ended("10", JobState.COMPLETED))
    planned = plan([make_rule("r1", *ENDS)], events)
    by_job = {p.notification.details["job_id"]: p for p in planned}
    assert set(by_job) == {"9", "10"}
    assert by_job["9"].deliveries[0].payload["event"] == "job_failed"
    assert by_job["10"].deliveries[0].payload["event"] == "job_completed"
    assert by_job["9"].notification is not by_job["10"].notification


# --- a job's start


@pytest.mark.parametrize("previous", [JobState.PENDING, JobState.CONFIGURING])
def test_a_job_start_makes_a_new_notification(previous: JobState) -> None:
    change = started("9", previous, nodes=("node001", "node002"), name="train")
    ids = Ids()
    one, delivery = only(plan([make_rule("r1", "job_started", destination=SLACK)], [change], ids))
    note = one.notification
    assert one.new is True and ids.issued == [note.id]
    assert note.type is NotificationType.JOB_STARTED and note.severity is Severity.INFO
    assert note.user == "alice" and note.created_at == NOW
    assert note.title == "Job Started"
    assert note.message == "Job #9 (train) started on node001, node002"
    assert note.details == {
        "job_id": "9",
        "name": "train",
        "user": "alice",
        "partition": "cpu",
        "status": "RUNNING",
        "nodes": ["node001", "node002"],
        "submit_time": iso_z(T0),
    }
    assert delivery.payload["event"] == "job_started"
    assert (delivery.kind, delivery.target) == ("slack", "default")


def test_a_start_without_known_nodes_says_its_nodes() -> None:
    one, _ = only(plan([make_rule("r1", "job_started")], [started("9")]))
    assert one.notification.message == "Job #9 (job9) started on its nodes"


def test_a_start_notification_cleans_what_users_wrote() -> None:
    change = started("9", name="evil\r\nBcc: x@y.z")
    one, _ = only(plan([make_rule("r1", "job_started")], [change]))
    assert "\r" not in one.notification.message and "\n" not in one.notification.message
    assert "evil Bcc: x@y.z" in one.notification.message


@pytest.mark.parametrize(
    ("status", "previous"),
    [
        (JobState.CONFIGURING, JobState.PENDING),  # booting nodes: not started yet
        (JobState.RUNNING, JobState.SUSPENDED),  # resumed, not started
        (JobState.RUNNING, JobState.RUNNING),  # no change at all
        (JobState.COMPLETING, JobState.RUNNING),  # not an end yet
    ],
)
def test_steps_that_are_no_start_plan_nothing(status: JobState, previous: JobState) -> None:
    change = JobStateChanged(job("9", status), previous)
    ids = Ids()
    assert plan([make_rule("r1", "job_started", *ENDS)], [change], ids) == []
    assert ids.issued == []


def test_no_notification_is_made_when_no_rule_wants_the_start() -> None:
    ids = Ids()
    assert plan([make_rule("r1", *ENDS)], [started("9")], ids) == []
    assert plan([make_rule("r1", "job_started", owner="bob")], [started("9")], ids) == []
    assert ids.issued == []


# --- whose jobs, which jobs


def test_other_users_jobs_never_match() -> None:
    events = step(ended("9", JobState.FAILED), started("10"))
    bobs = make_rule("b1", "job_failed", "job_started", owner="bob")
    # An admin's rule is about the admin's own jobs, too.
    roots = make_rule("root1", "job_failed", "job_started", owner="root", admin=True)
    assert plan([bobs, roots], events) == []
    # Bob's job does reach bob's rule only.
    planned = plan([bobs, roots], step(ended("11", JobState.FAILED, user="bob")))
    assert [d.owner for p in planned for d in p.deliveries] == ["bob"]


@pytest.mark.parametrize(
    ("partition", "wanted", "matches"),
    [
        ("gpu", ["gpu"], True),
        ("cpu", ["gpu"], False),
        ("cpu", ["gpu", "cpu"], True),
        ("gpu,cpu", ["cpu"], True),  # a pending job submitted to several partitions
        ("gpu-long", ["gpu"], False),
    ],
)
def test_partition_filter(partition: str, wanted: list[str], matches: bool) -> None:
    rule = make_rule("r1", "job_failed", partitions=wanted)
    planned = plan([rule], step(ended("9", JobState.FAILED, partition=partition)))
    assert bool(planned) is matches


@pytest.mark.parametrize(
    ("name", "matches"),
    [("train_bert", True), ("train_", True), ("eval_bert", False), ("Train_bert", False)],
)
def test_name_pattern_filter(name: str, matches: bool) -> None:
    rule = make_rule("r1", "job_failed", name_pattern="train_*")
    planned = plan([rule], step(ended("9", JobState.FAILED, name=name)))
    assert bool(planned) is matches


@pytest.mark.parametrize(("minutes", "matches"), [(150, True), (60, True), (59, False)])
def test_min_run_filter_on_ends(minutes: float, matches: bool) -> None:
    rule = make_rule("r1", "job_failed", min_run_seconds=3600)
    planned = plan([rule], step(ended("9", JobState.FAILED, minutes=minutes)))
    assert bool(planned) is matches


def test_min_run_counts_a_job_that_never_ran_as_zero_and_skips_starts() -> None:
    rule = make_rule("r1", "job_cancelled", "job_started", min_run_seconds=60)
    never_ran = JobStateChanged(job("9", JobState.CANCELLED), JobState.PENDING)
    assert plan([rule], step(never_ran)) == []
    # A start has no run time yet: the filter is about ends only.
    assert len(plan([rule], [started("10")])) == 1


# --- one delivery per destination


def test_rules_naming_one_place_send_one_message() -> None:
    first = make_rule("r1", "job_failed")
    second = make_rule("r2", *ENDS)
    _, delivery = only(plan([first, second], step(ended())))
    assert delivery.rule_id == "r1"
    hooks = [make_rule("h1", "job_failed", destination=HOOK)] * 2
    assert len(plan(hooks, step(ended()))[0].deliveries) == 1


def test_distinct_destinations_share_one_notification() -> None:
    rules = [
        make_rule("mail", "job_failed"),
        make_rule("chat", "job_failed", destination=SLACK),
        make_rule("hook-a", "job_failed", destination=HOOK),
        make_rule("hook-b", "job_failed", destination=OTHER_HOOK),
    ]
    (one,) = plan(rules, step(ended()))
    assert [(d.kind, d.target, d.rule_id) for d in one.deliveries] == [
        ("email", "default", "mail"),
        ("slack", "default", "chat"),
        ("webhook", HOOK["target"], "hook-a"),
        ("webhook", OTHER_HOOK["target"], "hook-b"),
    ]
    assert len(set(keys([one]))) == 4


def test_planning_nothing_without_rules_asks_for_no_id() -> None:
    ids = Ids()
    assert plan_events([], step(ended(), started("10")), NOW, ids) == []
    assert ids.issued == []


def test_events_that_are_not_job_changes_or_alerts_are_ignored() -> None:
    events: list[object] = [
        JobSubmitted(job("9")),
        NodeStateChanged(node("node001", NodeState.DOWN), NodeState.IDLE),
        *notifications_for([JobSubmitted(job("9"))], NOW, Ids("p")),
    ]
    everything = make_rule("r1", *(e.value for e in NotifyEvent if e != "job_pending_long"))
    assert plan([everything], events) == []


# --- idempotency keys


def test_the_same_transition_planned_again_has_the_same_keys() -> None:
    rules = [make_rule("r1", *ENDS, "job_started"), make_rule("r2", *ENDS, destination=HOOK)]
    change, start = ended("9"), started("10")
    first = plan(rules, step(change, start, poller=Ids("a-")), Ids("x"))
    # Another poller, after a failover: other notification ids, a later time.
    again = plan(
        rules, step(change, start, poller=Ids("b-")), Ids("y"), now=NOW + timedelta(minutes=5)
    )
    assert keys(first) == keys(again)
    assert len(set(keys(first))) == 3
    assert [p.notification.id for p in first] != [p.notification.id for p in again]


def test_keys_name_the_rule_the_target_the_job_and_its_submission() -> None:
    base = keys(plan([make_rule("r1", "job_failed", destination=HOOK)], step(ended("9"))))
    variants = [
        keys(plan([make_rule("r2", "job_failed", destination=HOOK)], step(ended("9")))),
        keys(plan([make_rule("r1", "job_failed", destination=OTHER_HOOK)], step(ended("9")))),
        keys(plan([make_rule("r1", "job_failed", destination=HOOK)], step(ended("10")))),
        # slurmctld's job ids restart: the same id, submitted another time, is another job.
        keys(
            plan(
                [make_rule("r1", "job_failed", destination=HOOK)],
                step(ended("9", submit_time=T0 - timedelta(days=30))),
            )
        ),
    ]
    everything = [base[0]] + [v[0] for v in variants]
    assert len(set(everything)) == len(everything) == 5


def test_a_start_and_an_end_of_one_job_have_different_keys() -> None:
    rule = make_rule("r1", "job_started", "job_completed")
    start = keys(plan([rule], [started("9")]))
    end = keys(
        plan([rule], step(JobStateChanged(finished("9", JobState.COMPLETED), JobState.RUNNING)))
    )
    assert len(start) == len(end) == 1 and start != end


def test_idempotency_key_is_a_digest_of_its_parts() -> None:
    assert idempotency_key("a", "b") == idempotency_key("a", "b")
    assert HEX64.fullmatch(idempotency_key("a", "b"))
    # Parts are separated: ("ab", "") is not ("a", "b").
    assert idempotency_key("ab", "") != idempotency_key("a", "b")


# --- alerts


def alert(
    status: AlertStatus = AlertStatus.FIRING,
    severity: AlertSeverity = AlertSeverity.CRITICAL,
    message: str = "Node node001 is DOWN",
    since: Any = T0,
) -> Alert:
    return Alert(
        id="node_unavailable:node001",
        rule="node_unavailable",
        severity=severity,
        status=status,
        message=message,
        details={"node": "node001"},
        at=NOW,
        since=since,
    )


ALERTS = ("alert_firing", "alert_resolved")


def test_an_alert_makes_one_notification_per_admin() -> None:
    rules = [
        make_rule("root-mail", *ALERTS, owner="root"),
        make_rule("root-chat", "alert_firing", owner="root", destination=SLACK),
        make_rule("root-mail-2", "alert_firing", owner="root"),  # the same mailbox again
        make_rule("ops-hook", "alert_firing", owner="ops", destination=HOOK),
    ]
    ids = Ids()
    firing = alert()
    planned = plan(rules, [firing], ids)
    by_owner = {p.notification.user: p for p in planned}
    assert set(by_owner) == {"root", "ops"} and all(p.new for p in planned)
    assert sorted(p.notification.id for p in planned) == sorted(ids.issued)
    root = by_owner["root"]
    assert [(d.kind, d.rule_id) for d in root.deliveries] == [
        ("email", "root-mail"),
        ("slack", "root-chat"),
    ]
    note = root.notification
    assert note.type is NotificationType.ALERT and note.severity is Severity.CRITICAL
    assert note.title == "Alert Firing: node_unavailable"
    assert note.message == "Node node001 is DOWN"
    assert note.details == {"alert": firing.data()} and note.created_at == NOW
    for delivery in root.deliveries:
        assert delivery.owner == "root"
        assert delivery.payload == {
            "event": "alert_firing",
            "data": firing.data(),
            "at": iso_z(NOW, millis=True),
        }


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (AlertSeverity.INFO, Severity.INFO),
        (AlertSeverity.WARNING, Severity.WARNING),
        (AlertSeverity.CRITICAL, Severity.CRITICAL),
    ],
)
def test_a_firing_alerts_severity(severity: AlertSeverity, expected: Severity) -> None:
    one, _ = only(plan([make_rule("r1", *ALERTS, owner="root")], [alert(severity=severity)]))
    assert one.notification.severity is expected


def test_a_resolved_alert_is_its_own_event() -> None:
    rule = make_rule("r1", *ALERTS, owner="root")
    resolved = alert(AlertStatus.RESOLVED, message="Node node001 is IDLE again")
    one, delivery = only(plan([rule], [resolved]))
    assert one.notification.title == "Alert Resolved: node_unavailable"
    assert one.notification.severity is Severity.SUCCESS
    assert delivery.payload["event"] == "alert_resolved"
    # Firing and resolved of one condition are two messages.
    assert keys(plan([rule], [alert()])) != [delivery.idempotency_key]
    # A rule for firing alerts only does not hear of the resolution.
    assert plan([make_rule("r2", "alert_firing", owner="root")], [resolved]) == []


def test_job_filters_do_not_apply_to_alerts() -> None:
    rule = make_rule("r1", "alert_firing", owner="root", partitions=["gpu"], name_pattern="x*")
    assert len(plan([rule], [alert()])) == 1


def test_an_alert_planned_again_has_the_same_keys() -> None:
    rules = [make_rule("r1", "alert_firing", owner="root")]
    assert keys(plan(rules, [alert()], Ids("a"))) == keys(plan(rules, [alert()], Ids("b")))
    # The same condition firing again later (a new ``since``) is another message.
    later = alert(since=T0 + timedelta(hours=1))
    assert keys(plan(rules, [later])) != keys(plan(rules, [alert()]))


def test_an_alert_notification_cleans_the_message() -> None:
    noisy = alert(message="Node node001 is DOWN (reason\r\nX-Injected: yes)")
    one, _ = only(plan([make_rule("r1", "alert_firing", owner="root")], [noisy]))
    assert one.notification.message == "Node node001 is DOWN (reason X-Injected: yes)"


def test_job_rules_do_not_hear_of_alerts() -> None:
    assert plan([make_rule("r1", *ENDS, "job_started", owner="root")], [alert()]) == []


def test_an_escalated_alert_is_told_again() -> None:
    # AlertBook fires again when a condition's severity changes (a draining node goes down).
    book = AlertBook()
    draining = book.set(
        "node_unavailable:node001",
        "node_unavailable",
        AlertSeverity.WARNING,
        "Node node001 is DRAINING",
        {},
        T0,
    )
    down = book.set(
        "node_unavailable:node001",
        "node_unavailable",
        AlertSeverity.CRITICAL,
        "Node node001 is DOWN",
        {},
        T0 + timedelta(minutes=5),
    )
    assert len(draining) == len(down) == 1
    rules = [make_rule("r1", "alert_firing", owner="root")]
    first = keys(plan(rules, draining))
    second = keys(plan(rules, down, now=T0 + timedelta(minutes=5)))
    assert len(first) == len(second) == 1
    assert first != second


# --- jobs pending too long


def pending_job(job_id: str = "5", **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"submit_time": NOW - timedelta(hours=3)}
    values.update(fields)
    return job_payload(job(job_id, JobState.PENDING, **values))


def waiting_rule(rule_id: str = "w1", minutes: int = 120, **fields: Any) -> Rule:
    return make_rule(rule_id, "job_pending_long", pending_minutes=minutes, **fields)


def test_a_job_pending_too_long_is_told_once_per_rule() -> None:
    told: set[tuple[str, str]] = set()
    payload = pending_job("5", name="big")
    one, delivery = only(plan_pending([waiting_rule()], [payload], NOW, told))
    assert told == {("5", "w1")}
    note = one.notification
    assert one.new is True
    assert re.fullmatch(re.escape(PENDING_ID_PREFIX) + "[0-9a-f]{24}", note.id)
    assert note.type is NotificationType.JOB_PENDING and note.severity is Severity.WARNING
    assert note.title == "Job Still Pending" and note.user == "alice"
    assert note.message == "Job #5 (big) has been pending for 3h"
    assert note.details["job_id"] == "5" and note.details["status"] == "PENDING"
    assert delivery.payload == {
        "event": "job_pending_long",
        "data": payload,
        "at": iso_z(NOW, millis=True),
    }
    # Told: the next poll says nothing, even later.
    assert plan_pending([waiting_rule()], [payload], NOW + timedelta(hours=1), told) == []
    assert told == {("5", "w1")}


def test_a_pending_notification_is_the_same_after_a_restart() -> None:
    rules = [waiting_rule()]
    first = plan_pending(rules, [pending_job()], NOW, set())
    again = plan_pending(rules, [pending_job()], NOW + timedelta(minutes=7), set())
    assert [p.notification.id for p in first] == [p.notification.id for p in again]
    assert keys(first) == keys(again)
    # Another submission of the same job id is another notification, another key.
    other = plan_pending(rules, [pending_job(submit_time=NOW - timedelta(hours=5))], NOW, set())
    assert other[0].notification.id != first[0].notification.id
    assert keys(other) != keys(first)


def test_each_waiting_rule_tells_of_a_job_on_its_own() -> None:
    told: set[tuple[str, str]] = set()
    rules = [waiting_rule("w1", 60), waiting_rule("w2", 120, destination=SLACK)]
    planned = plan_pending(rules, [pending_job()], NOW, told)
    assert len(planned) == 2 and told == {("5", "w1"), ("5", "w2")}
    assert len({p.notification.id for p in planned}) == 2
    assert [p.deliveries[0].rule_id for p in planned] == ["w1", "w2"]


def test_a_job_not_pending_long_enough_waits_untold() -> None:
    told: set[tuple[str, str]] = set()
    assert plan_pending([waiting_rule(minutes=181)], [pending_job()], NOW, told) == []
    assert told == set()
    # The minute it is long enough, it is told.
    assert len(plan_pending([waiting_rule(minutes=180)], [pending_job()], NOW, told)) == 1


def test_pending_rules_match_only_pending_jobs_of_their_owner() -> None:
    told: set[tuple[str, str]] = set()
    running = job_payload(
        job("6", JobState.RUNNING, submit_time=NOW - timedelta(hours=3), start_time=NOW)
    )
    bobs = job_payload(job("7", JobState.PENDING, user="bob", submit_time=NOW - timedelta(hours=3)))
    unknown_id = {**pending_job("8"), "job_id": None}
    assert plan_pending([waiting_rule()], [running, bobs, unknown_id], NOW, told) == []
    assert told == set()


def test_pending_rules_apply_the_job_filters() -> None:
    rule = waiting_rule(partitions=["gpu"], name_pattern="train*")
    jobs = [
        pending_job("1", partition="cpu", name="train"),
        pending_job("2", partition="cpu,gpu", name="train"),
        pending_job("3", partition="gpu", name="eval"),
    ]
    planned = plan_pending([rule], jobs, NOW, set())
    assert [p.notification.details["job_id"] for p in planned] == ["2"]


def test_rules_without_pending_events_plan_no_pending_notification() -> None:
    told: set[tuple[str, str]] = set()
    assert plan_pending([make_rule("r1", *ENDS, "job_started")], [pending_job()], NOW, told) == []
    assert told == set()


def test_a_pending_notification_is_not_planned_from_job_events() -> None:
    # job_pending_long comes from the listing only: a job change never is one.
    change = JobStateChanged(job("5", JobState.PENDING), JobState.REQUEUED)
    assert plan([waiting_rule(minutes=1)], [change]) == []
