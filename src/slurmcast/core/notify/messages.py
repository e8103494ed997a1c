"""What a notification says: an e-mail subject and text, a Slack/Mattermost message and a
generic webhook body, from the job's published payload or an alert's.

Short on purpose: one line says what happened, two or three more say where and why. No
links, no tokens, nothing the job's owner could not see on the dashboard. Job names and
alert messages come from users and the cluster, so every value shown is cleaned first:
control characters (CR/LF above all: a subject is a mail header) become spaces, long values
are cut, and in chat the characters that make mentions or links (``<``, ``>``, ``&``, ``@``)
cannot form one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slurmcast.core.notify.jobdata import integer, run_seconds, text, waited_seconds
from slurmcast.core.notify.rules import ALERT_EVENTS, NotifyEvent
from slurmcast.core.timefmt import format_duration, iso_z

SUBJECT_PREFIX = "[slurmcast]"
#: Past these lengths a value is cut (with an ellipsis): a subject stays one readable line.
MAX_NAME_LENGTH = 64
MAX_SUBJECT_LENGTH = 200
MAX_LINE_LENGTH = 300
#: The webhook body's format version; a new one is added beside it, never changed in place.
WEBHOOK_VERSION = 1

# Slack's attachment colours (Mattermost accepts the same): good, bad, warning, neutral.
_GREEN = "#2eb886"
_RED = "#d40e0d"
_AMBER = "#daa038"
_BLUE = "#439fe0"
_EVENT_COLOR: dict[NotifyEvent, str] = {
    NotifyEvent.JOB_STARTED: _BLUE,
    NotifyEvent.JOB_COMPLETED: _GREEN,
    NotifyEvent.JOB_FAILED: _RED,
    NotifyEvent.JOB_TIMEOUT: _RED,
    NotifyEvent.JOB_OUT_OF_MEMORY: _RED,
    NotifyEvent.JOB_CANCELLED: _AMBER,
    NotifyEvent.JOB_PENDING_LONG: _AMBER,
    NotifyEvent.ALERT_RESOLVED: _GREEN,
}
_SEVERITY_COLOR = {"critical": _RED, "error": _RED, "warning": _AMBER}
# The job fields a webhook receives: an allow-list, so a field added to the payload later is
# not sent to third parties until someone decides it should be.
_WEBHOOK_JOB_FIELDS = (
    "job_id",
    "name",
    "user",
    "account",
    "partition",
    "qos",
    "status",
    "previous_status",
    "nodes",
    "submit_time",
    "start_time",
    "end_time",
    "exit_code",
    "exit_signal",
    "reason",
    "efficiency",
)
_WEBHOOK_ALERT_FIELDS = ("id", "rule", "severity", "status", "message", "since")


@dataclass(frozen=True, slots=True)
class Rendered:
    """One notification, ready for each kind of destination."""

    subject: str
    text: str
    slack_payload: dict[str, Any]
    webhook_payload: dict[str, Any]


def render(
    event: NotifyEvent,
    data: Mapping[str, Any],
    *,
    now: datetime,
    delivery_id: str | None = None,
) -> Rendered:
    """Render ``event`` about ``data`` (a ``job_update``'s data, or an alert's for
    ``alert_*``). ``now`` is the notification's time (the webhook's ``timestamp``);
    ``delivery_id``, when known, goes into the webhook body, where the signature covers it.
    """
    if event in ALERT_EVENTS:
        headline, details = _alert_lines(event, data)
        color = (
            _EVENT_COLOR[event]
            if event is NotifyEvent.ALERT_RESOLVED
            else _SEVERITY_COLOR.get((text(data, "severity") or "").lower(), _BLUE)
        )
        subject_of: dict[str, Any] = {"alert": _pick(data, _WEBHOOK_ALERT_FIELDS)}
    else:
        headline, details = _job_lines(event, data, now)
        color = _EVENT_COLOR[event]
        job = _pick(data, _WEBHOOK_JOB_FIELDS)
        job["run_seconds"] = run_seconds(data)
        subject_of = {"job": job}
    subject = _cut(f"{SUBJECT_PREFIX} {headline}", MAX_SUBJECT_LENGTH)
    body = "\n".join([headline, *details])
    slack: dict[str, Any] = {"text": _slack(headline)}
    if details:
        slack["attachments"] = [
            {"color": color, "text": _slack("\n".join(details)), "fallback": _slack(headline)}
        ]
    webhook: dict[str, Any] = {
        "version": WEBHOOK_VERSION,
        "event": event.value,
        "timestamp": iso_z(now, millis=True),
        "delivery_id": delivery_id,
        "subject": subject,
        **subject_of,
    }
    return Rendered(subject=subject, text=body, slack_payload=slack, webhook_payload=webhook)


def clean(value: object, limit: int = MAX_LINE_LENGTH) -> str:
    """A value as one safe line: control and separator characters as spaces, cut at ``limit``."""
    raw = "" if value is None else str(value)
    line = "".join(ch if ch.isprintable() else " " for ch in raw)
    return _cut(" ".join(line.split()), limit)


def _job_lines(event: NotifyEvent, job: Mapping[str, Any], now: datetime) -> tuple[str, list[str]]:
    job_id = clean(text(job, "job_id") or "?", MAX_NAME_LENGTH)
    name = clean(text(job, "name"), MAX_NAME_LENGTH)
    who = f"Job {job_id} ({name})" if name else f"Job {job_id}"
    status = clean(text(job, "status") or "?", MAX_NAME_LENGTH)
    ran = format_duration(run_seconds(job))
    waited = format_duration(waited_seconds(job, now))
    if event is NotifyEvent.JOB_STARTED:
        headline = f"{who} started" + (f" after {waited} in the queue" if waited else "")
    elif event is NotifyEvent.JOB_PENDING_LONG:
        headline = f"{who} still PENDING" + (f" after {waited}" if waited else "")
        reason = text(job, "reason")
        if reason:
            headline += f" ({clean(reason, MAX_NAME_LENGTH)})"
    else:
        headline = f"{who} {status}" + _exit(event, job)
        if ran:
            headline += f" after {ran}"
        elif text(job, "start_time") is None:
            headline += " before starting"

    where = [f"user {clean(text(job, 'user') or '?', MAX_NAME_LENGTH)}"]
    partition = text(job, "partition")
    if partition:
        where.append(f"partition {clean(partition, MAX_NAME_LENGTH)}")
    nodes = job.get("nodes")
    if isinstance(nodes, list) and nodes:
        shown = ", ".join(clean(node, MAX_NAME_LENGTH) for node in nodes[:3])
        more = f" and {len(nodes) - 3} more" if len(nodes) > 3 else ""
        where.append(f"nodes {shown}{more}")
    details = [clean(_sentence(", ".join(where)))]
    reason_text = clean(text(job, "reason_text"))
    if reason_text:
        details.append(reason_text)
    efficiency = _efficiency(job.get("efficiency"))
    if efficiency:
        details.append(efficiency)
    return clean(headline, MAX_SUBJECT_LENGTH), details


def _exit(event: NotifyEvent, job: Mapping[str, Any]) -> str:
    # Only failures say how: "COMPLETED, exit 0" tells nothing, and a timeout's or a
    # cancellation's code is Slurm's signal, not the program's answer.
    if event is not NotifyEvent.JOB_FAILED:
        return ""
    signal = integer(job, "exit_signal")
    if signal:
        return f", signal {signal}"
    code = integer(job, "exit_code")
    return f", exit {code}" if code is not None else ""


def _efficiency(value: object) -> str | None:
    if not isinstance(value, Mapping):
        return None
    parts = []
    cpu = value.get("cpu_efficiency")
    if isinstance(cpu, int | float) and not isinstance(cpu, bool):
        parts.append(f"CPU efficiency {cpu:.0f}%")
    memory = value.get("memory_efficiency")
    if isinstance(memory, int | float) and not isinstance(memory, bool):
        parts.append(f"memory {memory:.0f}% of the request")
    return _sentence(", ".join(parts)) if parts else None


def _alert_lines(event: NotifyEvent, alert: Mapping[str, Any]) -> tuple[str, list[str]]:
    state = "firing" if event is NotifyEvent.ALERT_FIRING else "resolved"
    message = clean(text(alert, "message") or text(alert, "rule") or "?", MAX_NAME_LENGTH * 2)
    headline = f"Alert {state}: {message}"
    details = []
    severity = text(alert, "severity")
    rule = text(alert, "rule")
    facts = [f"rule {clean(rule, MAX_NAME_LENGTH)}"] if rule else []
    if severity:
        facts.append(f"severity {clean(severity, MAX_NAME_LENGTH)}")
    since = text(alert, "since")
    if since:
        facts.append(f"since {clean(since, MAX_NAME_LENGTH)}")
    if facts:
        details.append(_sentence(", ".join(facts)))
    return clean(headline, MAX_SUBJECT_LENGTH), details


def _pick(data: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {key: data.get(key) for key in fields}


def _sentence(line: str) -> str:
    return line[:1].upper() + line[1:] + "."


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _slack(line: str) -> str:
    # Slack reads <...> as links and mentions (<!channel>), & as an entity: its documented
    # escapes. Mattermost turns "@channel" into a mention: a word joiner (U+2060) after "@" keeps
    # the text readable and mentions nobody.
    escaped = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("@", "@\u2060")
