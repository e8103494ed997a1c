"""The delivery worker on a real outbox (SQLite and PostgreSQL) with small sinks that succeed,
fail, raise or hang: outcomes recorded, retries on the policy's schedule, dead letters, the
rate limit, waking up, outages; and the real e-mail and webhook sinks behind it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from slurmcast.core.notifications import Notification, NotificationType, Severity
from slurmcast.core.notify.retry import RetryPolicy
from slurmcast.core.timefmt import iso_z
from slurmcast.delivery.worker import BATCH, DeliveryWorker
from slurmcast.sinks.base import (
    Outgoing,
    PermanentFailure,
    Secret,
    SendResult,
    Sink,
    TemporaryFailure,
)
from slurmcast.sinks.config import SinksConfig
from slurmcast.sinks.email import EmailSink, SmtpSettings, TlsMode
from slurmcast.sinks.posting import HttpSinkSettings
from slurmcast.sinks.webhook import WebhookSink
from slurmcast.storage.outbox import (
    Delivery,
    DeliveryState,
    DestinationKind,
    NewDelivery,
    OutboxStore,
)

from support.builders import T0, job_data
from support.databases import Backend
from support.notify_rules import LOCAL, migrated_outbox, outbox_on
from support.receivers import WEBHOOK_SECRET, hook_receiver, smtp_relay
from support.waiting import eventually, running, until

INSTANCE = "worker-a"
LEASE = 30.0
START = T0 + timedelta(minutes=1)
HOOK_URL = "https://hooks.example.com/x"
JOB = job_data(
    "7",
    "FAILED",
    name="train",
    start_time=T0 - timedelta(hours=2),
    end_time=T0,
    exit_code=3,
)
PAYLOAD: dict[str, Any] = {"event": "job_failed", "data": JOB, "at": iso_z(T0, millis=True)}
#: Retries in whole seconds with the draw below: ceilings 10, 20, 40... at most 100.
POLICY = RetryPolicy(base_s=10.0, cap_s=100.0, max_attempts=3)


class Clock:
    """A settable clock: ``now`` is what the worker reads."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


class Hang:
    """A sink step that never answers."""


Step = SendResult | Exception | Hang
OK = SendResult(detail="HTTP 200", status=200)


class ScriptedSink:
    """A sink doing what its script says, one step per call (then succeeding); it records
    every call, and how many hung calls were cancelled."""

    def __init__(self, kind: str, *script: Step) -> None:
        self.kind = kind
        self._script = list(script)
        self.calls: list[Outgoing] = []
        self.cancelled = 0

    async def send(self, outgoing: Outgoing) -> SendResult:
        self.calls.append(outgoing)
        step = self._script.pop(0) if self._script else OK
        if isinstance(step, Hang):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, SendResult)
        return step

    @property
    def targets(self) -> list[str]:
        return [call.target for call in self.calls]


@pytest.fixture
async def outbox(backend: Backend) -> AsyncIterator[OutboxStore]:
    async with migrated_outbox(backend.url) as store:
        yield store


def make_worker(
    outbox: OutboxStore,
    *sinks: Sink,
    clock: Callable[[], datetime] = lambda: START,
    monotonic: Callable[[], float] = lambda: 0.0,
    draw: Callable[[], float] = lambda: 0.5,
    **config: Any,
) -> DeliveryWorker:
    settings: dict[str, Any] = {"retry": POLICY, "lease_s": LEASE, "poll_interval": 3600.0}
    settings.update(config)
    return DeliveryWorker(
        outbox,
        {sink.kind: sink for sink in sinks},
        SinksConfig(**settings),
        instance_id=INSTANCE,
        clock=clock,
        monotonic=monotonic,
        draw=draw,
    )


_SERIAL = itertools.count()


