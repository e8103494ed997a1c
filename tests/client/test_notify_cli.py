"""``slurmcast notify`` against a real server: in-process through ``main`` and once as a process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from slurmcast.app import SlurmcastApp
from slurmcast.cli import main
from slurmcast.client.notify_cli import (
    EXIT_ANSWERED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    format_duration,
    parse_duration,
    shown_target,
)
from slurmcast.core.notifications import Notification, NotificationType, Severity
from slurmcast.sinks.config import SinksConfig
from slurmcast.sinks.email import SmtpSettings, TlsMode
from slurmcast.storage.outbox import DestinationKind, NewDelivery

from support.server import WAIT, http_json, running_server
from support.tokens import SECRET, hs256

SLURMCAST = Path(sys.executable).with_name("slurmcast")
API_KEY = "notify-cli-test-key"
QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}
SINKS = SinksConfig(
    email=SmtpSettings(
        host="127.0.0.1", port=2525, tls=TlsMode.NONE, from_address="slurmcast@example.edu"
    ),
    address_template="{user}@example.edu",
    slack=True,
    slack_default_url="https://hooks.example.com/x",
)
ENVIRONMENT = ("SLURMCAST_URL", "SLURMCAST_API_KEY", "SLURMCAST_TOKEN")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SLURMCAST_* variables must not reach the command."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@contextlib.asynccontextmanager
async def notify_server(**overrides: Any) -> AsyncIterator[SlurmcastApp]:
    """A server with JWT auth, an API key and the /notify API."""
    settings: dict[str, Any] = {
        **QUIET,
        "sinks": SINKS,
        "auth": "jwt",
        "jwt_secret": SECRET,
        "api_key": API_KEY,
    }
    settings.update(overrides)
    async with running_server(**settings) as app:
        yield app


def base(app: SlurmcastApp) -> str:
    return f"http://127.0.0.1:{app.http.port}"


class Run:
    """``main(argv)`` in a thread (it runs its own event loop), its output captured."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            status = await asyncio.to_thread(main, ["notify", *argv])
        except SystemExit as exc:  # argparse's usage errors
            status = exc.code if isinstance(exc.code, int) else 2
        out, err = self.capsys.readouterr()
        return status, out, err

    async def ok(self, *argv: str) -> str:
        status, out, err = await self(*argv)
        assert status == 0, err
        return out


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def as_user(app: SlurmcastApp, user: str = "alice") -> list[str]:
    return ["--url", base(app), "--token", hs256(user)]


def as_admin(app: SlurmcastApp) -> list[str]:
    return ["--url", base(app), "--api-key", API_KEY]


def auth_headers(user: str | None) -> dict[str, str]:
    return {"X-API-Key": API_KEY} if user is None else {"Authorization": f"Bearer {hs256(user)}"}


async def server_answer(
    app: SlurmcastApp, method: str, path: str, user: str | None = None
) -> tuple[int, dict[str, Any]]:
    """What the API itself answers, to compare the command's output with."""
    return await http_json(app, method, path, headers=auth_headers(user), check_schema=False)


def table(out: str) -> list[list[str]]:
    """The rows of an aligned table, split at runs of two or more spaces."""
    lines = out.rstrip("\n").split("\n")
    return [re.split(r" {2,}", line.strip()) for line in lines]


def pairs(out: str) -> dict[str, str]:
    """The ``name  value`` lines of ``show``, ``delivery`` and ``config``."""
    shown = {}
    for line in out.splitlines():
        name, _, value = line.partition("  ")
        shown[name] = value.strip()
    return shown


def error_line(body: dict[str, Any]) -> str:
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    assert isinstance(error, dict)
    return f"slurmcast notify: {error['code']}: {error['message']}\n"


# -- rules -----------------------------------------------------------------------------


