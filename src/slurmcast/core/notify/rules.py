"""Per-user notification rules: what a rule is, how one is read from a request, and when
one matches.

A rule says which events its owner wants to hear about (``NotifyEvent``), optionally only for
some partitions, job names or run times, and where to send them (``Destination``). Job rules
only ever match their owner's own jobs, admins' included: a rule is "tell me about my jobs",
never a way to watch someone else's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from slurmcast.core.channels import is_valid_user_name
from slurmcast.core.notify.addresses import DEFAULT_TARGET, check_email_target
from slurmcast.core.notify.errors import ForbiddenDestination, InvalidRule
from slurmcast.core.notify.jobdata import partitions, run_seconds, text, waited_seconds
from slurmcast.core.notify.ssrf import UrlPolicy


class NotifyEvent(StrEnum):
    JOB_STARTED = "job_started"
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_TIMEOUT = "job_timeout"
    JOB_OUT_OF_MEMORY = "job_out_of_memory"
    JOB_CANCELLED = "job_cancelled"
    JOB_PENDING_LONG = "job_pending_long"
    ALERT_FIRING = "alert_firing"
    ALERT_RESOLVED = "alert_resolved"


#: Alerts concern the whole cluster, which only admins are shown (docs/protocol.md).
ALERT_EVENTS = frozenset({NotifyEvent.ALERT_FIRING, NotifyEvent.ALERT_RESOLVED})
#: A job's end: the events ``min_run_seconds`` applies to.
FINAL_EVENTS = frozenset(
    {
        NotifyEvent.JOB_COMPLETED,
        NotifyEvent.JOB_FAILED,
        NotifyEvent.JOB_TIMEOUT,
        NotifyEvent.JOB_OUT_OF_MEMORY,
        NotifyEvent.JOB_CANCELLED,
    }
)

# A final state -> its event. BOOT_FAIL and SPECIAL_EXIT are failures and DEADLINE a
# time limit, though the issue names only the common states: a user who asked to hear about
# failures wants those too. REVOKED (the job ran on another cluster of a federation) is
# not an end this cluster's user is told about.
_FINAL: dict[str, NotifyEvent] = {
    "COMPLETED": NotifyEvent.JOB_COMPLETED,
    "FAILED": NotifyEvent.JOB_FAILED,
    "NODE_FAIL": NotifyEvent.JOB_FAILED,
    "BOOT_FAIL": NotifyEvent.JOB_FAILED,
    "SPECIAL_EXIT": NotifyEvent.JOB_FAILED,
    "TIMEOUT": NotifyEvent.JOB_TIMEOUT,
    "DEADLINE": NotifyEvent.JOB_TIMEOUT,
    "OUT_OF_MEMORY": NotifyEvent.JOB_OUT_OF_MEMORY,
    "CANCELLED": NotifyEvent.JOB_CANCELLED,
    "PREEMPTED": NotifyEvent.JOB_CANCELLED,
}
# States a job starts from: PENDING, or CONFIGURING when its nodes were booting first (the
# step PENDING -> CONFIGURING is then not the start, so a job is told it started once).
_BEFORE_START = frozenset({"PENDING", "CONFIGURING"})

MAX_PATTERN_LENGTH = 128
MAX_PARTITIONS = 32
#: A year: longer than any site's time limit, small enough to be a typo's bound.
MAX_RUN_SECONDS = 366 * 86400
#: Thirty days of waiting.
MAX_PENDING_MINUTES = 30 * 24 * 60
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PARTITION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_FIELDS = frozenset(
    {"id", "events", "partitions", "name_pattern", "min_run_seconds", "pending_minutes"}
    | {"destination"}
)


class DestinationKind(StrEnum):
    EMAIL = "email"
    SLACK = "slack"
    WEBHOOK = "webhook"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a rule's notifications go.

    ``target`` is an e-mail address or a URL, or ``default``: for e-mail the owner's own
    address at sending time, for Slack and webhooks the operator's configured sink.
    """

    kind: DestinationKind
    target: str = DEFAULT_TARGET

    def data(self) -> dict[str, str]:
        return {"kind": self.kind.value, "target": self.target}