async def put(
    outbox: OutboxStore,
    *,
    kind: str = "webhook",
    target: str = HOOK_URL,
    payload: dict[str, Any] | None = None,
    owner: str = "alice",
) -> str:
    """One notification with one delivery, created (and due) at T0 plus a little, in order."""
    n = next(_SERIAL)
    at = T0 + timedelta(milliseconds=n)
    note = Notification(
        id=f"note-{n}",
        type=NotificationType.JOB_FAILED,
        title="Job Failed",
        message="Job #7 (train) failed with exit code 3",
        severity=Severity.ERROR,
        created_at=at,
        user=owner,
        details={"job_id": "7"},
    )
    delivery = NewDelivery(
        notification_id=note.id,
        owner=owner,
        rule_id="r1",
        kind=DestinationKind(kind),
        target=target,
        payload=PAYLOAD if payload is None else payload,
        id=f"dlv-{n:04}",
    )
    await outbox.add_with_notification([note], [delivery], at)
    assert delivery.id is not None
    return delivery.id


async def attempt(outbox: OutboxStore, worker: DeliveryWorker, now: datetime) -> list[Delivery]:
    """Claim what is due at ``now`` and deliver it, one after the other."""
    claimed = await outbox.claim(INSTANCE, now, LEASE, BATCH)
    for delivery in claimed:
        await worker.deliver(delivery)
    return claimed


async def stored(outbox: OutboxStore, id: str) -> Delivery:
    delivery = await outbox.get(id)
    assert delivery is not None
    return delivery


# --- one attempt


async def test_a_sent_delivery_is_delivered_after_one_attempt(outbox: OutboxStore) -> None:
    id = await put(outbox)
    sink = ScriptedSink("webhook")
    worker = make_worker(outbox, sink)
    (claimed,) = await attempt(outbox, worker, START)
    done = await stored(outbox, id)
    assert done.state is DeliveryState.DELIVERED
    assert (done.attempts, done.delivered_at, done.last_error) == (1, START, None)
    (sent,) = sink.calls
    assert sent.delivery_id == id and sent.idempotency_key == claimed.idempotency_key
    assert sent.target == HOOK_URL
    assert sent.message.subject.startswith("[slurmcast] Job 7 (train) FAILED, exit 3")
    # The webhook body names the delivery and the notification's time, not the attempt's.
    assert sent.message.webhook_payload["delivery_id"] == claimed.idempotency_key
    assert sent.message.webhook_payload["timestamp"] == iso_z(T0, millis=True)
    assert worker.outcomes == {("webhook", "delivered"): 1}


async def test_a_temporary_failure_is_retried_on_the_policys_schedule_then_dead(
    outbox: OutboxStore,
) -> None:
    id = await put(outbox)
    sink = ScriptedSink(
        "webhook",
        TemporaryFailure("HTTP 503 first"),
        TemporaryFailure("HTTP 503 second"),
        TemporaryFailure("HTTP 503 third"),
    )
    clock = Clock(START)
    worker = make_worker(outbox, sink, clock=clock)

    await attempt(outbox, worker, clock.now)
    first = await stored(outbox, id)
    assert first.state is DeliveryState.PENDING and first.attempts == 1
    # Half (the draw) of the first ceiling, 10 s.
    assert first.next_attempt_at == START + timedelta(seconds=5)
    assert first.last_error == "HTTP 503 first"
    # Not due before then.
    assert (
        await outbox.claim(INSTANCE, first.next_attempt_at - timedelta(seconds=1), LEASE, 9) == []
    )

    clock.now = first.next_attempt_at
    await attempt(outbox, worker, clock.now)
    second = await stored(outbox, id)
    assert second.state is DeliveryState.PENDING and second.attempts == 2
    assert second.next_attempt_at == clock.now + timedelta(seconds=10)  # half of 20 s
    assert second.last_error == "HTTP 503 second"

    clock.now = second.next_attempt_at
    await attempt(outbox, worker, clock.now)
    dead = await stored(outbox, id)
    assert dead.state is DeliveryState.DEAD and dead.attempts == 3
    assert dead.last_error == "HTTP 503 third"
    assert worker.outcomes == {("webhook", "retry"): 2, ("webhook", "dead"): 1}
    # Every attempt sent the same thing.
    assert len({str(call.message) for call in sink.calls}) == 1 and len(sink.calls) == 3


