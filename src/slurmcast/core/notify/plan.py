"""Which deliveries a poll's events call for, by whose rules, attached to which notification.

The poller hands over the events of one step (job changes, the job notifications made of
them, alerts) and, after a jobs poll, the jobs still pending. For each event some enabled
rule wants, the plan names the notification the deliveries hang on (the job's own
notification when the poller made one, else a new one: a job started, a job pending too
long, an alert for one admin) and one delivery per (rule, destination).

Idempotency keys are derived from what happened, not from random ids: the same transition
planned again (a new poller re-diffing after a failover, a restart) has the same keys, and
the outbox stores a key once, so a person is told once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slurmcast.core.alerts import Alert, AlertStatus
from slurmcast.core.events import JobStateChanged
from slurmcast.core.notifications import Notification, NotificationType, Severity
from slurmcast.core.notify.jobdata import text, waited_seconds
from slurmcast.core.notify.messages import clean
from slurmcast.core.notify.rules import (
    ALERT_EVENTS,
    FINAL_EVENTS,
    NotifyEvent,
    Rule,
    classify,
    matches,
)
from slurmcast.core.timefmt import format_duration, iso_z

#: Ids of the notifications made for a pending job: derived, so a restart makes the same one.
PENDING_ID_PREFIX = "notif-pending-"


@dataclass(frozen=True, slots=True)
class DeliverySpec:
    """One delivery to make of a notification (``storage.outbox.NewDelivery`` without the
    notification's id)."""

    owner: str
    rule_id: str
    kind: str
    target: str
    #: What the worker renders: ``{"event", "data", "at"}``.
    payload: dict[str, Any]
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Planned:
    """A notification and the deliveries to write with it.

    ``new`` is True for a notification the plan made (it is published with the step's
    events); False for one the poller made already.
    """

    notification: Notification
    deliveries: tuple[DeliverySpec, ...]
    new: bool


@dataclass(slots=True)
class _Draft:
    notification: Notification
    new: bool
    deliveries: list[DeliverySpec] = field(default_factory=list)
    targets: set[tuple[str, str]] = field(default_factory=set)

    def add(
        self, rule: Rule, event: NotifyEvent, data: Mapping[str, Any], now: datetime, *parts: str
    ) -> None:
        kind, target = rule.destination.kind.value, rule.destination.target
        # Two rules of one person naming one place send one message.
        if (kind, target) in self.targets:
            return
        self.targets.add((kind, target))
        self.deliveries.append(
            DeliverySpec(
                owner=rule.owner,
                rule_id=rule.id,
                kind=kind,
                target=target,
                payload={"event": event.value, "data": dict(data), "at": iso_z(now, millis=True)},
                idempotency_key=idempotency_key(rule.id, event.value, kind, target, *parts),
            )
        )

    def done(self) -> Planned:
        return Planned(self.notification, tuple(self.deliveries), self.new)


def idempotency_key(*parts: str) -> str:
    """A key naming one thing told to one place; 64 hex digits."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def plan_events(
    rules: Sequence[Rule],
    events: Sequence[object],
    now: datetime,
    new_id: Callable[[], str],
) -> list[Planned]:
    """The deliveries ``events`` call for under ``rules`` (the enabled ones)."""
    if not rules:
        return []
    # The poller's own notification of a job's end: the deliveries hang on it.
    finished = {
        note.details.get("job_id"): note
        for note in events
        if isinstance(note, Notification) and note.type is not NotificationType.JOB_SUBMITTED
    }
    # A job rule only ever matches its owner's jobs: each event is checked against its
    # owner's rules alone (a step of 500 changes and 1,000 rules: 500 checks, not 500,000).
    by_owner = rules_by_owner(rules)
    alert_rules = [rule for rule in rules if rule.events & ALERT_EVENTS]
    drafts: list[_Draft] = []
    for event in events:
        if isinstance(event, JobStateChanged):
            own = by_owner.get(event.job.user)
            if own:
                drafts += _job(own, event, finished, now, new_id)
        elif isinstance(event, Alert) and alert_rules:
            drafts += _alert(alert_rules, event, now, new_id)
    return [draft.done() for draft in drafts if draft.deliveries]


def rules_by_owner(rules: Iterable[Rule]) -> dict[str, list[Rule]]:
    grouped: dict[str, list[Rule]] = {}
    for rule in rules:
        grouped.setdefault(rule.owner, []).append(rule)
    return grouped


def plan_pending(
    rules: Sequence[Rule],
    jobs: Iterable[Mapping[str, Any]],
    now: datetime,
    told: set[tuple[str, str]],
    *,
    as_of: datetime | None = None,
    stored: frozenset[str] | set[str] = frozenset(),
) -> list[Planned]:
    """Notifications for jobs pending longer than a rule's ``pending_minutes``.

    ``jobs`` are job payloads (``job_update`` data); ``told`` holds the (job id, rule id)
    pairs already planned, and gets the new ones: each rule tells of a job once. ``as_of``
    is when the listing was taken, in the cluster's time (a simulated cluster's runs
    faster than the wall clock): how long a job waited is measured against it; ``now``
    (the default) stamps the notification. ``stored`` holds ids of such notifications
    already stored (before a restart): those are not made again.
    """
    cluster_now = as_of or now
    waiting = [r for r in rules if NotifyEvent.JOB_PENDING_LONG in r.events]
    if not waiting:
        return []
    by_owner = rules_by_owner(waiting)
    planned: list[Planned] = []
    for job in jobs:
        job_id = text(job, "job_id")
        if job_id is None:
            continue
        for rule in by_owner.get(text(job, "user") or "", ()):
            if (job_id, rule.id) in told or not matches(
                rule, NotifyEvent.JOB_PENDING_LONG, job, cluster_now
            ):
                continue
            told.add((job_id, rule.id))
            submitted = text(job, "submit_time") or ""
            # Derived from the job and the rule: planned again after a restart, it is the
            # notification already stored, and adds nothing.
            digest = idempotency_key(job_id, submitted, rule.id)[:24]
            if f"{PENDING_ID_PREFIX}{digest}" in stored:
                continue
            draft = _Draft(
                _job_note(
                    f"{PENDING_ID_PREFIX}{digest}",
                    NotificationType.JOB_PENDING,
                    job,
                    now,
                    title="Job Still Pending",
                    message=(
                        f"Job #{job_id} ({_name(job)}) has been pending for "
                        f"{format_duration(waited_seconds(job, cluster_now))}"
                    ),
                    severity=Severity.WARNING,
                ),
                new=True,
            )
            draft.add(rule, NotifyEvent.JOB_PENDING_LONG, job, cluster_now, job_id, submitted)
            planned.append(draft.done())
    return planned


def _job(
    rules: Sequence[Rule],
    event: JobStateChanged,
    finished: Mapping[object, Notification],
    now: datetime,
    new_id: Callable[[], str],
) -> list[_Draft]:
    data = event.data()
    kind = classify(data)
    if kind is None:
        return []
    wanted = [rule for rule in rules if matches(rule, kind, data, now)]
    if not wanted:
        return []
    job_id = text(data, "job_id") or ""
    note = finished.get(job_id) if kind in FINAL_EVENTS else None
    if note is not None:
        draft = _Draft(note, new=False)
    elif kind is NotifyEvent.JOB_STARTED:
        where = ", ".join(str(n) for n in data.get("nodes") or []) or "its nodes"
        draft = _Draft(
            _job_note(
                new_id(),
                NotificationType.JOB_STARTED,
                data,
                now,
                title="Job Started",
                message=f"Job #{job_id} ({_name(data)}) started on {clean(where, 120)}",
                severity=Severity.INFO,
            ),
            new=True,
        )
    else:
        return []  # an end the poller made no notification of: nothing to hang it on
    # A job id is reused after a restart of slurmctld's counter; its submit time is not.
    submitted = text(data, "submit_time") or ""
    for rule in wanted:
        draft.add(rule, kind, data, now, job_id, submitted)
    return [draft]


def _alert(
    rules: Sequence[Rule], alert: Alert, now: datetime, new_id: Callable[[], str]
) -> list[_Draft]:
    kind = (
        NotifyEvent.ALERT_RESOLVED
        if alert.status is AlertStatus.RESOLVED
        else NotifyEvent.ALERT_FIRING
    )
    data = alert.data()
    by_owner: dict[str, _Draft] = {}
    for rule in rules:
        if kind not in ALERT_EVENTS or not matches(rule, kind, None, now):
            continue
        draft = by_owner.get(rule.owner)
        if draft is None:
            resolved = kind is NotifyEvent.ALERT_RESOLVED
            draft = by_owner[rule.owner] = _Draft(
                Notification(
                    id=new_id(),
                    type=NotificationType.ALERT,
                    title=f"Alert {'Resolved' if resolved else 'Firing'}: {clean(alert.rule, 80)}",
                    message=clean(alert.message, 500),
                    severity=Severity.SUCCESS if resolved else _SEVERITY[alert.severity.value],
                    created_at=now,
                    user=rule.owner,
                    details={"alert": data},
                ),
                new=True,
            )
        # An escalation (the condition fires again at another severity) is news: the
        # severity is part of what is told. ``since`` survives a failover (the checkpoint).
        draft.add(rule, kind, data, now, alert.id, iso_z(alert.since) or "", alert.severity.value)
    return list(by_owner.values())


_SEVERITY = {"info": Severity.INFO, "warning": Severity.WARNING, "critical": Severity.CRITICAL}


def _name(job: Mapping[str, Any]) -> str:
    return clean(text(job, "name") or "unnamed", 64)


def _job_note(
    id: str,
    kind: NotificationType,
    job: Mapping[str, Any],
    now: datetime,
    *,
    title: str,
    message: str,
    severity: Severity,
) -> Notification:
    return Notification(
        id=id,
        type=kind,
        title=title,
        message=message,
        severity=severity,
        created_at=now,
        user=text(job, "user"),
        details={
            key: job.get(key)
            for key in ("job_id", "name", "user", "partition", "status", "nodes", "submit_time")
        },
    )