async def test_a_users_rule_from_add_to_delete(run: Run) -> None:
    async with notify_server() as app:
        me = as_user(app)
        out = await run.ok(
            "add",
            *me,
            "--event",
            "job_failed,job_timeout",
            "--event",
            "job_failed",
            "--email",
            "--partition",
            "cpu",
            "--partition",
            "gpu,cpu",
            "--name-pattern",
            "train*",
            "--min-run",
            "1h30m",
            "--id",
            "my-rule",
        )
        assert out.startswith("added rule my-rule\n")
        details = pairs(out)
        assert details["id"] == "my-rule" and details["owner"] == "alice"
        assert details["min run"] == "1h30m" and details["destination"] == "email:default"

        status, stored = await server_answer(app, "GET", "/notify/rules/my-rule", "alice")
        assert status == 200, stored
        rule = stored["rule"]
        assert rule["owner"] == "alice" and rule["enabled"] is True
        assert sorted(rule["events"]) == ["job_failed", "job_timeout"]
        assert sorted(rule["partitions"]) == ["cpu", "gpu"]
        assert rule["name_pattern"] == "train*" and rule["min_run_seconds"] == 5400
        assert rule["destination"] == {"kind": "email", "target": "default"}

        rows = table(await run.ok("rules", *me))
        assert rows[0] == ["ID", "ENABLED", "OWNER", "EVENTS", "DESTINATION", "FILTERS"]
        assert rows[1][:3] == ["my-rule", "yes", "alice"]
        assert rows[1][4] == "email:default"
        assert "partition=" in rows[1][5] and "name=train*" in rows[1][5]
        assert "min-run=1h30m" in rows[1][5]
        lines = (await run.ok("rules", *me)).splitlines()
        # Aligned: every column starts where its header does.
        assert lines[1].index("email:default") == lines[0].index("DESTINATION")

        listed = json.loads(await run.ok("rules", *me, "--json"))
        status, expected = await server_answer(app, "GET", "/notify/rules", "alice")
        assert listed == expected and [r["id"] for r in listed["rules"]] == ["my-rule"]

        shown = pairs(await run.ok("show", "my-rule", *me))
        assert shown["events"] == "job_failed, job_timeout" and shown["enabled"] == "yes"
        assert shown["partitions"] == "cpu, gpu" and shown["name pattern"] == "train*"
        assert json.loads(await run.ok("show", "my-rule", *me, "--json")) == stored

        assert await run.ok("disable", "my-rule", *me) == "rule my-rule disabled\n"
        assert table(await run.ok("rules", *me))[1][1] == "no"
        status, body = await server_answer(app, "GET", "/notify/rules/my-rule", "alice")
        assert body["rule"]["enabled"] is False
        assert await run.ok("enable", "my-rule", *me) == "rule my-rule enabled\n"
        status, body = await server_answer(app, "GET", "/notify/rules/my-rule", "alice")
        assert body["rule"]["enabled"] is True

        assert await run.ok("delete", "my-rule", *me) == "deleted rule my-rule\n"
        status, out, err = await run("rules", *me)
        assert (status, out, err) == (0, "", "slurmcast notify: no rules\n")
        status, _ = await server_answer(app, "GET", "/notify/rules/my-rule", "alice")
        assert status == 404


async def test_an_admin_adds_a_disabled_slack_rule_for_a_user(run: Run) -> None:
    async with notify_server() as app:
        out = await run.ok(
            "add",
            *as_admin(app),
            "--owner",
            "alice",
            "--event",
            "job_pending_long",
            "--pending-minutes",
            "30",
            "--slack",
            "--disabled",
            "--json",
        )
        rule = json.loads(out)["rule"]
        assert rule["owner"] == "alice" and rule["enabled"] is False
        assert rule["destination"] == {"kind": "slack", "target": "default"}
        assert rule["pending_minutes"] == 30
        # Alice sees the rule the admin made for her.
        rows = table(await run.ok("rules", *as_user(app)))
        assert rows[1][:5] == [rule["id"], "no", "alice", "job_pending_long", "slack:default"]
        # The admin sees it with --owner, in both formats.
        listed = json.loads(await run.ok("rules", *as_admin(app), "--owner", "alice", "--json"))
        assert [r["id"] for r in listed["rules"]] == [rule["id"]]


async def test_a_user_cannot_see_or_change_another_users_rule(run: Run) -> None:
    async with notify_server() as app:
        await run.ok(
            "add", *as_admin(app), "--owner", "bob", "--event", "job_failed", "--email",
            "--id", "bobs-rule",
        )  # fmt: skip
        alice = as_user(app, "alice")
        for action in ("show", "disable", "delete"):
            status, out, err = await run(action, "bobs-rule", *alice)
            assert status == EXIT_ANSWERED and out == "", (action, err)
            assert err.startswith("slurmcast notify: ") and "Traceback" not in err
        status, out, err = await run("rules", *alice)
        assert "bobs-rule" not in out
        # Nothing changed for bob.
        status, body = await server_answer(app, "GET", "/notify/rules/bobs-rule", "bob")
        assert status == 200 and body["rule"]["enabled"] is True


async def test_an_unknown_rule_prints_the_servers_message(run: Run) -> None:
    async with notify_server() as app:
        status, body = await server_answer(app, "GET", "/notify/rules/no-such-rule", "alice")
        assert status == 404
        for action in ("show", "enable", "delete"):
            assert await run(action, "no-such-rule", *as_user(app)) == (
                EXIT_ANSWERED,
                "",
                error_line(body),
            )