@pytest.mark.parametrize(
    ("retry_after", "waited"),
    [(50.0, 50.0), (1.0, 5.0), (1000.0, 100.0)],  # asked for; less than the draw; the cap
)
async def test_retry_after_is_honoured_up_to_the_cap(
    outbox: OutboxStore, retry_after: float, waited: float
) -> None:
    id = await put(outbox)
    sink = ScriptedSink("webhook", TemporaryFailure("HTTP 429", retry_after_s=retry_after))
    await attempt(outbox, make_worker(outbox, sink), START)
    later = await stored(outbox, id)
    assert later.state is DeliveryState.PENDING
    assert later.next_attempt_at == START + timedelta(seconds=waited)


async def test_the_draw_spreads_the_retries(outbox: OutboxStore) -> None:
    early, late = await put(outbox), await put(outbox)
    claimed = {d.id: d for d in await outbox.claim(INSTANCE, START, LEASE, BATCH)}
    for id, draw in ((early, 0.0), (late, 0.75)):
        sink = ScriptedSink("webhook", TemporaryFailure("down"))
        await make_worker(outbox, sink, draw=fixed(draw)).deliver(claimed[id])
    assert (await stored(outbox, early)).next_attempt_at == START
    assert (await stored(outbox, late)).next_attempt_at == START + timedelta(seconds=7.5)


async def test_a_permanent_failure_is_a_dead_letter_at_once(outbox: OutboxStore) -> None:
    id = await put(outbox)
    sink = ScriptedSink("webhook", PermanentFailure("hooks.example.com answered HTTP 404"))
    worker = make_worker(outbox, sink)
    await attempt(outbox, worker, START)
    dead = await stored(outbox, id)
    assert dead.state is DeliveryState.DEAD and dead.attempts == 1
    assert dead.last_error == "hooks.example.com answered HTTP 404"
    assert len(sink.calls) == 1
    assert worker.outcomes == {("webhook", "dead"): 1}
    # Nothing more to claim.
    assert await outbox.claim(INSTANCE, START + timedelta(days=1), LEASE, BATCH) == []


async def test_a_kind_without_a_sink_is_a_dead_letter(outbox: OutboxStore) -> None:
    id = await put(outbox, kind="slack", target="default")
    sink = ScriptedSink("webhook")
    worker = make_worker(outbox, sink)
    await attempt(outbox, worker, START)
    dead = await stored(outbox, id)
    assert dead.state is DeliveryState.DEAD
    assert dead.last_error == "no slack destination is configured"
    assert sink.calls == [] and worker.outcomes == {("slack", "dead"): 1}


# --- where to


async def test_an_email_to_default_goes_to_the_owners_address_now(outbox: OutboxStore) -> None:
    default = await put(outbox, kind="email", target="default", owner="bob")
    explicit = await put(outbox, kind="email", target="team@lists.example.org")
    sink = ScriptedSink("email")
    worker = make_worker(outbox, sink, address_template="{user}@example.edu")
    await attempt(outbox, worker, START)
    assert sink.targets == ["bob@example.edu", "team@lists.example.org"]
    for id in (default, explicit):
        assert (await stored(outbox, id)).state is DeliveryState.DELIVERED
    # The stored delivery keeps "default": the address is looked up at every attempt.
    assert (await stored(outbox, default)).target == "default"


async def test_an_email_to_default_without_an_address_is_a_dead_letter(
    outbox: OutboxStore,
) -> None:
    id = await put(outbox, kind="email", target="default")
    sink = ScriptedSink("email")
    worker = make_worker(outbox, sink)  # no address template
    await attempt(outbox, worker, START)
    dead = await stored(outbox, id)
    assert dead.state is DeliveryState.DEAD
    assert dead.last_error == "no e-mail address is known for alice"
    assert sink.calls == []


