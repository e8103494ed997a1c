"""docs/notifications.md says what the code does: its TOML examples load as a config file, the
HTTP paths it names are the API's, its ``slurmcast notify`` commands parse, its rule bodies are
rules a user may save, its message examples are what the renderer makes, its key tables name
every ``[sinks]`` key, and its receiver code agrees with ``signing.verify``."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slurmcast.cli import build_parser
from slurmcast.config import Settings, load_settings
from slurmcast.core.notify.messages import render
from slurmcast.core.notify.retry import ceiling
from slurmcast.core.notify.rules import ALERT_EVENTS, NotifyEvent, parse_rule
from slurmcast.core.notify.signing import sign, verify
from slurmcast.core.notify.ssrf import UrlPolicy
from slurmcast.sinks import config as sinks_config
from slurmcast.sinks.config import SinksConfig, parse_sinks

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "notifications.md"
CLIENT_DOC = ROOT / "docs" / "client.md"
OPENAPI = ROOT / "src" / "slurmcast" / "specs" / "openapi.json"
#: Stand-ins for the secrets the examples name: what a file or variable of each kind holds.
SECRET = "doc-secret-0123456789abcdef"
HOOK_URL = "https://hooks.example.com/services/T0/B0/doc"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` ("" for plain ones), in order."""
    return [body for lang, body in _FENCE.findall(text) if lang == language]


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


# -- the TOML examples ------------------------------------------------------------------


def _secret_value(key: str) -> str:
    # A Slack/Mattermost URL file or variable holds a URL, which the policy then checks.
    return HOOK_URL if key.startswith("default_url") else SECRET


def load_example(block: str, directory: Path, name: str) -> Settings:
    """``block`` as a config file, its secret files and variables made up; the settings."""
    environ: dict[str, str] = {}
    text = block
    for key, path in re.findall(r'^(\w+_file)\s*=\s*"(/[^"]+)"', block, re.MULTILINE):
        made = directory / f"{name}-{Path(path).name}"
        made.write_text(_secret_value(key) + "\n", encoding="utf-8")
        text = text.replace(f'"{path}"', json.dumps(str(made)))
    for key, variable in re.findall(r'^(\w+_env)\s*=\s*"(\w+)"', block, re.MULTILINE):
        environ[variable] = _secret_value(key)
    config = directory / f"{name}.toml"
    config.write_text(text, encoding="utf-8")
    return load_settings(environ=environ, config_path=config)


def test_the_toml_examples_load_as_config_files(tmp_path: Path) -> None:
    examples = blocks(doc(), "toml")
    assert len(examples) >= 5
    for number, block in enumerate(examples):
        settings = load_example(block, tmp_path, f"example{number}")
        assert settings.sinks is not None, block
    # The first is the complete one: every destination, each with a site default.
    complete = load_example(examples[0], tmp_path, "complete").sinks
    assert isinstance(complete, SinksConfig)
    assert complete.kinds == {"email", "slack", "webhook"}
    assert complete.defaults() == {"email": True, "slack": True, "webhook": True}
    assert complete.email is not None and complete.email.password is not None
    assert complete.address_template is not None


def test_the_examples_never_hold_a_secret_inline() -> None:
    for block in blocks(doc(), "toml"):
        sinks = tomllib.loads(block)["sinks"]
        assert "password" not in sinks.get("email", {}), block
        assert "default_url" not in sinks.get("slack", {}), block
        assert "secret" not in sinks.get("webhook", {}), block


def _key_tables(text: str) -> dict[str, tuple[set[str], dict[str, str]]]:
    """The doc's key tables: by table name, the keys named and each key's default column."""
    tables: dict[str, tuple[set[str], dict[str, str]]] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        header = re.match(r"\| `\[(sinks(?:\.\w+)?)\]` key \|", line)
        if header is None:
            continue
        keys: set[str] = set()
        defaults: dict[str, str] = {}
        for row in lines[index + 2 :]:
            if not row.startswith("|"):
                break
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            named = re.findall(r"`(\w+)`", cells[0])
            keys.update(named)
            for key in named:
                defaults[key] = cells[1].strip("`")
        tables[header.group(1)] = (keys, defaults)
    return tables


