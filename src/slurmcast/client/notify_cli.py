"""``slurmcast notify``: notification rules and deliveries, through the HTTP API's ``/notify``.

One HTTP request per command. Results go to stdout, as aligned text columns or as the
server's own JSON (``--json``, for jq); errors go to stderr, one line, no traceback.

Exit status: 0 done; 1 the server answered with an error (its message is printed); 2 bad
arguments, as argparse does; 3 the server could not be reached or did not answer in time.

Credentials: ``--api-key`` (an admin) or ``--token``/``--token-file`` (a JWT), else
``$SLURMCAST_API_KEY``, else ``$SLURMCAST_TOKEN``; a flag beats the environment, and one
credential is sent, never both, so that a key left in the environment cannot turn a
user's ``--token`` into an admin's request. Neither is ever printed. Webhook and Slack URLs
are shown in text only as scheme and host: a Slack URL is a secret (``sinks/config.py``);
``--json`` shows what the server answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from slurmcast import __version__
from slurmcast.core.notify.rules import NotifyEvent

DEFAULT_URL = "http://127.0.0.1:5012"
DEFAULT_TIMEOUT = 30.0
PREFIX = "slurmcast notify: "

EXIT_OK = 0
#: The server answered, with an error.
EXIT_ANSWERED = 1
#: Bad arguments: argparse's own status.
EXIT_USAGE = 2
#: No answer: refused, unresolvable, TLS failure, timeout. Distinct from 1 so that a script
#: can retry this one and not the other.
EXIT_UNREACHABLE = 3

EVENTS = tuple(event.value for event in NotifyEvent)
STATES = ("pending", "delivering", "delivered", "dead")
KINDS = ("email", "slack", "webhook")
#: A destination given without its address or URL: the server's ``default`` target.
DEFAULT_TARGET = "default"
#: What aiohttp answers for a path no route matches: here, a server without ``[sinks]``.
_NO_ROUTE = ("not_found", "Not Found")
# ASCII digits only: str.isdigit() and \d accept characters int() refuses ("²").
_DIGITS = re.compile(r"[0-9]+")
_DURATION_PART = re.compile(r"([0-9]+)([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_LAST_ERROR_WIDTH = 60
_CREDENTIALS = (("--api-key", "api_key"), ("--token", "token"), ("--token-file", "token_file"))

EXIT_STATUS = """\
exit status:
  0  done
  1  the server answered with an error (its message is printed)
  2  bad arguments
  3  the server could not be reached, or did not answer within --timeout
"""
EPILOG = f"""\
server and credentials (each action takes them, after its name):
  --url URL            the HTTP API (env SLURMCAST_URL; default {DEFAULT_URL})
  --api-key KEY        the server's API key, for admins (env SLURMCAST_API_KEY)
  --token JWT          a token for --auth jwt servers (env SLURMCAST_TOKEN)
  --token-file FILE    ... read from a file (keeps it out of the process list)
  a flag beats the environment; $SLURMCAST_API_KEY beats $SLURMCAST_TOKEN

{EXIT_STATUS}"""


class UsageError(Exception):
    """Arguments argparse could not check: exit status 2."""


class Unreachable(Exception):
    """No answer from the server: exit status 3."""


class Answered(Exception):
    """The server answered with an error: exit status 1."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