async def test_chat_and_webhook_defaults_are_left_to_the_sink(outbox: OutboxStore) -> None:
    await put(outbox, kind="slack", target="default")
    await put(outbox, kind="webhook", target="default")
    chat, hook = ScriptedSink("slack"), ScriptedSink("webhook")
    await attempt(outbox, make_worker(outbox, chat, hook, address_template="{user}@x.org"), START)
    assert chat.targets == hook.targets == ["default"]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"event": "job_exploded", "data": JOB, "at": iso_z(T0)},
        {"event": "job_failed", "data": "not an object", "at": iso_z(T0)},
        {"event": "job_failed", "at": iso_z(T0)},
        {"event": None, "data": JOB},
    ],
)
async def test_an_unreadable_payload_is_a_dead_letter(
    outbox: OutboxStore, payload: dict[str, Any]
) -> None:
    id = await put(outbox, payload=payload)
    sink = ScriptedSink("webhook")
    worker = make_worker(outbox, sink)
    await attempt(outbox, worker, START)
    dead = await stored(outbox, id)
    assert dead.state is DeliveryState.DEAD
    assert dead.last_error == "the stored delivery cannot be read"
    assert sink.calls == []


async def test_a_payload_without_a_time_uses_the_deliverys(outbox: OutboxStore) -> None:
    id = await put(outbox, payload={"event": "job_failed", "data": JOB, "at": "whenever"})
    sink = ScriptedSink("webhook")
    await attempt(outbox, make_worker(outbox, sink), START)
    created = (await stored(outbox, id)).created_at
    assert sink.calls[0].message.webhook_payload["timestamp"] == iso_z(created, millis=True)


async def test_a_payload_time_out_of_range_is_a_dead_letter(outbox: OutboxStore) -> None:
    payload = {"event": "job_failed", "data": JOB, "at": "0001-01-01T00:00:00+01:00"}
    id = await put(outbox, payload=payload)
    sink = ScriptedSink("webhook")
    await attempt(outbox, make_worker(outbox, sink), START)  # must not raise
    assert (await stored(outbox, id)).state is not DeliveryState.DELIVERING


# --- a sink misbehaving


async def test_a_sinks_bug_is_retried_not_lost(
    outbox: OutboxStore, caplog: pytest.LogCaptureFixture
) -> None:
    id = await put(outbox)
    sink = ScriptedSink("webhook", KeyError("oops"))
    clock = Clock(START)
    worker = make_worker(outbox, sink, clock=clock)
    with caplog.at_level(logging.ERROR, logger="slurmcast.delivery"):
        await attempt(outbox, worker, clock.now)
    failed = await stored(outbox, id)
    assert failed.state is DeliveryState.PENDING
    assert failed.last_error == "internal error: KeyError"
    assert f"delivery {id}: the webhook sink failed" in caplog.text
    assert "KeyError" in caplog.text  # with its traceback
    clock.now = failed.next_attempt_at
    await attempt(outbox, worker, clock.now)
    done = await stored(outbox, id)
    assert done.state is DeliveryState.DELIVERED and done.attempts == 2
    assert worker.outcomes == {("webhook", "retry"): 1, ("webhook", "delivered"): 1}


async def test_a_sink_that_hangs_is_timed_out_and_retried(outbox: OutboxStore) -> None:
    id = await put(outbox)
    sink = ScriptedSink("webhook", Hang())
    worker = make_worker(outbox, sink, lease_s=0.05)
    await attempt(outbox, worker, START)
    later = await stored(outbox, id)
    assert later.state is DeliveryState.PENDING and later.attempts == 1
    assert later.last_error == "the destination did not answer in time"
    assert sink.cancelled == 1
    assert worker.outcomes == {("webhook", "retry"): 1}


async def test_an_outcome_the_database_refuses_does_not_escape_deliver(
    outbox: OutboxStore,
) -> None:
    """A sink's message with NUL (which PostgreSQL refuses) is cleaned before it is stored."""
    id = await put(outbox)
    sink = ScriptedSink("webhook", TemporaryFailure("bad\x00answer"))
    await attempt(outbox, make_worker(outbox, sink), START)  # must not raise
    later = await stored(outbox, id)
    assert later.state is DeliveryState.PENDING and later.attempts == 1
    assert later.last_error is not None and "\x00" not in later.last_error
    assert "bad" in later.last_error and "answer" in later.last_error