async def test_an_id_is_one_path_segment(run: Run) -> None:
    async with notify_server() as app:
        await run.ok("add", *as_user(app), "--event", "job_failed", "--email", "--id", "kept")
        for odd in ("..", ".", "kept/..", "../rules", "kept?x=1", "%2e%2e"):
            status, out, _ = await run("delete", odd, *as_user(app))
            assert status == EXIT_ANSWERED and out == "", odd
        assert table(await run.ok("rules", *as_user(app)))[1][0] == "kept"


async def test_a_server_behind_a_path_prefix(run: Run) -> None:
    async with notify_server() as app:
        # No proxy here: the prefix reaching the server shows it was kept, not dropped.
        status, _, err = await run("config", *as_user(app)[2:], "--url", base(app) + "/gw/")
        assert status == EXIT_ANSWERED and "not_found" in err


async def test_a_rule_the_server_refuses(run: Run) -> None:
    async with notify_server() as app:
        # job_pending_long needs --pending-minutes: the server says so, the command repeats it.
        status, out, err = await run("add", *as_user(app), "--event", "job_pending_long", "--email")
        assert status == EXIT_ANSWERED and out == ""
        assert "pending_minutes" in err and err.count("\n") == 1
        # Alerts are for admins.
        status, out, err = await run("add", *as_user(app), "--event", "alert_firing", "--email")
        assert status == EXIT_ANSWERED and "admin" in err


async def test_config(run: Run) -> None:
    async with notify_server() as app:
        shown = pairs(await run.ok("config", *as_user(app)))
        assert set(shown["kinds"].split(", ")) == {"email", "slack"}
        assert shown["defaults"] == "email: yes, slack: yes, webhook: no"
        assert shown["your e-mail"] == "alice@example.edu"
        assert shown["admin"] == "no"
        _, expected = await server_answer(app, "GET", "/notify/config", "alice")
        assert json.loads(await run.ok("config", *as_user(app), "--json")) == expected
        assert pairs(await run.ok("config", *as_admin(app)))["admin"] == "yes"


# -- deliveries ---------------------------------------------------------------------------


async def stored_delivery(app: SlurmcastApp, owner: str = "alice", *, dead: bool = True) -> str:
    """A delivery that failed for good (or was delivered), made through the outbox.

    Stored a day ahead: the server's delivery worker only claims what is due, so it
    cannot take the delivery before the test has.
    """
    later = datetime.now(UTC) + timedelta(days=1)
    number = len((await app.notifications.outbox.list(limit=100)).items) + 1
    outbox = app.notifications.outbox
    note = Notification(
        id=f"notif-{owner}-{number}",
        type=NotificationType.JOB_FAILED,
        title="Job Failed",
        message="Job #42 (train) failed with exit code 3",
        severity=Severity.ERROR,
        created_at=later,
        user=owner,
        details={"job_id": "42", "exit_code": 3},
    )
    delivery = NewDelivery(
        note.id,
        owner,
        "rule-1",
        DestinationKind.EMAIL,
        f"{owner}@example.edu",
        {"subject": "Job 42 failed"},
        id=f"dlv-{owner}-{number}",
    )
    await outbox.add_with_notification([note], [delivery], later)
    claimed = await outbox.claim("test-instance", later, 30.0, 10)
    assert [d.id for d in claimed] == [delivery.id]
    delivery_id = delivery.id or ""
    if dead:
        assert await outbox.failed(delivery_id, "550 mailbox unavailable", None, later)
    else:
        assert await outbox.delivered(delivery_id, later)
    return delivery_id


