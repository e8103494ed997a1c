"""Notification delivery end to end: a simulated cluster, people's rules, a real local SMTP
server and a real webhook receiver that checks signatures; retries, dead letters, the rate
limit, and two instances sharing one outbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slurmcast.app import SlurmcastApp
from slurmcast.core.notify.rules import FINAL_EVENTS
from slurmcast.core.notify.ssrf import UrlPolicy, parse_networks
from slurmcast.sinks.base import Secret
from slurmcast.sinks.config import SinksConfig
from slurmcast.sinks.email import SmtpSettings, TlsMode
from slurmcast.sinks.posting import HttpSinkSettings
from slurmcast.storage import NotificationStore, default_url
from slurmcast.storage.outbox import Delivery, DeliveryState

from support.metrics import scrape
from support.notify_rules import make_rule, migrated_outbox
from support.receivers import WEBHOOK_SECRET, Relay, hook_receiver, smtp_relay
from support.server import http_json, running_server
from support.waiting import eventually, until

#: A busy simulated cluster: jobs start and end every few polls.
FAST = {"sim_speed": 600.0, "jobs_interval": 0.05, "nodes_interval": 0.05}
ENDS = sorted(event.value for event in FINAL_EVENTS)
LOCAL = UrlPolicy(allow_http=True, allowed_networks=parse_networks(["127.0.0.1/32"]))


def sinks(relay: Relay | None = None, **options: Any) -> SinksConfig:
    values: dict[str, Any] = {
        "http": HttpSinkSettings(policy=LOCAL),
        "webhook_secret": Secret(WEBHOOK_SECRET),
        "address_template": "{user}@example.edu",
        "retry": options.pop("retry", None),
    }
    if relay is not None:
        values["email"] = SmtpSettings(
            host="127.0.0.1",
            port=relay.port,
            tls=TlsMode.NONE,
            from_address="slurmcast@example.edu",
        )
    values.update(options)
    if values["retry"] is None:
        del values["retry"]
    return SinksConfig(**values)


async def add_rule(app: SlurmcastApp, owner: str, **spec: Any) -> str:
    """Create a rule through the HTTP API (an open server: the caller names the owner) and
    wait until the planner uses it."""
    status, body = await http_json(app, "POST", "/notify/rules", {"owner": owner, **spec})
    assert status == 201, body
    rule_id: str = body["rule"]["id"]
    planner = app.planner
    assert planner is not None
    await until(lambda: any(rule.id == rule_id for rule in planner.rules))
    return rule_id


async def deliveries(app: SlurmcastApp, **filters: Any) -> list[Delivery]:
    page = await app.notifications.outbox.list(limit=500, **filters)
    return page.items


@contextlib.asynccontextmanager
async def served(**overrides: Any) -> AsyncIterator[SlurmcastApp]:
    async with running_server(**{**FAST, **overrides}) as app:
        yield app


async def test_a_job_ending_arrives_by_mail_and_signed_webhook_per_the_rules() -> None:
    async with (
        smtp_relay() as relay,
        hook_receiver() as receiver,
        served(sinks=sinks(relay)) as app,
    ):
        await add_rule(app, "bob", events=ENDS, destination={"kind": "email"})
        await add_rule(
            app, "bob", events=ENDS, destination={"kind": "webhook", "target": receiver.url()}
        )
        # A rule whose filter no job of bob's passes: it must send nothing.
        await add_rule(
            app,
            "bob",
            events=ENDS,
            partitions=["no-such-partition"],
            destination={"kind": "webhook", "target": receiver.url("/hook?filtered")},
        )
        await receiver.wait(lambda r: r.accepted)
        await until(lambda: relay.mailbox.received)
        post = receiver.posts[0]
        assert post.signed and post.status == 200
        job = post.body["job"]
        assert job["user"] == "bob" and post.body["event"] in ENDS
        assert post.body["delivery_id"] == post.key
        mail = relay.mailbox.message(0)
        assert relay.mailbox.received[0].rcpt_tos == ["bob@example.edu"]
        assert mail["Subject"].startswith("[slurmcast] ")
        # A job's end is told both ways (a job that ended before the webhook rule was in
        # force was told by mail only).
        await until(
            lambda: any(
                f"Job {p.body['job']['job_id']} " in m["Subject"]
                for p in receiver.posts
                for m in relay.mailbox.messages()
            )
        )
        assert "bob" in mail.get_content()
        assert "bob" not in (mail["From"] or "")
        # The deliveries are recorded as sent; the notification they came with is stored.
        sent = await eventually(
            lambda: deliveries(app, state=DeliveryState.DELIVERED),
            lambda items: {d.kind for d in items} >= {"email", "webhook"},
        )
        assert all(d.owner == "bob" and d.attempts == 1 for d in sent)
        stored = await app.notifications.get(sent[0].notification_id)
        assert stored is not None and stored["user"] == "bob"
        assert not [p for p in receiver.posts if "filtered" in p.path]
        assert all(p.body["job"]["user"] == "bob" for p in receiver.posts)


async def test_a_receiver_failing_three_times_gets_the_delivery_once() -> None:
    from slurmcast.core.notify.retry import RetryPolicy

    fast = RetryPolicy(base_s=0.01, cap_s=0.05, max_attempts=8)
    async with hook_receiver(fail=3) as receiver, served(sinks=sinks(retry=fast)) as app:
        await add_rule(
            app, "alice", events=ENDS, destination={"kind": "webhook", "target": receiver.url()}
        )
        await receiver.wait(lambda r: r.accepted)
        key = next(iter(receiver.accepted))
        tries = [p for p in receiver.posts if p.key == key]
        assert [p.status for p in tries] == [500, 500, 500, 200]
        # Same body (same signature input but the timestamp) every time: one delivery.
        assert len({orjson_body(p.body) for p in tries}) == 1
        assert receiver.accepted[key] == 1
        (delivery,) = [
            d
            for d in await eventually(
                lambda: deliveries(app, state=DeliveryState.DELIVERED),
                lambda items: any(d.idempotency_key == key for d in items),
            )
            if d.idempotency_key == key
        ]
        assert delivery.attempts == 4
        # GET /metrics counts the attempts by outcome.
        figures = await scrape(app)
        assert (
            figures.get("slurmcast_notify_deliveries_total", kind="webhook", outcome="retry") >= 3
        )
        delivered = figures.get(
            "slurmcast_notify_deliveries_total", kind="webhook", outcome="delivered"
        )
        assert delivered >= 1
        assert figures.get("slurmcast_notify_rules") == 1


def orjson_body(body: dict[str, Any]) -> str:
    import orjson

    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()


async def test_a_dead_letter_after_the_last_attempt_is_retried_through_the_outbox() -> None:
    from slurmcast.core.notify.retry import RetryPolicy

    once = RetryPolicy(base_s=0.01, cap_s=0.05, max_attempts=2)
    async with hook_receiver(fail=1000) as receiver, served(sinks=sinks(retry=once)) as app:
        await add_rule(
            app, "carol", events=ENDS, destination={"kind": "webhook", "target": receiver.url()}
        )
        dead = await eventually(
            lambda: deliveries(app, state=DeliveryState.DEAD), lambda items: bool(items)
        )
        letter = dead[0]
        assert letter.attempts == 2 and letter.last_error and "500" in letter.last_error
        assert len([p for p in receiver.posts if p.key == letter.idempotency_key]) == 2
        receiver.fail = 0
        retried = await app.notifications.outbox.retry(letter.id, datetime.now(UTC))
        assert retried is not None and retried.state is DeliveryState.PENDING
        assert app.delivery is not None
        app.delivery.wake()
        await receiver.wait(lambda r: r.accepted[letter.idempotency_key] == 1)
        done = await eventually(
            lambda: app.notifications.outbox.get(letter.id),
            lambda d: d is not None and d.state is DeliveryState.DELIVERED,
        )
        assert done is not None and done.attempts == 1


async def test_a_destinations_rate_limit_holds_deliveries_back_unsent() -> None:
    async with (
        hook_receiver() as receiver,
        served(sinks=sinks(rate_per_minute=0.01, rate_burst=1)) as app,
    ):
        await add_rule(
            app, "bob", events=ENDS, destination={"kind": "webhook", "target": receiver.url()}
        )
        held = await eventually(
            lambda: deliveries(app, state=DeliveryState.PENDING),
            # Claimed and given back unsent: due later than made, no attempt counted.
            lambda items: any(
                d.attempts == 0 and d.last_error is None and d.next_attempt_at > d.created_at
                for d in items
            ),
        )
        assert held
        await receiver.wait(lambda r: r.posts)
        # One token a hundred minutes: the first went, the others wait their turn.
        assert len(receiver.posts) == 1
        assert app.delivery is not None
        assert app.delivery.outcomes[("webhook", "postponed")] >= 1


async def test_a_slack_rule_posts_the_chat_payload() -> None:
    async with hook_receiver() as receiver, served(sinks=sinks(slack=True)) as app:
        await add_rule(
            app,
            "dave",
            events=ENDS,
            destination={"kind": "slack", "target": receiver.url("/slack")},
        )
        await receiver.wait(lambda r: r.accepted)
        post = receiver.posts[0]
        assert post.path == "/slack" and post.status == 200
        assert "Job" in post.body["text"]
        assert set(post.body) <= {"text", "attachments"}


async def test_a_shutdown_finishes_the_sends_under_way() -> None:
    async with hook_receiver(stall=1) as receiver, served(sinks=sinks()) as app:
        await add_rule(
            app, "bob", events=ENDS, destination={"kind": "webhook", "target": receiver.url()}
        )
        await receiver.stalled.wait()
        key = receiver.posts[0].key
        stopping = asyncio.create_task(app.stop())
        receiver.release.set()
        await stopping
        # The stopped server's database, read afresh (before its directory goes).
        store = NotificationStore(default_url(app.settings.data_dir))
        await store.start()
        try:
            page = await store.outbox.list(limit=500)
        finally:
            await store.close()
    (held,) = [d for d in page.items if d.idempotency_key == key]
    # Its answer (503) was waited for and recorded: not left delivering, to be sent again
    # only when its lease runs out.
    assert held.state is DeliveryState.PENDING
    assert held.last_error is not None and "503" in held.last_error


async def test_a_job_pending_too_long_is_told_once_per_rule() -> None:
    async with hook_receiver() as receiver, served(sinks=sinks(), sim_speed=6000.0) as app:
        # A simulated minute is a hundredth of a second here: some of bob's jobs wait longer.
        await add_rule(
            app,
            "bob",
            events=["job_pending_long"],
            pending_minutes=1,
            destination={"kind": "webhook", "target": receiver.url()},
        )
        await receiver.wait(lambda r: len(r.accepted) >= 2)
        bodies = [p.body for p in receiver.posts]
        assert {b["event"] for b in bodies} == {"job_pending_long"}
        assert all(b["job"]["user"] == "bob" and b["job"]["status"] == "PENDING" for b in bodies)
        jobs = [b["job"]["job_id"] for b in bodies]
        assert len(jobs) == len(set(jobs)), "a job was told of twice"
        stored = await app.notifications.list("bob", limit=500)
        assert any(n["type"] == "job_pending" for n in stored.items)


async def test_an_admins_alert_rule_is_told_when_an_alert_fires(tmp_path: Path) -> None:
    url = default_url(tmp_path / "data")
    async with hook_receiver() as receiver:
        # Stored before the server starts: the alert fires with its first metrics.
        rule = make_rule(
            "alerts",
            "alert_firing",
            "alert_resolved",
            owner="ops",
            destination={"kind": "webhook", "target": receiver.url()},
            url_policy=LOCAL,
        )
        async with migrated_outbox(url) as outbox:
            await outbox.add_rule("ops", rule.data(), datetime.now(UTC), id=rule.id)
        async with served(
            sinks=sinks(), database_url=url, alert_cpu_threshold=0.1, metrics_interval=0.05
        ) as app:
            await receiver.wait(lambda r: r.accepted)
            body = receiver.posts[0].body
            assert body["event"] == "alert_firing"
            assert body["alert"]["status"] == "firing" and "job" not in body
            stored = await app.notifications.list("ops", limit=500)
            assert any(n["type"] == "alert" and n["user"] == "ops" for n in stored.items)