# --- the rate limit


async def test_the_rate_limit_postpones_a_destination_unsent(outbox: OutboxStore) -> None:
    first = await put(outbox, target="https://a.example.com/")
    second = await put(outbox, target="https://a.example.com/")
    elsewhere = await put(outbox, target="https://b.example.com/")
    sink = ScriptedSink("webhook")
    ticks = Clock(START)
    seconds = [0.0]
    worker = make_worker(
        outbox, sink, clock=ticks, monotonic=lambda: seconds[0], rate_per_minute=1.0, rate_burst=1
    )
    await attempt(outbox, worker, START)
    assert sink.targets == ["https://a.example.com/", "https://b.example.com/"]
    assert (await stored(outbox, first)).state is DeliveryState.DELIVERED
    assert (await stored(outbox, elsewhere)).state is DeliveryState.DELIVERED
    held = await stored(outbox, second)
    assert held.state is DeliveryState.PENDING
    assert (held.attempts, held.last_error) == (0, None)  # not an attempt
    assert held.next_attempt_at == START + timedelta(seconds=60)  # one token a minute
    assert worker.outcomes[("webhook", "postponed")] == 1
    # A minute later there is a token again.
    seconds[0] += 60.0
    ticks.now = held.next_attempt_at
    await attempt(outbox, worker, ticks.now)
    sent = await stored(outbox, second)
    assert sent.state is DeliveryState.DELIVERED and sent.attempts == 1
    assert sink.targets[-1] == "https://a.example.com/"
    assert worker.outcomes == {("webhook", "delivered"): 3, ("webhook", "postponed"): 1}


async def test_held_back_deliveries_come_back_one_slot_apart_in_order(
    outbox: OutboxStore,
) -> None:
    ids = [await put(outbox) for _ in range(4)]
    sink = ScriptedSink("webhook")
    clock = Clock(START)
    seconds = [0.0]
    worker = make_worker(
        outbox, sink, clock=clock, monotonic=lambda: seconds[0], rate_per_minute=1.0, rate_burst=1
    )
    await attempt(outbox, worker, START)
    held = [await stored(outbox, id) for id in ids[1:]]
    # One token a minute: the three held back get the next three minutes, in claim order.
    assert [d.next_attempt_at - START for d in held] == [timedelta(minutes=m) for m in (1, 2, 3)]
    assert all(d.attempts == 0 for d in held)
    for minute, id in enumerate(ids[1:], start=1):
        seconds[0] = 60.0 * minute
        clock.now = START + timedelta(minutes=minute)
        (claimed,) = await attempt(outbox, worker, clock.now)
        assert claimed.id == id
        assert (await stored(outbox, id)).state is DeliveryState.DELIVERED
    assert [call.delivery_id for call in sink.calls] == ids
    assert worker.outcomes == {("webhook", "delivered"): 4, ("webhook", "postponed"): 3}


async def test_a_held_back_delivery_keeps_its_slot_against_newcomers(
    outbox: OutboxStore,
) -> None:
    """Back late for its slot, among deliveries made meanwhile, it goes first and is not
    held back again; the newcomers take the slots from now on."""
    first, held = await put(outbox), await put(outbox)
    sink = ScriptedSink("webhook")
    clock = Clock(START)
    seconds = [0.0]
    worker = make_worker(
        outbox, sink, clock=clock, monotonic=lambda: seconds[0], rate_per_minute=1.0, rate_burst=1
    )
    await attempt(outbox, worker, START)
    # Its slot was at one minute; it is claimed at three, with two new ones.
    seconds[0] = 180.0
    clock.now = START + timedelta(minutes=3)
    newer = [await put(outbox), await put(outbox)]
    await attempt(outbox, worker, clock.now)
    assert (await stored(outbox, held)).state is DeliveryState.DELIVERED
    # Its slot (the first minute's) is spent late; the next newcomer takes this minute's,
    # the other the one after.
    assert [call.delivery_id for call in sink.calls] == [first, held, newer[0]]
    later = await stored(outbox, newer[1])
    assert later.state is DeliveryState.PENDING
    assert later.next_attempt_at == clock.now + timedelta(minutes=1)
    assert worker.outcomes[("webhook", "postponed")] == 2


