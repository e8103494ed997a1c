"""The delivery planner: the enabled rules read from a real outbox (SQLite and PostgreSQL),
kept through a database outage, reloaded when changed; and the plan of a poller step, pending
jobs included, written to the outbox once however often it is planned."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

import slurmcast.delivery.planner as planner_module
from slurmcast.core.events import JobStateChanged, job_payload
from slurmcast.core.notifications import notifications_for
from slurmcast.core.notify.plan import Planned
from slurmcast.core.notify.rules import FINAL_EVENTS, Rule
from slurmcast.core.records import JobRecord, JobsListing, JobState
from slurmcast.delivery.planner import DeliveryPlanner
from slurmcast.errors import PublishError
from slurmcast.monitors.poller import ClusterMonitor, MonitorSettings
from slurmcast.node import Node
from slurmcast.sources.simulator.source import SimulatorSource
from slurmcast.storage.outbox import DestinationKind, NewDelivery, OutboxStore

from support.builders import T0, finished, job
from support.databases import ADMIN_DSN, Backend, DownDatabase
from support.notify_rules import LOCAL, STRICT, Ids, make_rule, migrated_outbox, outbox_on
from support.waiting import running, until

NOW = T0 + timedelta(hours=4)
ENDS = sorted(event.value for event in FINAL_EVENTS)
HOOK = {"kind": "webhook", "target": "https://hooks.example.com/a"}
LOCAL_HOOK = {"kind": "webhook", "target": "http://127.0.0.1:9/hook"}


@pytest.fixture
async def outbox(backend: Backend) -> AsyncIterator[OutboxStore]:
    async with migrated_outbox(backend.url) as store:
        yield store


_SECONDS = itertools.count(1)


async def save(outbox: OutboxStore, rule: Rule, *, enabled: bool = True) -> None:
    """Store a rule as the API does (``Rule.data()``), each a second after the last."""
    at = T0 + timedelta(seconds=next(_SECONDS))
    await outbox.add_rule(rule.owner, rule.data(), at, enabled=enabled, id=rule.id)


def ended(
    job_id: str = "9", state: JobState = JobState.FAILED, *, poller: str = "poll-", **fields: Any
) -> list[object]:
    """A poller step where a job ended: the change and the poller's notification of it."""
    change = JobStateChanged(finished(job_id, state, **fields), JobState.RUNNING)
    return [change, *notifications_for([change], NOW, Ids(poller))]


async def store_planned(outbox: OutboxStore, planned: Sequence[Planned], now: datetime) -> None:
    """What the poller and the store's writer do with a plan (``NotificationStore.enqueue``)."""
    await outbox.add_with_notification(
        [p.notification for p in planned],
        [
            NewDelivery(
                notification_id=p.notification.id,
                owner=d.owner,
                rule_id=d.rule_id,
                kind=DestinationKind(d.kind),
                target=d.target,
                payload=d.payload,
                idempotency_key=d.idempotency_key,
            )
            for p in planned
            for d in p.deliveries
        ],
        now,
    )


# --- loading the rules


async def test_reload_reads_the_enabled_rules(outbox: OutboxStore) -> None:
    mail = make_rule("mail", "job_failed", admin=False)
    hook = make_rule("hook", *ENDS, owner="bob", destination=HOOK, admin=False)
    alerts = make_rule("alerts", "alert_firing", owner="root", destination={"kind": "slack"})
    off = make_rule("off", "job_failed")
    for rule in (mail, hook, alerts):
        await save(outbox, rule)
    await save(outbox, off, enabled=False)
    planner = DeliveryPlanner(outbox, STRICT, Ids())
    assert (planner.rules, planner.reloads) == ([], 0)
    await planner.reload()
    assert planner.rules == [mail, hook, alerts]
    assert planner.reloads == 1
    # Disabling one takes it out at the next reload; enabling one puts it in.
    await outbox.update_rule("mail", NOW, enabled=False)
    await outbox.update_rule("off", NOW, enabled=True)
    await planner.reload()
    assert planner.rules == [hook, alerts, off]
    assert planner.reloads == 2


async def test_a_rule_the_url_policy_refuses_is_skipped_and_logged(
    outbox: OutboxStore, caplog: pytest.LogCaptureFixture
) -> None:
    mail = make_rule("mail", "job_failed")
    lab = make_rule("lab", "job_failed", destination=LOCAL_HOOK, url_policy=LOCAL)
    await save(outbox, lab)
    await save(outbox, mail)
    # Stored unreadable, by hand or by an older version.
    await outbox.add_rule("alice", {"events": "job_failed"}, T0, id="garbled")
    await outbox.add_rule("Not A User!", mail.data(), T0, id="bad-owner")
    planner = DeliveryPlanner(outbox, STRICT, Ids())
    with caplog.at_level(logging.WARNING, logger="slurmcast.delivery"):
        await planner.reload()
    assert planner.rules == [mail]
    assert planner.reloads == 1
    text = caplog.text
    assert "notification rule lab of alice is not used" in text
    assert "notification rule garbled of alice is not used" in text
    assert "bad-owner" in text
    # The policy that allowed it when it was saved still does.
    lenient = DeliveryPlanner(outbox, LOCAL, Ids())
    await lenient.reload()
    assert {r.id for r in lenient.rules} == {"lab", "mail"}