@dataclass(frozen=True, slots=True)
class Rule:
    """One user's rule. Empty ``partitions`` and a None filter mean "any"."""

    id: str
    owner: str
    events: frozenset[NotifyEvent]
    destination: Destination
    partitions: frozenset[str] = frozenset()
    name_pattern: str | None = None
    min_run_seconds: int | None = None
    pending_minutes: int | None = None

    def data(self) -> dict[str, Any]:
        """The rule as the API shows it (and ``parse_rule`` reads it back)."""
        return {
            "id": self.id,
            "owner": self.owner,
            "events": sorted(event.value for event in self.events),
            "partitions": sorted(self.partitions),
            "name_pattern": self.name_pattern,
            "min_run_seconds": self.min_run_seconds,
            "pending_minutes": self.pending_minutes,
            "destination": self.destination.data(),
        }


def parse_rule(
    data: Mapping[str, Any],
    owner: str,
    is_admin: bool,
    *,
    own_address: str | None,
    url_policy: UrlPolicy,
    rule_id: str | None = None,
    saved: bool = False,
) -> Rule:
    """Validate a rule from a request (or the database) for ``owner``.

    ``is_admin`` is whether the person saving it is an admin; ``own_address`` the owner's
    resolved e-mail address (``addresses.own_address``), ``url_policy`` the operator's
    webhook settings. Both are required so that no caller can forget the destination checks.
    ``rule_id`` (a new rule's id) wins over an ``id`` in ``data``. ``saved`` is for
    ``restore_rule`` only. ``owner`` in ``data``,
    as ``Rule.data`` writes it, is ignored: the owner is who the caller says.

    Raises:
        InvalidRule: an unknown or malformed field (``field`` names it).
        ForbiddenDestination: alert events for a non-admin, mail to another's address.
        UnsafeDestination: a webhook URL the SSRF policy refuses.
    """
    if not isinstance(data, Mapping):
        raise InvalidRule("a rule must be an object")
    unknown = sorted(str(key) for key in data if key not in _FIELDS and key != "owner")
    if unknown:
        raise InvalidRule(f"unknown field {unknown[0]!r}", field=unknown[0])
    if not is_valid_user_name(owner):
        raise InvalidRule("invalid owner", field="owner")
    identifier = rule_id if rule_id is not None else data.get("id")
    if not isinstance(identifier, str) or _ID.fullmatch(identifier) is None:
        raise InvalidRule("id must be 1 to 64 letters, digits, '_' or '-'", field="id")
    events = _events(data.get("events"))
    if events & ALERT_EVENTS and not is_admin:
        raise ForbiddenDestination("only admins may be notified of alerts")
    pending = _optional_int(data, "pending_minutes", 1, MAX_PENDING_MINUTES)
    if (pending is None) != (NotifyEvent.JOB_PENDING_LONG not in events):
        raise InvalidRule(
            "pending_minutes is required with job_pending_long, and only with it",
            field="pending_minutes",
        )
    return Rule(
        id=identifier,
        owner=owner,
        events=events,
        destination=_destination(
            data.get("destination"),
            own_address=own_address,
            is_admin=is_admin,
            urls=url_policy,
            saved=saved,
        ),
        partitions=_partitions(data.get("partitions")),
        name_pattern=_pattern(data.get("name_pattern")),
        min_run_seconds=_optional_int(data, "min_run_seconds", 0, MAX_RUN_SECONDS),
        pending_minutes=pending,
    )


def restore_rule(spec: Mapping[str, Any], owner: str, rule_id: str, url_policy: UrlPolicy) -> Rule:
    """A stored rule (``Rule.data()``) as a ``Rule`` again.

    Who may use which events and addresses was decided when it was saved; the structure,
    and a webhook URL against the operator's current policy, are checked again, so a rule
    the operator's policy no longer allows is refused, not used.

    Raises:
        InvalidRule, UnsafeDestination: as ``parse_rule``.
    """
    return parse_rule(
        spec, owner, True, own_address=None, url_policy=url_policy, rule_id=rule_id, saved=True
    )