def test_the_key_tables_name_every_key_and_its_default() -> None:
    tables = _key_tables(doc())
    subtables = {"email", "http", "slack", "webhook"}
    assert tables["sinks"][0] == sinks_config._TOP - subtables
    assert tables["sinks.email"][0] == sinks_config._EMAIL
    assert tables["sinks.http"][0] == sinks_config._HTTP
    # The slack and webhook tables are described in prose and examples: every key shows.
    text = doc()
    for key in sinks_config._SLACK | sinks_config._WEBHOOK:
        assert f"`{key}`" in text or f"{key} =" in text, key

    config = parse_sinks({}, "doc")
    actual = {
        "max_attempts": config.retry.max_attempts,
        "retry_base": config.retry.base_s,
        "retry_cap": config.retry.cap_s,
        "rate_limit": config.rate_per_minute,
        "rate_burst": config.rate_burst,
        "poll_interval": config.poll_interval,
        "lease": config.lease_s,
    }
    documented = tables["sinks"][1]
    assert {key: float(documented[key]) for key in actual} == actual
    http = tables["sinks.http"][1]
    assert http["allow_http"] == str(config.url_policy.allow_http).lower()
    assert http["allowed_networks"] == "[]" and not config.url_policy.allowed_networks
    assert float(http["timeout"]) == config.http.timeout_s
    assert float(http["connect_timeout"]) == config.http.connect_timeout_s
    email = tables["sinks.email"][1]
    assert (email["tls"], email["address_claim"], float(email["timeout"])) == (
        "starttls",
        "email",
        30.0,
    )


def test_the_retry_schedule_is_the_policys() -> None:
    policy = parse_sinks({}, "doc").retry
    ceilings = [ceiling(attempt, policy) for attempt in range(1, policy.max_attempts)]
    assert ceilings == [30, 60, 120, 240, 480, 960, 1920]
    assert "30 s, 1, 2, 4, 8, 16 and 32 minutes between the 8 attempts" in " ".join(doc().split())
    assert round(sum(ceilings) / 60) == 64


# -- the HTTP paths ---------------------------------------------------------------------


def _openapi_paths() -> dict[str, set[str]]:
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    return {path: {method.upper() for method in item} for path, item in document["paths"].items()}