async def test_the_rules_restored_plan_as_the_saved_ones(outbox: OutboxStore) -> None:
    rules = [
        make_rule("mail", *ENDS, admin=False, partitions=["gpu"], name_pattern="train*"),
        make_rule("hook", "job_failed", destination=HOOK, admin=False, min_run_seconds=60),
    ]
    for rule in rules:
        await save(outbox, rule)
    planner = DeliveryPlanner(outbox, STRICT, Ids())
    await planner.reload()
    events = ended("9", partition="gpu", name="train_bert")
    planned = planner.plan(events, NOW)
    assert [(d.rule_id, d.kind) for p in planned for d in p.deliveries] == [
        ("mail", "email"),
        ("hook", "webhook"),
    ]


# --- outages


@contextlib.contextmanager
def sqlite_outage(url: str) -> Iterator[None]:
    """The SQLite file's directory replaced by a file (as ``backend.make_down`` does), then
    put back, data and all."""
    database = make_url(url).database
    assert database is not None
    holder = Path(database).parent.parent  # <tmp>/blocker, holding data/slurmcast.db
    away = holder.with_name("blocker.away")
    holder.rename(away)
    holder.write_text("")
    try:
        yield
    finally:
        holder.unlink()
        away.rename(holder)


@contextlib.asynccontextmanager
async def outage(backend: Backend, down: DownDatabase, engine: AsyncEngine) -> AsyncIterator[None]:
    """The database of ``down`` (up by now) goes away, and comes back with its data."""
    await engine.dispose()  # no pooled connection outlives the outage
    if backend.name == "sqlite":
        with sqlite_outage(down.url):
            yield
        return
    database = make_url(down.url).database
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            database,
        )
        try:
            yield
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()