# -- arguments ------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """Whole seconds from ``90``, ``90s``, ``10m``, ``2h``, ``1d`` or ``1h30m``.

    Raises:
        argparse.ArgumentTypeError: anything else (argparse makes it a usage error).
    """
    value = text.strip().lower()
    if _DIGITS.fullmatch(value):
        return int(value)
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90, 10m, 2h or 1h30m, got {text!r}"
        )
    return sum(int(number) * _UNITS[unit] for number, unit in parts)


def format_duration(seconds: int) -> str:
    """``5400`` -> ``1h30m``: the inverse of ``parse_duration``."""
    if seconds <= 0:
        return f"{seconds}s"
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _positive_int(text: str) -> int:
    if not _DIGITS.fullmatch(text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    # nan fails this comparison too.
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds, from 0 to 3600, got {text!r}")
    return value


def _listed(values: Sequence[str] | None) -> list[str]:
    """Repeated and comma-separated values, in order, once each: ``--event a,b --event a``."""
    seen: list[str] = []
    for value in values or ():
        for item in value.split(","):
            if (item := item.strip()) and item not in seen:
                seen.append(item)
    return seen


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("server and credentials")
    where.add_argument(
        "--url", default=None, help=f"the HTTP API (env SLURMCAST_URL; default {DEFAULT_URL})"
    )
    # One credential at most: resolve_target refuses two (a mutually exclusive group would
    # leave the group's help section when copied into each action).
    where.add_argument(
        "--api-key",
        dest="api_key",
        default=None,
        metavar="KEY",
        help="the server's API key, for admins (env SLURMCAST_API_KEY)",
    )
    where.add_argument("--token", default=None, metavar="JWT", help="a JWT (env SLURMCAST_TOKEN)")
    where.add_argument(
        "--token-file",
        dest="token_file",
        default=None,
        metavar="FILE",
        help="read the JWT from FILE (unlike --token, not seen in the process list)",
    )
    where.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up waiting for the server after this long (default {DEFAULT_TIMEOUT:g}; "
        "exit status 3)",
    )
    return common


def add_notify_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``notify`` command and its sub-commands, under ``slurmcast``'s ``commands``."""
    formatter = argparse.RawDescriptionHelpFormatter
    notify = commands.add_parser(
        "notify",
        help="manage notification rules (e-mail, Slack, webhooks) and their deliveries",
        description=(
            "Manage your notification rules and look at their deliveries, through the "
            "server's HTTP API. A user sees and changes only their own rules; an admin "
            "(API key or admin token) any, with --owner."
        ),
        epilog=EPILOG,
        formatter_class=formatter,
    )
    actions = notify.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = [_common_options()]

    def action(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        parser = actions.add_parser(
            name,
            help=help,
            description=description or help[0].upper() + help[1:] + ".",
            parents=common,
            epilog=EXIT_STATUS,
            formatter_class=formatter,
        )
        parser.add_argument(
            "--json", action="store_true", help="print the server's JSON answer as it is"
        )
        return parser

    rules = action("rules", "list notification rules")
    rules.add_argument("--owner", metavar="USER", help="only this user's (admins)")

    add = action(
        "add",
        "add a notification rule",
        "Add a rule: which events, about which of your jobs, go where. E-mail, Slack or "
        "webhook without an address or URL means the default: your own address, or the "
        "operator's configured Slack channel or webhook.",
    )
    add.add_argument(
        "--event",
        action="append",
        required=True,
        metavar="EVENT",
        help=f"an event to be told about, repeatable or comma-separated: {', '.join(EVENTS)} "
        "(alert events are for admins)",
    )
    where = add.add_mutually_exclusive_group(required=True)
    for kind, metavar, what in (
        ("email", "ADDR", "your own address"),
        ("slack", "URL", "the operator's Slack channel"),
        ("webhook", "URL", "the operator's webhook"),
    ):
        where.add_argument(
            f"--{kind}",
            nargs="?",
            const=DEFAULT_TARGET,
            default=None,
            metavar=metavar,
            help=f"send by {kind}; without {metavar}, to {what}",
        )
    add.add_argument(
        "--partition",
        action="append",
        metavar="P",
        help="only jobs in this partition (repeatable or comma-separated)",
    )
    add.add_argument(
        "--name-pattern", dest="name_pattern", metavar="GLOB", help="only jobs named like GLOB"
    )
    add.add_argument(
        "--min-run",
        dest="min_run",
        type=parse_duration,
        metavar="DURATION",
        help="only jobs that ran at least this long (90, 10m, 2h, 1h30m); for the end events",
    )
    add.add_argument(
        "--pending-minutes",
        dest="pending_minutes",
        type=_positive_int,
        metavar="N",
        help="with job_pending_long (and required by it): minutes a job waits before it counts",
    )
    add.add_argument("--id", dest="rule_id", metavar="ID", help="the rule's id (default: new)")
    add.add_argument("--owner", metavar="USER", help="whose rule (admins; required without auth)")
    add.add_argument("--disabled", action="store_true", help="store the rule switched off")

    for name, help in (
        ("show", "show one rule"),
        ("enable", "switch a rule on"),
        ("disable", "switch a rule off"),
        ("delete", "delete a rule"),
    ):
        action(name, help).add_argument("id", metavar="ID", help="the rule's id")

    deliveries = action("deliveries", "list deliveries, newest first")
    deliveries.add_argument("--state", choices=STATES, help="only deliveries in this state")
    deliveries.add_argument("--owner", metavar="USER", help="only this user's (admins)")
    deliveries.add_argument(
        "--limit", type=_positive_int, metavar="N", help="at most N (the server's default: 50)"
    )
    deliveries.add_argument(
        "--before", metavar="CURSOR", help="the next page: the cursor the previous one printed"
    )
    action("delivery", "show one delivery").add_argument(
        "id", metavar="ID", help="the delivery's id"
    )
    action("retry", "send a dead delivery again").add_argument(
        "id", metavar="ID", help="the delivery's id"
    )
    action("config", "show what this server can deliver, and who you are to it")


# -- the connection ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go, and the one credential they carry."""

    url: URL
    api_key: str | None = None
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"slurmcast-notify/{__version__}", "Accept": "application/json"}
        if self.api_key is not None:
            headers["X-API-Key"] = self.api_key
        elif self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    @property
    def shown(self) -> str:
        """The URL without any user or password in it."""
        return str(self.url.with_user(None))


