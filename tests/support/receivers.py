"""Real destinations for notification deliveries: a local SMTP server (aiosmtpd) and a local
HTTP receiver that verifies webhook signatures and checks Slack payloads, and can be told to
fail or to stall."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from slurmcast.core.notify.signing import DELIVERY_HEADER, verify

WEBHOOK_SECRET = "whsec-receiver-0123456789abcdef"


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps what it receives; refuses the recipients it is told to."""

    received: list[Envelope] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        self.arrived.set()
        return "250 Message accepted for delivery"

    def message(self, index: int = 0) -> EmailMessage:
        content = self.received[index].content
        assert isinstance(content, bytes)
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def messages(self) -> list[EmailMessage]:
        return [self.message(i) for i in range(len(self.received))]


@dataclass
class Relay:
    mailbox: Mailbox
    port: int


async def start_relay(**smtp_options: Any) -> tuple[Relay, asyncio.Server]:
    mailbox = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(mailbox, hostname="relay.test", **smtp_options), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    return Relay(mailbox, port), server


@contextlib.asynccontextmanager
async def smtp_relay(**smtp_options: Any) -> AsyncIterator[Relay]:
    started, server = await start_relay(**smtp_options)
    try:
        yield started
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Post:
    path: str
    key: str
    body: dict[str, Any]
    signed: bool
    status: int


@dataclass
class HookReceiver:
    """``/hook`` verifies the signature (with the real clock), ``/slack`` the payload shape.

    ``fail`` answers 500 to the first that many posts of each delivery (by its key);
    ``stall`` holds the first that many posts overall until ``release`` is set, then
    answers 503.
    ``accepted`` counts the deliveries answered 2xx, by key: a receiver that keeps
    only the first of a key, as the docs tell receivers to.
    """

    port: int = 0
    secret: str = WEBHOOK_SECRET
    fail: int = 0
    stall: int = 0
    posts: list[Post] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def keys(self, path: str = "/hook") -> list[str]:
        return [p.key for p in self.posts if p.path == path]

    async def wait(self, predicate: Any, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: predicate(self))

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        key = request.headers.get(DELIVERY_HEADER, "")
        if request.path == "/slack":
            payload = orjson.loads(raw)
            signed = isinstance(payload.get("text"), str) and all(
                isinstance(a.get("text"), str) and isinstance(a.get("color"), str)
                for a in payload.get("attachments", [])
            )
            key = orjson.dumps(payload).decode()
        else:
            signed = verify(raw, request.headers, self.secret.encode(), datetime.now(UTC))
        stalls = self.stall > 0
        if stalls:
            self.stall -= 1
            self.stalled.set()
        seen_before = sum(1 for p in self.posts if p.key == key)
        status = 200
        if not signed:
            status = 401
        elif seen_before < self.fail:
            status = 500
        post = Post(request.path, key, orjson.loads(raw), signed, status)
        async with self.changed:
            self.posts.append(post)
            self.changed.notify_all()
        if stalls:
            await self.release.wait()
            # Held until the sender gave up (or was killed): not a delivery it saw accepted.
            status = 503
            post.status = status
        if status == 200:
            async with self.changed:
                self.accepted[key] += 1
                self.changed.notify_all()
        return web.Response(status=status, text="ok" if status == 200 else "no")


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[int]:
    """``app`` served on a free loopback port (yielded) for the block."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def hook_receiver(**options: Any) -> AsyncIterator[HookReceiver]:
    receiver = HookReceiver(**options)
    app = web.Application()
    app.router.add_post("/hook", receiver._handle)
    app.router.add_post("/slack", receiver._handle)
    async with served(app) as receiver.port:
        try:
            yield receiver
        finally:
            receiver.release.set()