def matches(rule: Rule, event: NotifyEvent, job: Mapping[str, Any] | None, now: datetime) -> bool:
    """Whether ``rule`` wants to hear of ``event`` about ``job`` (None for an alert).

    Job filters do not apply to alerts. ``min_run_seconds`` applies to a job's end only (a
    job that never ran has run 0 s); ``job_pending_long`` needs the job still pending for
    ``pending_minutes`` at ``now`` (the caller sends it once per job).
    """
    if event not in rule.events:
        return False
    if event in ALERT_EVENTS:
        return True
    if job is None or text(job, "user") != rule.owner:
        return False
    if rule.partitions and not partitions(job) & rule.partitions:
        return False
    if rule.name_pattern is not None and not fnmatchcase(
        text(job, "name") or "", rule.name_pattern
    ):
        return False
    if (
        event in FINAL_EVENTS
        and rule.min_run_seconds
        and (run_seconds(job) or 0.0) < rule.min_run_seconds
    ):
        return False
    if event is NotifyEvent.JOB_PENDING_LONG:
        return rule.pending_minutes is not None and pending_too_long(job, rule.pending_minutes, now)
    return True


def classify(data: Mapping[str, Any]) -> NotifyEvent | None:
    """The event a ``job_update``'s ``data`` is, or None (not one rules know).

    An update whose final state the source could not confirm is nothing: the server never
    invents a final state, and neither does a notification.
    """
    if data.get("final_state_confirmed") is False:
        return None
    status = (text(data, "status") or "").upper()
    previous = (text(data, "previous_status") or "").upper()
    if not status or status == previous:
        return None
    if status == "RUNNING":
        return NotifyEvent.JOB_STARTED if previous in _BEFORE_START else None
    return _FINAL.get(status)


def pending_too_long(job: Mapping[str, Any], minutes: int, now: datetime) -> bool:
    """Whether a job is still pending ``minutes`` or more after it was submitted."""
    if (text(job, "status") or "").upper() != "PENDING":
        return False
    waited = waited_seconds(job, now)
    return waited is not None and waited >= minutes * 60


def _events(value: object) -> frozenset[NotifyEvent]:
    if not isinstance(value, list | tuple) or not value:
        raise InvalidRule("events must be a non-empty list", field="events")
    events: set[NotifyEvent] = set()
    for item in value:
        try:
            events.add(NotifyEvent(item))
        except ValueError:
            known = ", ".join(event.value for event in NotifyEvent)
            raise InvalidRule(
                f"unknown event {item!r:.40}; events are: {known}", field="events"
            ) from None
    return frozenset(events)


def _partitions(value: object) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list | tuple) or len(value) > MAX_PARTITIONS:
        raise InvalidRule(
            f"partitions must be a list of at most {MAX_PARTITIONS} names", field="partitions"
        )
    if not all(isinstance(item, str) and _PARTITION.fullmatch(item) for item in value):
        raise InvalidRule("partitions holds an invalid partition name", field="partitions")
    return frozenset(value)


def _pattern(value: object) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_PATTERN_LENGTH
        or not value.isprintable()
    ):
        raise InvalidRule(
            f"name_pattern must be 1 to {MAX_PATTERN_LENGTH} printable characters",
            field="name_pattern",
        )
    return value


def _optional_int(data: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRule(f"{key} must be an integer from {low} to {high}", field=key)
    return value


def _destination(
    value: object, *, own_address: str | None, is_admin: bool, urls: UrlPolicy, saved: bool
) -> Destination:
    if not isinstance(value, Mapping) or set(value) - {"kind", "target"}:
        raise InvalidRule("destination must be an object with kind and target", field="destination")
    try:
        kind = DestinationKind(str(value.get("kind")))
    except ValueError:
        raise InvalidRule(
            "destination kind must be email, slack or webhook", field="destination"
        ) from None
    target = value.get("target", DEFAULT_TARGET)
    if kind is DestinationKind.EMAIL and saved and target == DEFAULT_TARGET:
        # The owner's address is looked up when sending: it may have changed since.
        return Destination(kind)
    if kind is DestinationKind.EMAIL:
        return Destination(kind, check_email_target(target, own=own_address, is_admin=is_admin))
    if target == DEFAULT_TARGET:
        return Destination(kind)
    return Destination(kind, urls.check(target).url)