def resolve_target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    """The URL and credential from the flags, else the environment.

    Raises:
        UsageError: not an http(s) URL, an unreadable or empty token file, a credential
            that cannot be a header.
    """
    text = args.url or environ.get("SLURMCAST_URL") or DEFAULT_URL
    try:
        url = URL(text)
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        hint = " (the HTTP API, not the WebSocket URL)" if url.scheme in ("ws", "wss") else ""
        shown = str(url.with_user(None)) if url.host else text.partition("@")[2] or text
        raise UsageError(f"--url: expected http://HOST:PORT or https://..., got {shown!r}{hint}")
    given = [flag for flag, value in _CREDENTIALS if getattr(args, value) is not None]
    if len(given) > 1:
        raise UsageError(f"give only one of {', '.join(given)}")
    api_key = args.api_key
    token = args.token
    if args.token_file is not None:
        try:
            with open(args.token_file, encoding="utf-8") as file:
                token = file.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise UsageError(f"--token-file: cannot read {args.token_file}: {reason}") from None
        if not token:
            raise UsageError(f"--token-file: {args.token_file} is empty")
    if api_key is None and token is None:
        api_key = environ.get("SLURMCAST_API_KEY") or None
        token = None if api_key is not None else environ.get("SLURMCAST_TOKEN") or None
    for name, value in (("the API key", api_key), ("the token", token)):
        # A header cannot hold them; aiohttp's own error would quote the value.
        if value is not None and (not value.isascii() or not value.isprintable()):
            raise UsageError(f"{name} has a control or non-ASCII character")
    return Target(url, api_key or None, token or None, args.timeout)


