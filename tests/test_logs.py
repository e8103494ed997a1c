"""Log lines as text or JSON, with the same context fields, and never a token."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from slurmcast.logs import JsonFormatter, configure_logging, context, redact

from support.process import ServeProcess
from support.tokens import SECRET, hs256

SLURMCAST = Path(sys.executable).with_name("slurmcast")
TOKEN = hs256("alice")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        yield stream
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])


def test_json_lines_carry_the_message_and_its_context(captured: io.StringIO) -> None:
    configure_logging("INFO", "json", captured)
    log = logging.getLogger("slurmcast.ws")
    log.info("client %d subscribed to %s", 12, "jobs", extra=context(client=12, channel="jobs"))
    log.debug("not shown at INFO")
    (line,) = captured.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "client 12 subscribed to jobs"
    assert (record["level"], record["logger"]) == ("INFO", "slurmcast.ws")
    assert (record["client"], record["channel"]) == (12, "jobs")
    assert "user" not in record and record["time"].endswith("Z")


def test_exceptions_are_one_field_of_one_line(captured: io.StringIO) -> None:
    configure_logging("INFO", "json", captured)
    try:
        raise RuntimeError(f"boom with {TOKEN}")
    except RuntimeError:
        logging.getLogger("slurmcast").exception("failed", extra=context(code="internal"))
    (line,) = captured.getvalue().splitlines()
    record = json.loads(line)
    assert "RuntimeError: boom" in record["error"] and record["code"] == "internal"
    assert TOKEN not in line and "<redacted>" in record["error"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_token_in_a_message_is_redacted_in_both_formats(
    captured: io.StringIO, log_format: str
) -> None:
    configure_logging("INFO", log_format, captured)
    logging.getLogger("slurmcast.http").warning("refused token %s from %s", TOKEN, "10.0.0.1")
    text = captured.getvalue()
    assert TOKEN not in text and "<redacted>" in text and "10.0.0.1" in text


def test_text_format_is_the_familiar_one(captured: io.StringIO) -> None:
    configure_logging("INFO", "text", captured)
    logging.getLogger("slurmcast").info("hello", extra=context(user="bob"))
    assert captured.getvalue().rstrip().endswith(" INFO slurmcast: hello")


def test_context_names_only_known_fields() -> None:
    assert context(client=1, user=None) == {"client": 1}
    with pytest.raises(ValueError, match="tokens"):
        context(tokens="x")
    with pytest.raises(ValueError, match="log format"):
        configure_logging("INFO", "xml")


def test_redact_leaves_ordinary_text_alone() -> None:
    assert redact("job 1234 of eyJ-less user") == "job 1234 of eyJ-less user"
    assert JsonFormatter().format(logging.makeLogRecord({"msg": "x"})).startswith("{")


def test_serve_logs_json_lines_without_the_tokens_it_was_given() -> None:
    args = ("--auth", "jwt", "--log-format", "json", "--log-level", "debug")
    with ServeProcess(*args, env={"SLURMCAST_JWT_SECRET": SECRET}) as server:
        url = f"ws://127.0.0.1:{server.ws_port}/?token={TOKEN}"
        with connect(url, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "subscribe", "channel": "jobs", "id": 1}))
            assert json.loads(ws.recv(30))["type"] == "subscribed"
            ws.send(json.dumps({"type": "refresh", "token": TOKEN, "id": 2}))
            ws.recv(30)
        server.stop()
        text = server.log.read_text()  # before the process's directory goes
    lines = text.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records and all({"time", "level", "logger", "event"} <= set(r) for r in records)
    assert any("connected" in r["event"] for r in records)
    # The same context fields wherever a line is about a client.
    authenticated = [
        r for r in records if r["event"].startswith("client") and "alice" in r["event"]
    ]
    assert authenticated and all(
        r.get("user") == "alice" and isinstance(r.get("client"), int) and r.get("remote")
        for r in authenticated
    )
    assert TOKEN not in text