async def test_the_rate_limit_counts_the_resolved_address(outbox: OutboxStore) -> None:
    await put(outbox, kind="email", target="default")
    held = await put(outbox, kind="email", target="alice@example.edu")
    sink = ScriptedSink("email")
    worker = make_worker(
        outbox, sink, address_template="{user}@example.edu", rate_per_minute=1.0, rate_burst=1
    )
    await attempt(outbox, worker, START)
    assert sink.targets == ["alice@example.edu"]
    assert (await stored(outbox, held)).state is DeliveryState.PENDING


# --- run()


async def test_wake_makes_the_worker_look_at_once(outbox: OutboxStore) -> None:
    first = await put(outbox)
    sink = ScriptedSink("webhook")
    worker = make_worker(outbox, sink, poll_interval=3600.0)
    async with running(worker.run()) as task:
        await eventually(
            lambda: stored(outbox, first), lambda d: d.state is DeliveryState.DELIVERED
        )
        # Now asleep for an hour, unless woken.
        second = await put(outbox)
        worker.wake()
        await eventually(
            lambda: stored(outbox, second), lambda d: d.state is DeliveryState.DELIVERED
        )
        assert not task.done()
    assert worker.outcomes == {("webhook", "delivered"): 2}


async def test_a_full_batch_is_followed_by_another_claim(outbox: OutboxStore) -> None:
    ids = [await put(outbox) for _ in range(BATCH + 4)]
    sink = ScriptedSink("webhook")
    worker = make_worker(outbox, sink, poll_interval=3600.0, rate_burst=100)
    async with running(worker.run()):
        delivered = await eventually(
            lambda: outbox.list(state=DeliveryState.DELIVERED, limit=100),
            lambda page: len(page.items) == len(ids),
        )
    assert sorted(d.id for d in delivered.items) == sorted(ids)
    assert len(sink.calls) == len(ids)


async def test_run_sends_concurrently_and_records_every_outcome(outbox: OutboxStore) -> None:
    ok = await put(outbox)
    dead = await put(outbox, kind="slack", target="default")
    retry = await put(outbox, target="https://flaky.example.com/")

    class Flaky(ScriptedSink):
        async def send(self, outgoing: Outgoing) -> SendResult:
            if outgoing.target == "https://flaky.example.com/":
                self.calls.append(outgoing)
                raise TemporaryFailure("HTTP 502")
            return await super().send(outgoing)

    worker = make_worker(outbox, Flaky("webhook"), poll_interval=3600.0)
    async with running(worker.run()):
        await until(lambda: sum(worker.outcomes.values()) == 3)
    assert worker.outcomes == {
        ("webhook", "delivered"): 1,
        ("slack", "dead"): 1,
        ("webhook", "retry"): 1,
    }
    states = {id: (await stored(outbox, id)).state for id in (ok, dead, retry)}
    assert states == {
        ok: DeliveryState.DELIVERED,
        dead: DeliveryState.DEAD,
        retry: DeliveryState.PENDING,
    }


async def test_the_worker_outlives_a_database_outage(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="slurmcast.delivery")
    down = backend.make_down()
    async with outbox_on(down.url) as (store, _):
        sink = ScriptedSink("webhook")
        worker = make_worker(store, sink, poll_interval=0.01)
        async with running(worker.run()) as task:
            await until(lambda: "cannot claim deliveries (attempt 2)" in caplog.text or task.done())
            assert not task.done() and sink.calls == []
            await down.bring_up()
            id = await put(store)
            worker.wake()
            await eventually(
                lambda: stored(store, id), lambda d: d.state is DeliveryState.DELIVERED
            )
            assert not task.done()
        assert len(sink.calls) == 1


# --- the real sinks behind the worker