def _template(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def mentioned_paths(text: str) -> set[tuple[str | None, str]]:
    """(method or None, path without its query) of every API path the text names."""
    methods = "|".join(METHODS)
    found: set[tuple[str | None, str]] = set()
    for method, path in re.findall(rf"\b({methods}) (/[^\s`|)\"']*)", text):
        found.add((method, path))
    for method, path in re.findall(rf"-X ({methods}) localhost:5012(/[^\s`'\"]*)", text):
        found.add((method, path))
    for path in re.findall(r"localhost:5012(/[^\s`'\"]*)", text):
        found.add((None, path))
    for path in re.findall(r"`(/notify/[^`\s]*)`", text):  # not "the `/notify` API"
        found.add((None, path))
    return {(method, path.split("?", 1)[0].rstrip(".,;:")) for method, path in found}


def _route(path: str, routes: dict[str, set[str]]) -> str | None:
    if path in routes:
        return path
    matching = [route for route in routes if _template(route).fullmatch(path)]
    return matching[0] if matching else None


def test_every_http_path_in_the_doc_is_in_the_openapi_document() -> None:
    routes = _openapi_paths()
    mentioned = mentioned_paths(doc())
    assert len(mentioned) >= 10
    for method, path in sorted(mentioned, key=lambda m: (m[1], m[0] or "")):
        route = _route(path, routes)
        assert route is not None, f"{path} is not in openapi.json"
        if method is not None:
            assert method in routes[route], f"{method} {path}: openapi.json has {routes[route]}"


def test_every_notify_operation_is_documented() -> None:
    mentioned = {(m, p) for m, p in mentioned_paths(doc()) if m is not None}
    for route, methods in _openapi_paths().items():
        if not route.startswith("/notify"):
            continue
        for method in methods:
            assert any(m == method and _template(route).fullmatch(p) for m, p in mentioned), (
                f"{method} {route} is not in docs/notifications.md"
            )


# -- the command line -------------------------------------------------------------------


def _notify_actions(parser: argparse.ArgumentParser) -> set[str]:
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    notify = commands.choices["notify"]
    actions = next(a for a in notify._actions if isinstance(a, argparse._SubParsersAction))
    return set(actions.choices)


def command_lines(text: str) -> list[str]:
    """Every ``slurmcast notify`` command written out: in code blocks (with or without a
    ``$`` prompt, continuation lines joined) and inline; usage synopses left out."""
    lines: list[str] = []
    for _, body in _FENCE.findall(text):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("slurmcast notify") and "ACTION" not in line:
                lines.append(line)
    lines += re.findall(r"`(slurmcast notify [^`]*)`", text)
    return lines


def test_every_notify_sub_command_named_exists() -> None:
    actions = _notify_actions(build_parser())
    named = set(re.findall(r"slurmcast notify ([a-z_-]+)", doc()))
    assert named, "no slurmcast notify command in the doc"
    assert named <= actions, f"not sub-commands of slurmcast notify: {named - actions}"
    # The client's reference lists every one.
    client = CLIENT_DOC.read_text(encoding="utf-8")
    section = client[client.index("## `slurmcast notify`") :]
    listed = set(re.findall(r"^\| `([a-z]+)[ `]", section, re.MULTILINE))
    listed |= set(re.findall(r"`(show|enable|disable|delete) ID`", section))
    assert listed == actions


@pytest.mark.parametrize("path", [DOC, CLIENT_DOC], ids=lambda p: p.name)
def test_every_notify_command_written_out_parses(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    lines = command_lines(path.read_text(encoding="utf-8"))
    assert lines
    for line in lines:
        argv = shlex.split(line, comments=True)
        try:
            args = parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{line!r} does not parse: {capsys.readouterr().err.strip()}")
        assert (args.command, args.action) == ("notify", argv[2]), line


# -- rules and messages -----------------------------------------------------------------


def json_blocks() -> list[dict[str, Any]]:
    parsed = []
    for block in blocks(doc(), "json"):
        value = json.loads(block)
        assert isinstance(value, dict), block
        parsed.append(value)
    return parsed


def test_the_rule_examples_are_rules_their_writer_may_save() -> None:
    rules = [b for b in json_blocks() if "events" in b and "destination" in b]
    assert len(rules) >= 4
    for body in rules:
        # As the API reads them: a body with an owner is an admin's, the others a user's.
        admin = "owner" in body
        rule = parse_rule(
            body,
            body.get("owner", "alice"),
            admin,
            own_address="alice@example.edu",
            url_policy=UrlPolicy(),
            rule_id=None if "id" in body else "rule-doc",
        )
        assert admin or not rule.events & ALERT_EVENTS


def test_the_events_table_names_every_event() -> None:
    rows = re.findall(r"^\| `((?:job|alert)_\w+)` \|", doc(), re.MULTILINE)
    assert sorted(rows) == sorted(event.value for event in NotifyEvent)


def test_the_message_examples_are_what_the_renderer_makes() -> None:
    objects = json_blocks()
    body = next(b for b in objects if "version" in b)
    slack = next(b for b in objects if "attachments" in b)
    job = dict(body["job"])
    job.pop("run_seconds")
    job["efficiency"] = {k: v for k, v in job["efficiency"].items() if k != "..."}
    made = render(
        NotifyEvent(body["event"]),
        job,
        now=datetime.fromisoformat(body["timestamp"]),
        delivery_id=body["delivery_id"],
    )
    expected = {**body, "job": {**body["job"], "efficiency": job["efficiency"]}}
    assert made.webhook_payload == expected
    assert made.slack_payload == slack
    mail = next(b for b in blocks(doc(), "") if b.startswith("Subject: "))
    assert mail == f"Subject: {made.subject}\n\n{made.text}\n"


# -- the receiver ------------------------------------------------------------------------


def receiver() -> dict[str, Any]:
    """The doc's Python blocks, run: ``verify_slurmcast`` and ``handle``."""
    namespace: dict[str, Any] = {}
    code = blocks(doc(), "python")
    assert len(code) == 2
    for block in code:
        exec(compile(block, str(DOC), "exec"), namespace)
    return namespace


class Pairs:
    """Headers as some frameworks give them: ``items()`` may repeat a name."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self._pairs = pairs

    def items(self) -> tuple[tuple[str, str], ...]:
        return self._pairs


def test_the_receiver_example_agrees_with_verify() -> None:
    verify_slurmcast = receiver()["verify_slurmcast"]
    secret = SECRET.encode()
    body = b'{"version":1,"event":"job_failed","delivery_id":"k"}'
    at = 1_796_531_946
    signed = sign(body, secret, at, delivery_id="k")
    timestamp, signature = signed["X-Slurmcast-Timestamp"], signed["X-Slurmcast-Signature"]
    other = sign(body, b"another secret", at)["X-Slurmcast-Signature"]

    def headers(ts: str = timestamp, sig: str = signature) -> dict[str, str]:
        return {"X-Slurmcast-Timestamp": ts, "X-Slurmcast-Signature": sig}

    cases: list[tuple[bytes, Any, bytes, float, bool]] = [
        (body, headers(), secret, at, True),
        (body, headers(), secret, at + 300, True),
        (body, headers(), secret, at - 300, True),
        (body, headers(), secret, at + 301, False),
        (body, headers(), secret, at - 301, False),
        (body, {k.lower(): v for k, v in headers().items()}, secret, at, True),
        (body + b" ", headers(), secret, at, False),
        (body, headers(), b"another secret", at, False),
        (body, headers(), b"", at, False),
        (body, headers(sig=f"{other},{signature}"), secret, at, True),
        (body, headers(sig=",".join([other] * 8 + [signature])), secret, at, False),
        (body, headers(sig=signature.replace("v1=", "v2=")), secret, at, False),
        (body, headers(sig=signature.upper()), secret, at, False),
        (body, headers(ts=f" {timestamp} "), secret, at, True),
        (body, headers(ts="0" + timestamp), secret, at, True),
        (body, headers(ts="\uff11" + timestamp[1:]), secret, at, False),  # a fullwidth 1
        (body, headers(ts=timestamp + "000"), secret, at, False),
        (body, {"X-Slurmcast-Timestamp": timestamp}, secret, at, False),
        (
            body,
            Pairs(
                ("X-Slurmcast-Timestamp", timestamp),
                ("x-slurmcast-timestamp", timestamp),
                ("X-Slurmcast-Signature", signature),
            ),
            secret,
            at,
            False,
        ),
    ]
    for number, (payload, given, key, now, accepted) in enumerate(cases):
        assert verify_slurmcast(payload, given, key, now=now) is accepted, number
        if not isinstance(given, Pairs):  # a Mapping cannot repeat a name
            assert verify(payload, given, key, datetime.fromtimestamp(now, UTC)) is accepted, number


def test_the_handler_example_acts_once_per_delivery() -> None:
    namespace = receiver()
    handle = namespace["handle"]
    secret = SECRET.encode()
    body = json.dumps({"version": 1, "event": "job_failed", "delivery_id": "k1"}).encode()
    headers = sign(body, secret, int(time.time()), delivery_id="k1")
    assert handle(body, headers, secret) == 200
    assert set(namespace["handled"]) == {"k1"}
    assert handle(body, headers, secret) == 200  # the repeat is acknowledged
    assert handle(body, headers, b"not the secret") == 401
