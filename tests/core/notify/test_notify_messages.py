"""Rendered notifications: subjects, texts, Slack/Mattermost and webhook payloads, and
that nothing a job's owner typed can break a header or ping a channel."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurmcast.core.notify.messages import (
    MAX_SUBJECT_LENGTH,
    SUBJECT_PREFIX,
    clean,
    render,
)
from slurmcast.core.notify.rules import NotifyEvent

NOW = datetime(2026, 11, 28, 6, 25, 20, tzinfo=UTC)


def job(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "job_id": "1234",
        "name": "train",
        "status": "FAILED",
        "previous_status": "RUNNING",
        "user": "carol",
        "account": "chemistry",
        "partition": "cpu",
        "qos": "normal",
        "nodes": ["node001"],
        "submit_time": "2026-11-28T04:10:13Z",
        "start_time": "2026-11-28T04:20:13Z",
        "end_time": "2026-11-28T06:25:13Z",
        "exit_code": 3,
        "exit_signal": None,
        "reason": "NonZeroExitCode",
        "reason_text": "The job ended with a non-zero exit code.",
        "resources": {"cpus": 1},
        "efficiency": {"cpu_efficiency": 88.0, "memory_efficiency": 45.0},
        "secret_field": "should not leak",
    }
    base.update(fields)
    return base


ALERT = {
    "id": "node_down:node001",
    "rule": "node_down",
    "severity": "critical",
    "status": "firing",
    "message": "node001 is DOWN",
    "details": {"node": "node001"},
    "since": "2026-11-28T04:20:12Z",
}


@pytest.mark.parametrize(
    ("event", "fields", "subject"),
    [
        (NotifyEvent.JOB_FAILED, {}, "Job 1234 (train) FAILED, exit 3 after 2h 5m"),
        (
            NotifyEvent.JOB_FAILED,
            {"status": "NODE_FAIL", "exit_code": 0},
            "Job 1234 (train) NODE_FAIL, exit 0 after 2h 5m",
        ),
        (
            NotifyEvent.JOB_FAILED,
            {"exit_code": 0, "exit_signal": 9},
            "Job 1234 (train) FAILED, signal 9 after 2h 5m",
        ),
        (
            NotifyEvent.JOB_COMPLETED,
            {"status": "COMPLETED", "exit_code": 0},
            "Job 1234 (train) COMPLETED after 2h 5m",
        ),
        (NotifyEvent.JOB_TIMEOUT, {"status": "TIMEOUT"}, "Job 1234 (train) TIMEOUT after 2h 5m"),
        (
            NotifyEvent.JOB_OUT_OF_MEMORY,
            {"status": "OUT_OF_MEMORY"},
            "Job 1234 (train) OUT_OF_MEMORY after 2h 5m",
        ),
        (
            NotifyEvent.JOB_CANCELLED,
            {"status": "CANCELLED", "start_time": None},
            "Job 1234 (train) CANCELLED before starting",
        ),
        (
            NotifyEvent.JOB_STARTED,
            {"status": "RUNNING", "previous_status": "PENDING", "end_time": None},
            "Job 1234 (train) started after 10m in the queue",
        ),
        (
            NotifyEvent.JOB_PENDING_LONG,
            {"status": "PENDING", "start_time": None, "end_time": None, "reason": "Resources"},
            "Job 1234 (train) still PENDING after 2h 15m (Resources)",
        ),
        (NotifyEvent.JOB_FAILED, {"name": None}, "Job 1234 FAILED, exit 3 after 2h 5m"),
        (NotifyEvent.ALERT_FIRING, None, "Alert firing: node001 is DOWN"),
        (NotifyEvent.ALERT_RESOLVED, None, "Alert resolved: node001 is DOWN"),
    ],
)
def test_subjects(event: NotifyEvent, fields: dict[str, Any] | None, subject: str) -> None:
    data = ALERT if fields is None else job(**fields)
    rendered = render(event, data, now=NOW)
    assert rendered.subject == f"{SUBJECT_PREFIX} {subject}"
    assert rendered.text.splitlines()[0] == subject
    assert rendered.slack_payload["text"] == subject


def test_text_is_short_and_says_where_and_why() -> None:
    text = render(NotifyEvent.JOB_FAILED, job(), now=NOW).text
    assert text.splitlines() == [
        "Job 1234 (train) FAILED, exit 3 after 2h 5m",
        "User carol, partition cpu, nodes node001.",
        "The job ended with a non-zero exit code.",
        "CPU efficiency 88%, memory 45% of the request.",
    ]


def test_many_nodes_are_summarised() -> None:
    nodes = [f"node{i:03}" for i in range(10)]
    text = render(NotifyEvent.JOB_FAILED, job(nodes=nodes), now=NOW).text
    assert "nodes node000, node001, node002 and 7 more." in text


@pytest.mark.parametrize(
    ("event", "color"),
    [
        (NotifyEvent.JOB_COMPLETED, "#2eb886"),
        (NotifyEvent.JOB_FAILED, "#d40e0d"),
        (NotifyEvent.JOB_CANCELLED, "#daa038"),
        (NotifyEvent.JOB_STARTED, "#439fe0"),
    ],
)
def test_slack_payload_shape(event: NotifyEvent, color: str) -> None:
    payload = render(event, job(), now=NOW).slack_payload
    assert set(payload) == {"text", "attachments"}
    (attachment,) = payload["attachments"]
    assert attachment["color"] == color
    assert attachment["fallback"] == payload["text"]
    assert "User carol" in attachment["text"]
    json.dumps(payload)


@pytest.mark.parametrize(
    ("severity", "color"), [("critical", "#d40e0d"), ("warning", "#daa038"), ("info", "#439fe0")]
)
def test_alert_colours_follow_severity(severity: str, color: str) -> None:
    payload = render(NotifyEvent.ALERT_FIRING, {**ALERT, "severity": severity}, now=NOW)
    assert payload.slack_payload["attachments"][0]["color"] == color
    resolved = render(NotifyEvent.ALERT_RESOLVED, {**ALERT, "severity": severity}, now=NOW)
    assert resolved.slack_payload["attachments"][0]["color"] == "#2eb886"


def test_webhook_payload_is_an_allow_list() -> None:
    payload = render(NotifyEvent.JOB_FAILED, job(), now=NOW, delivery_id="d-42").webhook_payload
    assert payload["version"] == 1
    assert payload["event"] == "job_failed"
    assert payload["timestamp"] == "2026-11-28T06:25:20.000Z"
    assert payload["delivery_id"] == "d-42"
    assert payload["job"]["job_id"] == "1234"
    assert payload["job"]["exit_code"] == 3
    assert payload["job"]["run_seconds"] == 7500.0
    assert payload["job"]["efficiency"] == {"cpu_efficiency": 88.0, "memory_efficiency": 45.0}
    assert "secret_field" not in payload["job"]
    assert "resources" not in payload["job"]
    assert "alert" not in payload
    json.dumps(payload)


def test_webhook_alert_payload() -> None:
    payload = render(NotifyEvent.ALERT_FIRING, ALERT, now=NOW).webhook_payload
    assert payload["alert"] == {
        "id": "node_down:node001",
        "rule": "node_down",
        "severity": "critical",
        "status": "firing",
        "message": "node001 is DOWN",
        "since": "2026-11-28T04:20:12Z",
    }
    assert "job" not in payload


def test_header_injection_through_a_job_name_is_impossible() -> None:
    rendered = render(
        NotifyEvent.JOB_FAILED, job(name="x\r\nBcc: victim@example.com\r\n\r\nhi"), now=NOW
    )
    assert "\r" not in rendered.subject and "\n" not in rendered.subject
    assert rendered.text.count("\n") == 3  # its own four lines, no more


def test_chat_cannot_be_made_to_mention_or_link() -> None:
    rendered = render(
        NotifyEvent.JOB_FAILED, job(name="<!channel> @here <https://evil|click> & co"), now=NOW
    )
    text = rendered.slack_payload["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt;" in text
    assert "@here" not in text
    assert "&amp; co" in text
    # The mail keeps the name as written (only control characters go).
    assert "<!channel> @here" in rendered.subject


def test_long_names_are_cut() -> None:
    rendered = render(NotifyEvent.JOB_FAILED, job(name="n" * 500, job_id="9" * 500), now=NOW)
    assert len(rendered.subject) <= MAX_SUBJECT_LENGTH
    assert "…" in rendered.subject


@given(name=st.text(max_size=300), reason=st.text(max_size=300))
def test_any_job_name_gives_one_line_subject(name: str, reason: str) -> None:
    rendered = render(NotifyEvent.JOB_FAILED, job(name=name, reason_text=reason), now=NOW)
    assert rendered.subject.isprintable()
    assert len(rendered.subject) <= MAX_SUBJECT_LENGTH
    assert all(line.isprintable() for line in rendered.text.splitlines())
    lines = rendered.text.splitlines()
    assert 3 <= len(lines) <= 4
    assert all(line.strip() for line in lines)
    if not clean(name, 300):
        # A blank name is left out, not shown as empty brackets.
        assert not lines[0].startswith("Job 1234 () ")
    json.dumps(rendered.slack_payload)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\tb\nc", "a b c"),
        ("  spaced   out ", "spaced out"),
        ("line\u2028sep", "line sep"),
        (None, ""),
        (42, "42"),
    ],
)
def test_clean(value: object, expected: str) -> None:
    assert clean(value) == expected


def test_missing_fields_still_render() -> None:
    rendered = render(NotifyEvent.JOB_COMPLETED, {"job_id": "7", "status": "COMPLETED"}, now=NOW)
    assert rendered.subject == "[slurmcast] Job 7 COMPLETED before starting"
    assert rendered.text.splitlines()[1] == "User ?."
