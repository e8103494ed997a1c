"""Deliveries survive what goes wrong: a server killed mid-delivery delivers after its
restart, and two instances sharing one outbox (Redis broker, one PostgreSQL database) send
each delivery once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slurmcast.app import SlurmcastApp
from slurmcast.core.notify.rules import FINAL_EVENTS, NotifyEvent, parse_rule
from slurmcast.core.notify.ssrf import UrlPolicy, parse_networks
from slurmcast.sinks.base import Secret
from slurmcast.sinks.config import SinksConfig
from slurmcast.sinks.posting import HttpSinkSettings
from slurmcast.storage import NotificationStore, default_url
from slurmcast.storage.outbox import DeliveryState

from support.process import ServeProcess
from support.receivers import WEBHOOK_SECRET, hook_receiver
from support.redis import shared_prefix
from support.server import running_server
from support.waiting import eventually, until

LOCAL = UrlPolicy(allow_http=True, allowed_networks=parse_networks(["127.0.0.1/32"]))
#: Every job event: a busy simulated cluster then makes several deliveries a second.
EVERY_JOB_EVENT = sorted(e.value for e in {*FINAL_EVENTS, NotifyEvent.JOB_STARTED})
USERS = ("alice", "bob", "carol", "dave", "erin")


def webhook_rule(owner: str, url: str) -> dict[str, Any]:
    rule = parse_rule(
        {
            "id": f"hook-{owner}",
            "events": EVERY_JOB_EVENT,
            "destination": {"kind": "webhook", "target": url},
        },
        owner,
        False,
        own_address=None,
        url_policy=LOCAL,
    )
    return rule.data()


async def seed_rules(url: str, target: str) -> None:
    """Rules stored before the server starts, as a previous run's API would have."""
    store = NotificationStore(url)
    await store.start()
    try:
        for owner in USERS:
            await store.outbox.add_rule(
                owner, webhook_rule(owner, target), datetime.now(UTC), id=f"hook-{owner}"
            )
    finally:
        await store.close()


async def test_a_server_killed_mid_delivery_delivers_after_restart(tmp_path: Path) -> None:
    config = tmp_path / "slurmcast.toml"
    config.write_text(
        "[sinks]\n"
        "lease = 2.0\n"
        "retry_base = 0.05\n"
        "retry_cap = 0.2\n"
        "poll_interval = 0.1\n"
        # Many jobs, one receiver: no rate limit holding the killed delivery back.
        "rate_limit = 60000.0\n"
        "rate_burst = 1000\n"
        "[sinks.http]\n"
        "allow_http = true\n"
        'allowed_networks = ["127.0.0.1/32"]\n'
        "[sinks.webhook]\n"
        'secret_env = "TEST_WEBHOOK_SECRET"\n'
    )
    async with hook_receiver(stall=1) as receiver:
        server = ServeProcess(
            "--config",
            str(config),
            "--sim-speed",
            "600",
            "--jobs-interval",
            "0.05",
            "--nodes-interval",
            "0.05",
            env={"TEST_WEBHOOK_SECRET": WEBHOOK_SECRET},
        )
        url = default_url(server.data_dir)
        await seed_rules(url, receiver.url())
        try:
            await asyncio.to_thread(server.start)
            # The first delivery reaches the receiver, which holds it: the server is
            # mid-delivery when it is killed.
            async with asyncio.timeout(60):
                await receiver.stalled.wait()
            key = receiver.posts[0].key
            await asyncio.to_thread(server.kill)
            receiver.release.set()
            await asyncio.to_thread(server.start)
            # Its lease (2 s) runs out; the restarted server claims it and sends it again.
            await receiver.wait(lambda r: r.accepted[key] >= 1)
        except BaseException:
            print(server.log.read_text()[-3000:])
            raise
        finally:
            await asyncio.to_thread(server.__exit__)
    assert receiver.accepted[key] == 1
    attempts = [p for p in receiver.posts if p.key == key]
    assert len(attempts) >= 2 and attempts[0].status == 503 and attempts[-1].status == 200
    assert all(p.body == attempts[0].body for p in attempts)


@contextlib.asynccontextmanager
async def two_instances(database_url: str, sinks: SinksConfig) -> AsyncIterator[list[SlurmcastApp]]:
    async with contextlib.AsyncExitStack() as stack:
        prefix = await stack.enter_async_context(shared_prefix())
        apps = [
            await stack.enter_async_context(
                running_server(
                    broker="redis",
                    redis_prefix=prefix,
                    database_url=database_url,
                    instance_id=f"instance-{n}",
                    sinks=sinks,
                    sim_speed=600.0,
                    jobs_interval=0.05,
                    nodes_interval=0.05,
                )
            )
            for n in range(2)
        ]
        yield apps


async def test_two_instances_send_each_delivery_once(postgres_database: str) -> None:
    from support.databases import reset_schema, run_in_thread, sqlalchemy_url

    run_in_thread(reset_schema(postgres_database))
    url = sqlalchemy_url(postgres_database)
    sinks = SinksConfig(
        http=HttpSinkSettings(policy=LOCAL),
        webhook_secret=Secret(WEBHOOK_SECRET),
        # Both workers look at the outbox all the time: they contend for every delivery.
        poll_interval=0.01,
        rate_per_minute=60_000.0,
        rate_burst=1000,
    )
    async with hook_receiver() as receiver:
        await seed_rules(url, receiver.url())
        async with two_instances(url, sinks) as apps:
            planners = [app.planner for app in apps]
            await until(lambda: all(p is not None and len(p.rules) == len(USERS) for p in planners))
            await receiver.wait(lambda r: len(r.accepted) >= 20)
            store = apps[0].notifications.outbox
            page = await eventually(
                lambda: store.list(state=DeliveryState.DELIVERED, limit=500),
                lambda p: len(p.items) >= 20,
            )
    posted: dict[str, int] = {}
    for post in receiver.posts:
        posted[post.key] = posted.get(post.key, 0) + 1
    assert posted and set(posted.values()) == {1}, "a delivery was sent twice"
    assert all(d.attempts == 1 for d in page.items)
    assert {d.claimed_by for d in page.items} <= {"instance-0", "instance-1"}
