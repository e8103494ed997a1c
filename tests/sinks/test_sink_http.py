"""The Slack and webhook sinks against a real local HTTP receiver: signatures verified by the
receiver, the Slack payload's shape, the SSRF defence (checked and pinned addresses, no
redirects), bounded response bodies and how each failure is classified."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web

from slurmcast.core.notify.messages import render
from slurmcast.core.notify.rules import NotifyEvent
from slurmcast.core.notify.signing import DELIVERY_HEADER, TIMESTAMP_HEADER, verify
from slurmcast.core.notify.ssrf import IPAddress, UrlPolicy, parse_networks
from slurmcast.sinks.base import (
    Outgoing,
    PermanentFailure,
    Secret,
    TemporaryFailure,
)
from slurmcast.sinks.posting import HttpSinkSettings, Resolve, parse_retry_after
from slurmcast.sinks.slack import SlackSink
from slurmcast.sinks.webhook import WebhookSink

from support.notify_rules import FAILED_JOB as JOB
from support.receivers import served

NOW = datetime(2026, 11, 28, 6, 25, 20, tzinfo=UTC)
SECRET = "whsec-test-0123456789"
KEY = "9d2e" * 16
HUGE = 1 << 30
LOOPBACK_ALLOWED = UrlPolicy(allow_http=True, allowed_networks=parse_networks(["127.0.0.0/8"]))


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    seen: list[Seen] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    verified: list[bool] = field(default_factory=list)
    huge_written: list[int] = field(default_factory=list)
    huge_done: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


def build_app(receiver: Receiver) -> web.Application:
    async def record(request: web.Request) -> bytes:
        body = await request.read()
        receiver.seen.append(Seen(request.path, dict(request.headers), body))
        receiver.arrived.set()
        return body

    async def hook(request: web.Request) -> web.Response:
        body = await record(request)
        ok = verify(body, request.headers, SECRET.encode(), NOW)
        receiver.verified.append(ok)
        return web.Response(status=200 if ok else 401, text="ok" if ok else "bad signature")

    async def slack(request: web.Request) -> web.Response:
        body = await record(request)
        payload = orjson.loads(body)
        # Slack's incoming-webhook shape: text, optional attachments with color and text.
        valid = (
            request.content_type == "application/json"
            and isinstance(payload.get("text"), str)
            and all(
                isinstance(a.get("text"), str) and isinstance(a.get("color"), str)
                for a in payload.get("attachments", [])
            )
        )
        return web.Response(status=200 if valid else 400, text="ok" if valid else "invalid_payload")

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=302, headers={"Location": "/hook"})

    async def huge(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse(status=200)
        response.content_length = HUGE
        await response.prepare(request)
        chunk = b"x" * 65536
        written = 0
        try:
            while written < HUGE:
                await response.write(chunk)
                written += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            receiver.huge_written.append(written)
            receiver.huge_done.set()
        return response

    async def status(request: web.Request) -> web.Response:
        await record(request)
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.Response(
            status=int(request.match_info["code"]), text="went wrong", headers=headers
        )

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await receiver.release.wait()
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/slack", slack)
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/huge", huge)
    app.router.add_post("/status/{code}", status)
    app.router.add_post("/slow", slow)
    return app


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(port=0)
    async with served(build_app(found)) as found.port:
        try:
            yield found
        finally:
            found.release.set()


def outgoing(target: str, key: str = KEY) -> Outgoing:
    message = render(NotifyEvent.JOB_FAILED, JOB, now=NOW)
    return Outgoing(delivery_id="dlv-1", idempotency_key=key, target=target, message=message)


async def _no_dns(host: str, port: int) -> list[IPAddress]:
    raise AssertionError(f"no name should be resolved here ({host})")


def webhook(
    policy: UrlPolicy = LOOPBACK_ALLOWED, resolve: Resolve = _no_dns, **overrides: Any
) -> WebhookSink:
    return WebhookSink(
        HttpSinkSettings(policy=policy, **overrides),
        Secret(SECRET),
        clock=lambda: NOW,
        resolve=resolve,
    )


def slack(policy: UrlPolicy = LOOPBACK_ALLOWED, **overrides: Any) -> SlackSink:
    return SlackSink(HttpSinkSettings(policy=policy, **overrides), clock=lambda: NOW)


# -- deliveries that arrive ------------------------------------------------------------


async def test_webhook_is_signed_and_verified_by_the_receiver(receiver: Receiver) -> None:
    result = await webhook().send(outgoing(receiver.url("/hook")))

    assert result.status == 200 and result.body == b"ok"
    assert receiver.verified == [True]
    [seen] = receiver.seen
    assert seen.headers[DELIVERY_HEADER] == KEY
    assert seen.headers[TIMESTAMP_HEADER] == str(int(NOW.timestamp()))
    assert seen.headers["Content-Type"] == "application/json"
    payload = orjson.loads(seen.body)
    assert payload["delivery_id"] == KEY
    assert payload["event"] == "job_failed"
    assert payload["job"]["job_id"] == "1251"


async def test_a_retry_carries_the_same_delivery_key(receiver: Receiver) -> None:
    sink = webhook()
    await sink.send(outgoing(receiver.url("/hook")))
    await sink.send(outgoing(receiver.url("/hook")))
    keys = {seen.headers[DELIVERY_HEADER] for seen in receiver.seen}
    assert keys == {KEY} and receiver.verified == [True, True]


async def test_a_wrong_secret_is_refused_by_the_receiver(receiver: Receiver) -> None:
    sink = WebhookSink(
        HttpSinkSettings(policy=LOOPBACK_ALLOWED), Secret("another"), clock=lambda: NOW
    )
    with pytest.raises(PermanentFailure) as failure:
        await sink.send(outgoing(receiver.url("/hook")))
    assert failure.value.status == 401 and receiver.verified == [False]


async def test_slack_payload_shape(receiver: Receiver) -> None:
    result = await slack().send(outgoing(receiver.url("/slack")))

    assert result.status == 200
    [seen] = receiver.seen
    payload = orjson.loads(seen.body)
    assert payload["text"] == "Job 1251 (train) FAILED, exit 3 after 2h 5m"
    [attachment] = payload["attachments"]
    assert attachment["color"] == "#d40e0d"
    assert "partition cpu" in attachment["text"]


async def test_default_target_goes_to_the_configured_url(receiver: Receiver) -> None:
    sink = slack(default_url=receiver.url("/slack"))
    await sink.send(outgoing("default"))
    assert receiver.paths() == ["/slack"]


async def test_default_target_without_a_configured_url_is_permanent() -> None:
    with pytest.raises(PermanentFailure, match="no default URL"):
        await slack().send(outgoing("default"))


# -- SSRF --------------------------------------------------------------------------------


async def test_loopback_is_refused_by_default(receiver: Receiver) -> None:
    plain_http = UrlPolicy(allow_http=True)
    for sink in (webhook(plain_http), slack(plain_http)):
        with pytest.raises(PermanentFailure, match="loopback"):
            await sink.send(outgoing(receiver.url("/hook")))
    assert receiver.seen == []


async def test_http_is_refused_unless_allowed(receiver: Receiver) -> None:
    https_only = UrlPolicy(allowed_networks=parse_networks(["127.0.0.0/8"]))
    with pytest.raises(PermanentFailure, match="https"):
        await webhook(https_only).send(outgoing(receiver.url("/hook")))
    assert receiver.seen == []


async def test_a_name_connects_to_the_checked_address_only(receiver: Receiver) -> None:
    asked: list[tuple[str, int]] = []

    async def dns(host: str, port: int) -> list[IPAddress]:
        asked.append((host, port))
        return [ipaddress.ip_address("127.0.0.1")]

    # hooks.example.test has no address in any real DNS: reaching the receiver proves the
    # connection went to the address checked, and the request still names the host.
    sink = webhook(resolve=dns)
    await sink.send(outgoing(receiver.url("/hook", host="hooks.example.test")))

    assert asked == [("hooks.example.test", receiver.port)]
    [seen] = receiver.seen
    assert seen.headers["Host"] == f"hooks.example.test:{receiver.port}"
    assert receiver.verified == [True]


async def test_every_resolved_address_is_checked(receiver: Receiver) -> None:
    async def dns(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")]

    with pytest.raises(PermanentFailure, match=r"private address \(10\.1\.2\.3\)"):
        await webhook(resolve=dns).send(outgoing(receiver.url("/hook", host="hooks.example.test")))
    assert receiver.seen == []


@pytest.mark.parametrize(
    ("errno", "failure"),
    [(socket.EAI_NONAME, PermanentFailure), (socket.EAI_AGAIN, TemporaryFailure)],
)
async def test_resolution_failures(errno: int, failure: type[Exception]) -> None:
    async def dns(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(errno, "lookup failed")

    with pytest.raises(failure, match="cannot resolve"):
        await webhook(resolve=dns).send(outgoing("http://hooks.example.test/hook"))


async def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    for sink in (webhook(), slack()):
        with pytest.raises(PermanentFailure, match="redirect") as failure:
            await sink.send(outgoing(receiver.url("/redirect")))
        assert failure.value.status == 302
    assert receiver.paths() == ["/redirect", "/redirect"]


async def test_a_huge_response_is_not_read_beyond_the_limit(receiver: Receiver) -> None:
    result = await slack(response_limit=4096).send(outgoing(receiver.url("/huge")))

    assert result.status == 200 and result.body == b"x" * 4096
    # The receiver's writes fail once the client is gone: it never got to send it all.
    await asyncio.wait_for(receiver.huge_done.wait(), 30)
    [written] = receiver.huge_written
    assert written < 64 * 1024 * 1024 < HUGE


# -- how failures are classified ----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        (500, TemporaryFailure),
        (502, TemporaryFailure),
        (408, TemporaryFailure),
        (400, PermanentFailure),
        (404, PermanentFailure),
        (410, PermanentFailure),
    ],
)
async def test_status_classification(
    receiver: Receiver, code: int, failure: type[Exception]
) -> None:
    with pytest.raises(failure) as raised:
        await webhook().send(outgoing(receiver.url(f"/status/{code}")))
    assert isinstance(raised.value, PermanentFailure | TemporaryFailure)
    assert raised.value.status == code
    assert "went wrong" in str(raised.value)
    assert raised.value.retry_after_s is None


async def test_429_with_retry_after_is_temporary_with_the_delay(receiver: Receiver) -> None:
    with pytest.raises(TemporaryFailure) as failure:
        await slack().send(outgoing(receiver.url("/status/429?retry_after=120")))
    assert failure.value.status == 429
    assert failure.value.retry_after_s == 120.0


async def test_503_with_a_retry_after_date(receiver: Receiver) -> None:
    later = quote(format_datetime(NOW + timedelta(minutes=5), usegmt=True))
    with pytest.raises(TemporaryFailure) as failure:
        await slack().send(outgoing(receiver.url(f"/status/503?retry_after={later}")))
    assert failure.value.retry_after_s == 300.0


async def test_a_receiver_slower_than_the_timeout_is_temporary(receiver: Receiver) -> None:
    with pytest.raises(TemporaryFailure, match=r"within 0\.3 s"):
        await webhook(timeout_s=0.3).send(outgoing(receiver.url("/slow")))
    assert receiver.paths() == ["/slow"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_temporary() -> None:
    with pytest.raises(TemporaryFailure, match="cannot connect"):
        await webhook().send(outgoing(f"http://127.0.0.1:{free_port()}/hook"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("soon", None),
        ("-5", None),
        ("Sat, 28 Nov 2026 06:30:20 GMT", 300.0),
        ("Sat, 28 Nov 2026 06:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_secrets_do_not_show() -> None:
    assert SECRET not in repr(Secret(SECRET))
    with pytest.raises(ValueError, match="empty"):
        WebhookSink(HttpSinkSettings(), Secret(""))