async def test_deliveries_and_retry(run: Run) -> None:
    async with notify_server() as app:
        sent = await stored_delivery(app, dead=False)
        dead = await stored_delivery(app)
        me = as_user(app)
        rows = table(await run.ok("deliveries", *me))
        assert rows[0] == [
            "ID", "STATE", "ATTEMPTS", "OWNER", "RULE", "DESTINATION", "CREATED", "LAST ERROR",
        ]  # fmt: skip
        assert rows[1][:6] == [dead, "dead", "1", "alice", "rule-1", "email:alice@example.edu"]
        assert rows[1][7] == "550 mailbox unavailable"
        assert rows[2][:3] == [sent, "delivered", "1"] and rows[2][7] == "-"

        listed = json.loads(await run.ok("deliveries", *me, "--state", "dead", "--json"))
        _, expected = await server_answer(app, "GET", "/notify/deliveries?state=dead", "alice")
        assert listed == expected and [d["id"] for d in listed["deliveries"]] == [dead]
        status, out, err = await run("deliveries", *me, "--state", "pending", "--limit", "5")
        assert (status, out, err) == (0, "", "slurmcast notify: no deliveries\n")
        # Bob sees none of alice's, and cannot retry them.
        status, out, err = await run("deliveries", *as_user(app, "bob"))
        assert dead not in out
        status, out, err = await run("retry", dead, *as_user(app, "bob"))
        assert status == EXIT_ANSWERED and out == ""

        shown = pairs(await run.ok("delivery", dead, *me))
        assert shown["state"] == "dead" and shown["last error"] == "550 mailbox unavailable"
        assert shown["destination"] == "email:alice@example.edu"

        # What the worker then does with it is its business; the answer says pending.
        assert await run.ok("retry", dead, *me) == f"delivery {dead} is pending again\n"

        # Only a dead delivery is retried: the server refuses (409) and the command says why.
        status, body = await http_json(
            app,
            "POST",
            f"/notify/deliveries/{sent}/retry",
            headers=auth_headers("alice"),
            check_schema=False,
        )
        assert status == 409
        assert await run("retry", sent, *me) == (EXIT_ANSWERED, "", error_line(body))


async def test_deliveries_pages(run: Run) -> None:
    async with notify_server() as app:
        made = {await stored_delivery(app, "alice"), await stored_delivery(app, "carol")}
        status, out, err = await run("deliveries", *as_admin(app), "--limit", "1")
        assert status == 0 and len(table(out)) == 2
        assert err.startswith("slurmcast notify: more: add --before ")
        cursor = err.split("--before ", 1)[1].strip()
        status, rest, err = await run(
            "deliveries", *as_admin(app), "--limit", "1", "--before", cursor
        )
        assert (status, err) == (0, "")
        assert {table(out)[1][0], table(rest)[1][0]} == made


# -- errors --------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_server_exits_3(run: Run) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    status, out, err = await run("rules", "--url", url, "--token", "secret-token-value")
    assert status == EXIT_UNREACHABLE and out == "" and "secret-token-value" not in err
    assert err == f"slurmcast notify: cannot reach {url}: Connection refused\n"


async def test_a_server_that_does_not_answer_exits_3(run: Run) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        # Accepted by the kernel, never answered: only the timeout ends the wait.
        status, _, err = await run("config", "--url", url, "--timeout", "0.2")
    assert status == EXIT_UNREACHABLE
    assert err == f"slurmcast notify: {url} did not answer within 0.2 s\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "--event", "job_failed", "--email", "--min-run", "ten minutes"], "--min-run"),
        (["add", "--event", "job_failed", "--email", "--min-run", "10x"], "expected a duration"),
        (["add", "--event", "job_failed"], "one of the arguments --email --slack --webhook"),
        (["add", "--event", "job_failed", "--email", "--slack"], "not allowed with"),
        (["add", "--email"], "--event"),
        (["add", "--event", "job_failed", "--email", "--pending-minutes", "0"], "positive"),
        (["deliveries", "--state", "lost"], "invalid choice"),
        (["deliveries", "--limit", "-3"], "--limit"),
        (["deliveries", "--limit", "²"], "--limit"),
        (["rules", "--timeout", "nan"], "--timeout"),
        (["show"], "ID"),
        (["frobnicate"], "invalid choice"),
    ],
)
async def test_usage_errors_exit_2(run: Run, argv: list[str], message: str) -> None:
    status, out, err = await run(*argv)
    assert status == EXIT_USAGE and out == ""
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "ws://127.0.0.1:5011/"], "not the WebSocket URL"),
        (["--url", "127.0.0.1:5012"], "--url: expected http://HOST:PORT"),
        (["--api-key", "k", "--token", "t"], "give only one of --api-key, --token"),
        (["--token-file", "/nonexistent/token"], "--token-file: cannot read /nonexistent/token"),
        (["--token", "bad\ntoken"], "the token has a control or non-ASCII character"),
    ],
)
async def test_arguments_checked_before_any_request(
    run: Run, argv: list[str], message: str
) -> None:
    status, out, err = await run("rules", *argv)
    assert status == EXIT_USAGE and out == ""
    assert err.startswith("slurmcast notify: ") and message in err
    assert "bad\ntoken" not in err


async def test_a_url_with_a_password_is_never_printed(run: Run) -> None:
    url = f"http://admin:hunter2@127.0.0.1:{closed_port()}"
    status, _, err = await run("rules", "--url", url)
    assert status == EXIT_UNREACHABLE and "hunter2" not in err and "admin" not in err