class Api:
    """One HTTP session to the server's ``/notify`` API."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(
            headers=self.target.headers(),
            timeout=aiohttp.ClientTimeout(total=self.target.timeout),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        method: str,
        *segments: str,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], str]:
        """``method /notify/<segments>``: the answer's JSON object and its text.

        Raises:
            Answered: a status other than 2xx, or an answer that is not a success.
            Unreachable: no answer.
        """
        assert self._session is not None, "use Api in an async with"
        # Each id is one path segment, whatever it holds: neither "a/b" nor ".." may reach
        # another route (quote() leaves dots alone, and ".." would be resolved away).
        path = "/".join(quote(s, safe="").replace(".", "%2E") for s in ("notify", *segments))
        base = self.target.url
        url = base.with_path(f"{base.raw_path.rstrip('/')}/{path}", encoded=True)
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._session.request(
                method, url, params=params, data=data, headers=headers
            ) as response:
                status, text = response.status, await response.text(errors="replace")
        except TimeoutError:
            raise Unreachable(
                f"{self.target.shown} did not answer within {self.target.timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise Unreachable(f"cannot reach {self.target.shown}: {_reason(exc)}") from None
        document = _json_object(text)
        if 200 <= status < 300 and document is not None and document.get("success") is not False:
            return document, text
        raise _error(status, document, text)


def _reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        if error.errno is not None and error.errno > 0:
            # asyncio's own text names the address, not the cause ("Connect call failed").
            return os.strerror(error.errno)
        if error.strerror:  # a resolver's error (negative codes): "Name or service not known"
            return error.strerror
    return str(exc) or type(exc).__name__


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _error(status: int, document: dict[str, Any] | None, text: str) -> Answered:
    """The error of an answer: ``{"code", "message"}``, flat or under ``"error"``."""
    if document is None:
        # A proxy's HTML page, or not a slurmcast server at all.
        snippet = " ".join(text.split())[:80]
        return Answered(status, f"http_{status}", f"not a slurmcast answer: {snippet!r}")
    nested = document.get("error")
    source = nested if isinstance(nested, dict) else document
    code = str(source.get("code") or f"http_{status}")
    message = str(source.get("message") or "the server gave no reason")
    return Answered(status, code, message)


# -- the commands -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    """What a command prints: ``text`` on stdout, ``note`` on stderr."""

    text: str
    note: str | None = None


Command = Callable[[argparse.Namespace, Api], Awaitable[Output]]


async def _rules(args: argparse.Namespace, api: Api) -> Output:
    params = {"owner": args.owner} if args.owner else None
    document, text = await api.call("GET", "rules", params=params)
    if args.json:
        return Output(text)
    rules = [r for r in document.get("rules") or () if isinstance(r, dict)]
    if not rules:
        return Output("", "no rules")
    rows = [
        [
            _text(rule.get("id")),
            "yes" if rule.get("enabled", True) else "no",
            _text(rule.get("owner")),
            ",".join(map(str, rule.get("events") or ())),
            _destination(rule.get("destination")),
            _filters(rule) or "-",
        ]
        for rule in rules
    ]
    return Output(_table(["ID", "ENABLED", "OWNER", "EVENTS", "DESTINATION", "FILTERS"], rows))


async def _add(args: argparse.Namespace, api: Api) -> Output:
    kind = next(k for k in KINDS if getattr(args, k) is not None)
    body: dict[str, Any] = {
        "events": _listed(args.event),
        "destination": {"kind": kind, "target": getattr(args, kind)},
    }
    if partitions := _listed(args.partition):
        body["partitions"] = partitions
    optional = {
        "id": args.rule_id,
        "name_pattern": args.name_pattern,
        "min_run_seconds": args.min_run,
        "pending_minutes": args.pending_minutes,
        "owner": args.owner,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if args.disabled:
        body["enabled"] = False
    document, text = await api.call("POST", "rules", body=body)
    if args.json:
        return Output(text)
    rule = _object(document.get("rule"))
    return Output(f"added rule {_text(rule.get('id'))}\n{_rule_details(rule)}")


async def _show(args: argparse.Namespace, api: Api) -> Output:
    document, text = await api.call("GET", "rules", args.id)
    return Output(text if args.json else _rule_details(_object(document.get("rule"))))


async def _enable(args: argparse.Namespace, api: Api) -> Output:
    return await _switch(args, api, True)


async def _disable(args: argparse.Namespace, api: Api) -> Output:
    return await _switch(args, api, False)


async def _switch(args: argparse.Namespace, api: Api, enabled: bool) -> Output:
    document, text = await api.call("PATCH", "rules", args.id, body={"enabled": enabled})
    if args.json:
        return Output(text)
    rule = _object(document.get("rule"))
    return Output(f"rule {_text(rule.get('id', args.id))} {'enabled' if enabled else 'disabled'}")


async def _delete(args: argparse.Namespace, api: Api) -> Output:
    document, text = await api.call("DELETE", "rules", args.id)
    return Output(text if args.json else f"deleted rule {_text(document.get('deleted', args.id))}")


async def _deliveries(args: argparse.Namespace, api: Api) -> Output:
    wanted = {"state": args.state, "owner": args.owner, "limit": args.limit, "before": args.before}
    params = {key: value for key, value in wanted.items() if value is not None}
    document, text = await api.call("GET", "deliveries", params=params)
    cursor = document.get("next_before")
    if args.json:
        return Output(text)
    more = f"more: add --before {cursor}" if isinstance(cursor, str) and cursor else None
    deliveries = [d for d in document.get("deliveries") or () if isinstance(d, dict)]
    if not deliveries:
        return Output("", "no deliveries")
    rows = [
        [
            _text(d.get("id")),
            _text(d.get("state")),
            _text(d.get("attempts")),
            _text(d.get("owner")),
            _text(d.get("rule_id")),
            _destination(d),
            _when(d.get("created_at")),
            _short(d.get("last_error")),
        ]
        for d in deliveries
    ]
    header = ["ID", "STATE", "ATTEMPTS", "OWNER", "RULE", "DESTINATION", "CREATED", "LAST ERROR"]
    return Output(_table(header, rows), more)


async def _delivery(args: argparse.Namespace, api: Api) -> Output:
    document, text = await api.call("GET", "deliveries", args.id)
    return Output(text if args.json else _delivery_details(_object(document.get("delivery"))))


async def _retry(args: argparse.Namespace, api: Api) -> Output:
    document, text = await api.call("POST", "deliveries", args.id, "retry")
    if args.json:
        return Output(text)
    delivery = _object(document.get("delivery"))
    state = _text(delivery.get("state", "pending"))
    return Output(f"delivery {_text(delivery.get('id', args.id))} is {state} again")


async def _config(args: argparse.Namespace, api: Api) -> Output:
    document, text = await api.call("GET", "config")
    if args.json:
        return Output(text)
    defaults = _object(document.get("defaults"))
    lines = [
        ("kinds", ", ".join(map(str, document.get("kinds") or ())) or "none configured"),
        (
            "defaults",
            ", ".join(f"{k}: {'yes' if defaults.get(k) else 'no'}" for k in KINDS),
        ),
        ("events", ", ".join(map(str, document.get("events") or ()))),
        ("your e-mail", _text(document.get("email"))),
        ("admin", "yes" if document.get("admin") else "no"),
    ]
    return Output(_pairs(lines))


COMMANDS: dict[str, Command] = {
    "rules": _rules,
    "add": _add,
    "show": _show,
    "enable": _enable,
    "disable": _disable,
    "delete": _delete,
    "deliveries": _deliveries,
    "delivery": _delivery,
    "retry": _retry,
    "config": _config,
}


# -- formatting ------------------------------------------------------------------------


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    """One cell: never empty (the columns would shift), never more than one line."""
    if value is None or value == "":
        return "-"
    return " ".join(str(value).split()) or "-"


def _short(value: object) -> str:
    text = _text(value)
    return text if len(text) <= _LAST_ERROR_WIDTH else text[: _LAST_ERROR_WIDTH - 1] + "…"


def _when(value: object) -> str:
    """``2025-03-01T10:00:00.123456Z`` -> ``2025-03-01T10:00:00Z``: a table needs no fraction."""
    text = _text(value)
    head, dot, tail = text.partition(".")
    return head + "Z" if dot and tail.endswith("Z") else text


def shown_target(kind: object, target: object) -> str:
    """A destination's target fit to print: a URL as its scheme and host only.

    A Slack URL's path is its secret, and a webhook's may be; userinfo is a password.
    """
    text = _text(target)
    if kind in ("slack", "webhook") and "://" in text:
        try:
            url = URL(text)
        except ValueError:
            return "<url>"
        if url.host:
            shown = str(URL.build(scheme=url.scheme, host=url.host, port=url.explicit_port))
            return shown.rstrip("/") + ("/…" if url.path not in ("", "/") or url.query else "")
        return "<url>"
    return text


def _destination(value: object) -> str:
    item = _object(value)
    kind = item.get("kind")
    return f"{_text(kind)}:{shown_target(kind, item.get('target'))}"


def _filters(rule: Mapping[str, Any]) -> str:
    parts = []
    if partitions := rule.get("partitions"):
        parts.append("partition=" + ",".join(map(str, partitions)))
    if (pattern := rule.get("name_pattern")) is not None:
        parts.append(f"name={_text(pattern)}")
    if isinstance(seconds := rule.get("min_run_seconds"), int):
        parts.append(f"min-run={format_duration(seconds)}")
    if isinstance(minutes := rule.get("pending_minutes"), int):
        parts.append(f"pending={minutes}m")
    return " ".join(parts)


def _rule_details(rule: Mapping[str, Any]) -> str:
    seconds = rule.get("min_run_seconds")
    minutes = rule.get("pending_minutes")
    return _pairs(
        [
            ("id", _text(rule.get("id"))),
            ("owner", _text(rule.get("owner"))),
            ("enabled", "yes" if rule.get("enabled", True) else "no"),
            ("events", ", ".join(map(str, rule.get("events") or ())) or "-"),
            ("destination", _destination(rule.get("destination"))),
            ("partitions", ", ".join(map(str, rule.get("partitions") or ())) or "any"),
            ("name pattern", _text(rule.get("name_pattern") or "any")),
            ("min run", format_duration(seconds) if isinstance(seconds, int) else "-"),
            ("pending minutes", _text(minutes)),
            ("created", _when(rule.get("created_at"))),
            ("updated", _when(rule.get("updated_at"))),
        ]
    )


def _delivery_details(delivery: Mapping[str, Any]) -> str:
    keys = ("id", "state", "attempts", "owner", "rule_id", "notification_id")
    times = ("created_at", "next_attempt_at", "delivered_at", "claimed_until")
    return _pairs(
        [(key.replace("_", " "), _text(delivery.get(key))) for key in keys]
        + [("destination", _destination(delivery))]
        + [(key.replace("_", " "), _when(delivery.get(key))) for key in times]
        + [("claimed by", _text(delivery.get("claimed_by")))]
        + [("last error", _text(delivery.get("last_error")))]
    )


def _pairs(lines: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


# -- running ------------------------------------------------------------------------


def _hint(exc: Answered, target: Target) -> str | None:
    """A word on what to do, for the errors with an obvious next step."""
    if (exc.code, exc.message) == _NO_ROUTE:
        return (
            "this server has no /notify API: notification delivery is not configured "
            "(a [sinks] table in its config file), or the server is older than this command"
        )
    if exc.status == 401 and target.api_key is None and target.token is None:
        return (
            "give --api-key, --token or --token-file (or set SLURMCAST_API_KEY or SLURMCAST_TOKEN)"
        )
    return None


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text + "\n")
        stream.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): the rest is not wanted; keep Python's final
        # flush of stdout from failing again at exit.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


async def run(args: argparse.Namespace, target: Target) -> Output:
    """Send the command's request; raises ``Answered`` or ``Unreachable``."""
    async with Api(target) as api:
        return await COMMANDS[args.action](args, api)


def run_notify(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """``slurmcast notify ...`` once parsed; returns the exit status."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        target = resolve_target(args, os.environ if environ is None else environ)
        output = asyncio.run(run(args, target))
    except UsageError as exc:
        _write(err, f"{PREFIX}{exc}")
        return EXIT_USAGE
    except Unreachable as exc:
        _write(err, f"{PREFIX}{exc}")
        return EXIT_UNREACHABLE
    except Answered as exc:
        _write(err, f"{PREFIX}{exc}")
        if (hint := _hint(exc, target)) is not None:
            _write(err, f"{PREFIX}{hint}")
        return EXIT_ANSWERED
    except KeyboardInterrupt:
        return 130
    if output.text:
        _write(out, output.text)
    if output.note is not None:
        _write(err, f"{PREFIX}{output.note}")
    return EXIT_OK
