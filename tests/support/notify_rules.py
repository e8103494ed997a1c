"""Notification rules and an outbox for the delivery tests: rules parsed as the API parses
them, notification ids that count, and a migrated ``OutboxStore`` on a real database."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from slurmcast.core.notify.rules import Rule, parse_rule
from slurmcast.core.notify.ssrf import UrlPolicy, parse_networks
from slurmcast.storage.engine import create_engine, ensure_sqlite_directory, parse_url
from slurmcast.storage.migrate import upgrade
from slurmcast.storage.outbox import OutboxStore

#: A failed job's ``job_update`` data, as the sinks' tests render it.
FAILED_JOB: dict[str, Any] = {
    "job_id": "1251",
    "name": "train",
    "status": "FAILED",
    "user": "carol",
    "partition": "cpu",
    "nodes": ["node001"],
    "start_time": "2026-11-28T04:20:13Z",
    "end_time": "2026-11-28T06:25:13Z",
    "exit_code": 3,
}
#: The operator's default policy: https to public hosts only.
STRICT = UrlPolicy()
#: A lab's policy: plain http to this machine.
LOCAL = UrlPolicy(allow_http=True, allowed_networks=parse_networks(["127.0.0.1/32"]))


def make_rule(
    rule_id: str,
    *events: str,
    owner: str = "alice",
    destination: dict[str, str] | None = None,
    admin: bool = True,
    url_policy: UrlPolicy = STRICT,
    **filters: Any,
) -> Rule:
    """A rule of ``owner`` as the API saves it (an admin by default: alerts allowed)."""
    spec: dict[str, Any] = {
        "events": list(events),
        "destination": destination if destination is not None else {"kind": "email"},
        **filters,
    }
    return parse_rule(
        spec,
        owner,
        admin,
        own_address=f"{owner}@example.edu",
        url_policy=url_policy,
        rule_id=rule_id,
    )


class Ids:
    """``new_id`` for the planners: ``n0``, ``n1``, ... and how many were asked for."""

    def __init__(self, prefix: str = "n") -> None:
        self._prefix = prefix
        self._count = itertools.count()
        self.issued: list[str] = []

    def __call__(self) -> str:
        value = f"{self._prefix}{next(self._count)}"
        self.issued.append(value)
        return value


@asynccontextmanager
async def migrated_outbox(url: str) -> AsyncIterator[OutboxStore]:
    """An ``OutboxStore`` on ``url`` with the schema in place; the engine disposed after."""
    parsed = parse_url(url)
    ensure_sqlite_directory(parsed)
    engine = create_engine(parsed)
    try:
        await upgrade(engine)
        yield OutboxStore(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def outbox_on(url: str) -> AsyncIterator[tuple[OutboxStore, AsyncEngine]]:
    """An ``OutboxStore`` on a database that may be down, and its engine: like the
    notification store's, it creates the directory and migrates once (under a lock) before
    the first operation that finds the database up."""
    parsed = parse_url(url)
    engine = create_engine(parsed)
    lock = asyncio.Lock()
    migrated = False

    async def prepare() -> None:
        nonlocal migrated
        async with lock:
            if not migrated:
                ensure_sqlite_directory(parsed)
                await upgrade(engine)
                migrated = True

    try:
        yield OutboxStore(engine, prepare=prepare), engine
    finally:
        await engine.dispose()