async def test_credentials_from_the_environment_and_a_file(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with notify_server() as app:
        monkeypatch.setenv("SLURMCAST_URL", base(app))
        monkeypatch.setenv("SLURMCAST_TOKEN", hs256("alice"))
        assert "alice@example.edu" in await run.ok("config")
        # The API key beats the token in the environment ...
        monkeypatch.setenv("SLURMCAST_API_KEY", API_KEY)
        assert json.loads(await run.ok("config", "--json"))["admin"] is True
        # ... and a flag beats both.
        token_file = tmp_path / "token"
        token_file.write_text(hs256("bob") + "\n")
        config = json.loads(await run.ok("config", "--json", "--token-file", str(token_file)))
        assert config["admin"] is False and config["email"] == "bob@example.edu"
        token_file.write_text("")
        status, _, err = await run("config", "--token-file", str(token_file))
        assert status == EXIT_USAGE and "is empty" in err


async def test_missing_or_refused_credentials(run: Run) -> None:
    async with notify_server() as app:
        status, _, err = await run("rules", "--url", base(app))
        assert status == EXIT_ANSWERED
        assert err.splitlines()[-1].startswith("slurmcast notify: give --api-key, --token")
        wrong = "wrong-key-do-not-print"
        status, _, err = await run("rules", "--url", base(app), "--api-key", wrong)
        assert status == EXIT_ANSWERED and wrong not in err and "give --api-key" not in err
        expired = hs256("alice", ttl=-3600)
        status, _, err = await run("rules", "--url", base(app), "--token", expired)
        assert status == EXIT_ANSWERED and expired not in err


async def test_a_server_without_notification_delivery(run: Run) -> None:
    async with running_server(**QUIET) as app:
        status, _, err = await run("rules", "--url", base(app))
        assert status == EXIT_ANSWERED
        assert "notification delivery is not configured" in err


async def test_without_auth_an_owner_is_needed_to_add(run: Run) -> None:
    async with running_server(**QUIET, sinks=SINKS) as app:
        url = ["--url", base(app)]
        status, out, err = await run("add", *url, "--event", "job_failed", "--email")
        assert status == EXIT_ANSWERED and "owner" in err
        out = await run.ok("add", *url, "--event", "job_failed", "--email", "--owner", "dave")
        assert pairs(out)["owner"] == "dave"


# -- as a process ---------------------------------------------------------------------------


async def command(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(SLURMCAST),
        "notify",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(WAIT):
        out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_as_a_real_process() -> None:
    async with notify_server() as app:
        token = hs256("alice")
        env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
        env.update(SLURMCAST_URL=base(app), SLURMCAST_TOKEN=token)
        printed: list[str] = []

        async def notify(*argv: str) -> tuple[int, str, str]:
            status, out, err = await command(*argv, env=env)
            printed.extend((out, err))
            return status, out, err

        status, out, err = await notify("add", "--event", "job_completed", "--slack", "--id", "p1")
        assert (status, err) == (0, ""), err
        assert out.startswith("added rule p1\n")
        status, out, err = await notify("rules", "--json")
        assert status == 0 and [r["id"] for r in json.loads(out)["rules"]] == ["p1"]
        # No webhook sink on this server: an answered error, in one line.
        status, out, err = await notify("add", "--event", "job_completed", "--webhook")
        assert status == EXIT_ANSWERED and out == "" and err.count("\n") == 1
        status, out, err = await notify("show", "nope")
        assert status == EXIT_ANSWERED and err.startswith("slurmcast notify: ")
        status, out, err = await notify("rules", "--min-run", "5m")
        assert status == EXIT_USAGE and "unrecognized arguments" in err
        status, out, err = await notify("--help")
        assert status == 0 and "3  the server could not be reached" in out
        assert not any(token in text or "Traceback" in text for text in printed)


# -- the pure parts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("0", 0),
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        (" 2H ", 7200),
        ("1d2h3m4s", 93784),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "1.5h", "-5", "10x", "1h 30m", "h1", "10mm", "²", "5²m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [1, 59, 60, 90, 3600, 5400, 86400, 93784])
def test_durations_read_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("kind", "target", "shown"),
    [
        ("slack", "https://hooks.slack.com/services/T0/B0/SECRET", "https://hooks.slack.com/…"),
        (
            "webhook",
            "https://u:pw@hooks.example.edu:8443/x?k=1",
            "https://hooks.example.edu:8443/…",
        ),
        ("webhook", "https://hooks.example.edu", "https://hooks.example.edu"),
        ("slack", "default", "default"),
        ("email", "alice@example.edu", "alice@example.edu"),
    ],
)
def test_urls_are_shown_without_their_secrets(kind: str, target: str, shown: str) -> None:
    assert shown_target(kind, target) == shown