async def test_a_webhook_is_signed_and_retried_with_the_same_body(outbox: OutboxStore) -> None:
    async with hook_receiver(fail=1) as receiver:
        id = await put(outbox, target=receiver.url())
        sink = WebhookSink(HttpSinkSettings(policy=LOCAL), Secret(WEBHOOK_SECRET))
        clock = Clock(START)
        worker = make_worker(outbox, sink, clock=clock)
        await attempt(outbox, worker, clock.now)
        failed = await stored(outbox, id)
        assert failed.state is DeliveryState.PENDING
        assert failed.last_error is not None and "HTTP 500" in failed.last_error
        clock.now = failed.next_attempt_at
        await attempt(outbox, worker, clock.now)
        done = await stored(outbox, id)
        assert done.state is DeliveryState.DELIVERED and done.attempts == 2
    first, second = receiver.posts
    assert first.signed and second.signed
    assert (first.status, second.status) == (500, 200)
    assert first.key == second.key == done.idempotency_key
    assert first.body == second.body
    assert first.body["delivery_id"] == done.idempotency_key
    assert first.body["job"]["job_id"] == "7" and first.body["event"] == "job_failed"


async def test_a_mail_to_default_reaches_the_owners_mailbox(outbox: OutboxStore) -> None:
    async with smtp_relay() as relay:
        relay.mailbox.refuse["carol@example.edu"] = "550 5.1.1 no such user"
        sent = await put(outbox, kind="email", target="default", owner="bob")
        refused = await put(outbox, kind="email", target="default", owner="carol")
        smtp = SmtpSettings(
            host="127.0.0.1",
            port=relay.port,
            tls=TlsMode.NONE,
            from_address="slurmcast@example.edu",
            timeout_s=5.0,
        )
        worker = make_worker(outbox, EmailSink(smtp), address_template="{user}@example.edu")
        await attempt(outbox, worker, START)
    (envelope,) = relay.mailbox.received
    assert envelope.rcpt_tos == ["bob@example.edu"]
    assert relay.mailbox.message()["Subject"].startswith("[slurmcast] Job 7 (train) FAILED")
    assert (await stored(outbox, sent)).state is DeliveryState.DELIVERED
    dead = await stored(outbox, refused)
    assert dead.state is DeliveryState.DEAD
    assert dead.last_error is not None and "550" in dead.last_error


# --- cut off, and rows nothing can read


async def test_a_batch_cut_off_by_a_shutdown_records_what_was_sent(outbox: OutboxStore) -> None:
    ids = [await put(outbox) for _ in range(4)]
    sink = ScriptedSink("webhook", OK, OK, OK, Hang())
    worker = make_worker(outbox, sink)
    task = asyncio.create_task(worker.run())
    await until(lambda: len(sink.calls) == 4)
    # The shutdown could not wait for the fourth: the worker is cancelled mid-batch.
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    states = [(await stored(outbox, id)).state for id in ids]
    # The three sent are recorded (not sent again after their lease); the fourth comes back.
    assert states == [DeliveryState.DELIVERED] * 3 + [DeliveryState.DELIVERING]
    assert sink.cancelled == 1


async def test_a_row_nothing_can_read_is_a_dead_letter_and_the_rest_go(tmp_path: Path) -> None:
    async with migrated_outbox(f"sqlite+aiosqlite:///{tmp_path}/n.db") as outbox:
        bad, good = await put(outbox), await put(outbox)
        async with outbox._engine.begin() as conn:  # another program's idea of a date
            await conn.execute(
                text("UPDATE deliveries SET created_at = '2026-13-45 99:00:00' WHERE id = :id"),
                {"id": bad},
            )
        sink = ScriptedSink("webhook")
        worker = make_worker(outbox, sink, clock=lambda: START + timedelta(hours=1))
        async with running(worker.run()) as task:
            await eventually(
                lambda: stored(outbox, good), lambda d: d.state is DeliveryState.DELIVERED
            )
            assert not task.done()
        async with outbox._engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT state, last_error FROM deliveries WHERE id = :id"), {"id": bad}
                )
            ).one()
    assert tuple(row) == ("dead", "the stored delivery cannot be read")
    assert [call.delivery_id for call in sink.calls] == [good]