async def test_an_outage_keeps_the_last_rules(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    down = backend.make_down()
    await down.bring_up()
    async with outbox_on(down.url) as (store, engine):
        mail = make_rule("mail", "job_failed")
        await save(store, mail)
        planner = DeliveryPlanner(store, STRICT, Ids())
        await planner.reload()
        assert planner.rules == [mail]
        async with outage(backend, down, engine):
            with caplog.at_level(logging.WARNING, logger="slurmcast.delivery"):
                await planner.reload()
            assert planner.rules == [mail]
            assert planner.reloads == 1  # not a reload
            assert "cannot read the notification rules (keeping 1)" in caplog.text
            # Planning goes on with them.
            assert len(planner.plan(ended(), NOW)) == 1
        hook = make_rule("hook", "job_failed", destination=HOOK)
        await save(store, hook)
        await planner.reload()
        assert planner.rules == [mail, hook]
        assert planner.reloads == 2


async def test_run_sets_loaded_while_the_database_is_down_and_reads_it_when_back(
    backend: Backend,
) -> None:
    down = backend.make_down()
    async with outbox_on(down.url) as (store, _):
        planner = DeliveryPlanner(store, STRICT, Ids(), refresh_s=3600)
        async with running(planner.run()) as task:
            await asyncio.wait_for(planner.loaded.wait(), 30)
            # The first poll is planned with no rules rather than waiting for the database.
            assert (planner.rules, planner.reloads, task.done()) == ([], 0, False)
            await down.bring_up()
            mail = make_rule("mail", "job_failed")
            await save(store, mail)
            planner.changed()
            await until(lambda: planner.reloads >= 1)
            assert planner.rules == [mail] and not task.done()


# --- run(): reloading


async def test_changed_reloads_at_once(outbox: OutboxStore) -> None:
    planner = DeliveryPlanner(outbox, STRICT, Ids(), refresh_s=3600)
    async with running(planner.run()) as task:
        await asyncio.wait_for(planner.loaded.wait(), 30)
        await until(lambda: planner.reloads == 1)
        assert planner.rules == []
        mail = make_rule("mail", "job_failed")
        await save(outbox, mail)
        planner.changed()
        await until(lambda: planner.reloads >= 2)
        assert planner.rules == [mail]
        await outbox.delete_rule("mail")
        planner.changed()
        await until(lambda: planner.reloads >= 3)
        assert planner.rules == [] and not task.done()


async def test_rules_changed_elsewhere_arrive_with_the_refresh(outbox: OutboxStore) -> None:
    planner = DeliveryPlanner(outbox, STRICT, Ids(), refresh_s=0.05)
    async with running(planner.run()):
        await asyncio.wait_for(planner.loaded.wait(), 30)
        mail = make_rule("mail", "job_failed")
        await save(outbox, mail)  # another instance's API: no changed() here
        await until(lambda: planner.rules == [mail])


# --- plan()


async def test_plan_without_rules_is_empty_and_makes_no_ids(outbox: OutboxStore) -> None:
    ids = Ids()
    planner = DeliveryPlanner(outbox, STRICT, ids)
    await planner.reload()
    pending = listing(job("5", JobState.PENDING, submit_time=NOW - timedelta(days=1)))
    start = JobStateChanged(job("6", JobState.RUNNING), JobState.PENDING)
    assert planner.plan([*ended(), start], NOW, pending) == []
    assert ids.issued == []


async def test_plan_uses_the_planners_ids_for_new_notifications(outbox: OutboxStore) -> None:
    ids = Ids("notif-")
    await save(outbox, make_rule("r1", "job_started"))
    planner = DeliveryPlanner(outbox, STRICT, ids)
    await planner.reload()
    start = JobStateChanged(job("6", JobState.RUNNING), JobState.PENDING)
    (one,) = planner.plan([start], NOW)
    assert one.new and one.notification.id == "notif-0" == ids.issued[0]


def listing(*jobs: JobRecord, taken_at: datetime = NOW) -> JobsListing:
    return JobsListing(taken_at, {j.job_id: j for j in jobs})


def waiting(job_id: str, user: str = "alice") -> JobRecord:
    return job(job_id, JobState.PENDING, user=user, submit_time=NOW - timedelta(hours=3))


async def test_pending_jobs_are_told_once_while_they_wait(
    outbox: OutboxStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await save(outbox, make_rule("w1", "job_pending_long", pending_minutes=60))
    await save(outbox, make_rule("b1", *ENDS, owner="bob"))  # bob asked for no pending news
    planner = DeliveryPlanner(outbox, STRICT, Ids())
    await planner.reload()
    built: list[str] = []

    def spy(record: JobRecord, previous: JobState | None = None) -> dict[str, Any]:
        built.append(record.job_id)
        return job_payload(record, previous)

    monkeypatch.setattr(planner_module, "job_payload", spy)
    running_job = job("6", JobState.RUNNING, submit_time=NOW - timedelta(hours=3))
    jobs = listing(waiting("5"), running_job, waiting("7", user="bob"))
    (one,) = planner.plan([], NOW, jobs)
    assert one.notification.details["job_id"] == "5"
    assert one.deliveries[0].rule_id == "w1"
    # Payloads are built only for the pending jobs of people with a pending rule.
    assert built == ["5"]
    # Still pending at the next poll: told already.
    assert planner.plan([], NOW + timedelta(minutes=1), jobs) == []
    # Without a jobs listing (a nodes step), pending jobs are not looked at.
    assert planner.plan([], NOW + timedelta(minutes=2)) == []


async def test_a_job_that_stops_pending_is_forgotten(outbox: OutboxStore) -> None:
    await save(outbox, make_rule("w1", "job_pending_long", pending_minutes=60))
    planner = DeliveryPlanner(outbox, STRICT, Ids())
    await planner.reload()
    first = planner.plan([], NOW, listing(waiting("5"), waiting("8")))
    assert len(first) == 2
    # Job 5 started; job 8 still waits.
    started = job("5", JobState.RUNNING, submit_time=NOW - timedelta(hours=3))
    assert planner.plan([], NOW, listing(started, waiting("8"))) == []
    # Requeued and pending again: told again (the same notification id, so stored once).
    (again,) = planner.plan([], NOW, listing(waiting("5"), waiting("8")))
    assert again.notification.id in {p.notification.id for p in first}
    assert again.notification.details["job_id"] == "5"


async def test_a_wait_is_measured_in_the_clusters_time(outbox: OutboxStore) -> None:
    """A simulated cluster's clock runs ahead of the wall clock: the listing's time counts."""
    await save(outbox, make_rule("wait", "job_pending_long", pending_minutes=60))
    planner = DeliveryPlanner(outbox, STRICT, Ids())
    await planner.reload()
    fresh = job("7", JobState.PENDING, submit_time=NOW - timedelta(minutes=30))
    assert planner.plan([], NOW, listing(fresh)) == []
    (told,) = planner.plan([], NOW, listing(fresh, taken_at=NOW + timedelta(hours=2)))
    assert told.notification.created_at == NOW
    assert "2h 30m" in told.notification.message


async def test_a_step_planned_twice_is_stored_once(outbox: OutboxStore) -> None:
    for rule in (
        make_rule("mail", *ENDS, "job_started"),
        make_rule("hook", *ENDS, destination=HOOK),
        make_rule("wait", "job_pending_long", pending_minutes=60),
    ):
        await save(outbox, rule)
    start = JobStateChanged(job("6", JobState.RUNNING), JobState.PENDING)
    jobs = listing(waiting("5"))
    first = DeliveryPlanner(outbox, STRICT, Ids("a-"))
    await first.reload()
    planned = first.plan([*ended("9", poller="poll-a-"), start], NOW, jobs)
    assert sum(len(p.deliveries) for p in planned) == 4
    await store_planned(outbox, planned, NOW)
    # A new leader re-diffs the same step: its notifications of the end and the start have
    # other ids (they are stored again), their deliveries the same keys (they are not).
    second = DeliveryPlanner(outbox, STRICT, Ids("b-"))
    await second.reload()
    again = second.plan([*ended("9", poller="poll-b-"), start], NOW + timedelta(seconds=5), jobs)
    ids_first = {p.notification.id for p in planned}
    ids_again = {p.notification.id for p in again}
    assert len(ids_first & ids_again) == 1  # only the pending job's, derived from the job
    assert sorted(keys(again)) == sorted(keys(planned))
    await store_planned(outbox, again, NOW + timedelta(seconds=5))
    stored = (await outbox.list(limit=100)).items
    assert sorted(d.idempotency_key for d in stored) == sorted(keys(planned))
    assert {d.notification_id for d in stored} <= ids_first


def keys(planned: Sequence[Planned]) -> list[str]:
    return [d.idempotency_key for p in planned for d in p.deliveries]


async def test_a_long_wait_told_before_a_restart_is_not_told_again(outbox: OutboxStore) -> None:
    await save(outbox, make_rule("wait", "job_pending_long", pending_minutes=60))
    before = DeliveryPlanner(outbox, STRICT, Ids(), clock=lambda: NOW)
    await before.reload()
    (told,) = before.plan([], NOW, listing(waiting("5")))
    await store_planned(outbox, [told], NOW)
    # A new process: its memory is empty, the database remembers.
    after = DeliveryPlanner(outbox, STRICT, Ids(), clock=lambda: NOW)
    await after.reload()
    assert after.plan([], NOW, listing(waiting("5"))) == []
    # Another job still is told.
    (other,) = after.plan([], NOW, listing(waiting("5"), waiting("6")))
    assert other.notification.details["job_id"] == "6"


class FailingOnceNode:
    """A node whose first commit fails as a broker outage makes it fail."""

    def __init__(self) -> None:
        self.fail = True
        self.committed: list[list[object]] = []

    async def commit(self, events: Sequence[object], now: datetime, **_: object) -> None:
        if self.fail:
            self.fail = False
            raise PublishError("the broker is down")
        self.committed.append(list(events))


async def test_a_long_wait_planned_in_a_step_that_failed_is_planned_again(
    outbox: OutboxStore,
) -> None:
    await save(outbox, make_rule("wait", "job_pending_long", pending_minutes=60))
    planner = DeliveryPlanner(outbox, STRICT, Ids())
    await planner.reload()
    node = FailingOnceNode()
    recorded: list[tuple[str, int]] = []
    monitor = ClusterMonitor(
        SimulatorSource(seed=1),
        cast(Node, node),
        MonitorSettings(),
        clock=lambda: NOW,
        new_id=Ids("m"),
        record=lambda note, deliveries: recorded.append((note.id, len(deliveries))),
        plan=planner.plan,
        unplan=planner.forget,
    )
    jobs = listing(waiting("5"))
    with pytest.raises(PublishError):
        await monitor._commit([], NOW, jobs=jobs)
    assert recorded == []
    # The poller re-diffs the same step: the long wait is planned, published and stored.
    await monitor._commit([], NOW, jobs=jobs)
    assert len(recorded) == 1 and recorded[0][1] == 1
    assert [type(e).__name__ for e in node.committed[0]] == ["Notification"]


async def test_a_planner_taking_over_reads_what_another_poller_told(outbox: OutboxStore) -> None:
    await save(outbox, make_rule("wait", "job_pending_long", pending_minutes=60))
    standby = DeliveryPlanner(outbox, STRICT, Ids(), clock=lambda: NOW)
    await standby.reload()  # started before the leader told anything
    leader = DeliveryPlanner(outbox, STRICT, Ids(), clock=lambda: NOW)
    await leader.reload()
    await store_planned(outbox, leader.plan([], NOW, listing(waiting("5"))), NOW)
    await standby.take_over()
    assert standby.plan([], NOW, listing(waiting("5"))) == []
