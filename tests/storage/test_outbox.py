"""The outbox of deliveries and the notification rules, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from slurmcast.core.notifications import Notification, NotificationType, Severity
from slurmcast.errors import ErrorCode, ProtocolError, StorageError
from slurmcast.storage.availability import Availability
from slurmcast.storage.engine import create_engine, ensure_sqlite_directory, parse_url
from slurmcast.storage.migrate import alembic_config, upgrade
from slurmcast.storage.models import Base, DeliveryRow, NotificationRow
from slurmcast.storage.outbox import (
    MAX_PAGE,
    Delivery,
    DeliveryState,
    DestinationKind,
    NewDelivery,
    OutboxStore,
    Outcome,
    delivery_values,
    write_notifications,
)
from slurmcast.storage.rows import row_values

from support.builders import T0
from support.databases import Backend

VERSION_TABLE = "slurmcast_alembic_version"
LEASE = 30.0


def note(id: str, *, user: str | None = "alice", at: datetime = T0) -> Notification:
    return Notification(
        id=id,
        type=NotificationType.JOB_FAILED,
        title="Job Failed",
        message=f"Job #{id} (train) failed with exit code 3",
        severity=Severity.ERROR,
        created_at=at,
        user=user,
        details={"job_id": id, "exit_code": 3},
    )


def to(
    notification_id: str,
    *,
    owner: str = "alice",
    rule_id: str = "rule-1",
    kind: DestinationKind = DestinationKind.EMAIL,
    target: str = "alice@example.edu",
    key: str | None = None,
) -> NewDelivery:
    return NewDelivery(
        notification_id=notification_id,
        owner=owner,
        rule_id=rule_id,
        kind=kind,
        target=target,
        payload={"subject": f"Job {notification_id} failed"},
        idempotency_key=key,
    )


def make_engine(url: str) -> AsyncEngine:
    parsed = parse_url(url)
    ensure_sqlite_directory(parsed)
    return create_engine(parsed)


@asynccontextmanager
async def outbox(url: str) -> AsyncIterator[OutboxStore]:
    engine = make_engine(url)
    try:
        await upgrade(engine)
        yield OutboxStore(engine)
    finally:
        await engine.dispose()


async def count(store: OutboxStore, table: str) -> int:
    engine: AsyncEngine = store._engine
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def fill(store: OutboxStore, n: int, *, owner: str = "alice") -> list[str]:
    """``n`` notifications with one delivery each; the delivery ids, oldest first."""
    notes = [note(f"{owner}-n{i}", user=owner, at=T0 + timedelta(seconds=i)) for i in range(n)]
    deliveries = [
        NewDelivery(
            f"{owner}-n{i}",
            owner,
            "rule-1",
            DestinationKind.WEBHOOK,
            "https://hooks.example.edu/x",
            {"i": i},
            id=f"{owner}-d{i:03}",
        )
        for i in range(n)
    ]
    for i, (n_, d) in enumerate(zip(notes, deliveries, strict=True)):
        await store.add_with_notification([n_], [d], T0 + timedelta(seconds=i))
    return [d.id for d in deliveries if d.id is not None]


# -- the schema -----------------------------------------------------------------


def outbox_schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    version = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    tables = set(inspector.get_table_names())
    result: dict[str, Any] = {"tables": tables, "version": [row[0] for row in version]}
    for table in ("deliveries", "notify_rules"):
        if table not in tables:
            continue
        result[table] = {
            "nullable": {c["name"]: c["nullable"] for c in inspector.get_columns(table)},
            # PostgreSQL lists a unique constraint's own index too.
            "indexes": {
                i["name"]: tuple(i["column_names"])
                for i in inspector.get_indexes(table)
                if "duplicates_constraint" not in i
            },
            "unique": {
                u["name"]: tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
            },
            "foreign_keys": [
                (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
                for fk in inspector.get_foreign_keys(table)
            ],
        }
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    result["drift"] = list(compare_metadata(context, Base.metadata))
    return result


async def test_migration_0002_creates_the_models_outbox_and_downgrades_to_0001(
    backend: Backend,
) -> None:
    engine = make_engine(backend.url)
    config = alembic_config()

    def downgrade(connection: Connection) -> set[str]:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
        return set(inspect(connection).get_table_names())

    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            schema = await conn.run_sync(outbox_schema)
        async with engine.begin() as conn:
            after_downgrade = await conn.run_sync(downgrade)
        await upgrade(engine)  # and up again
        async with engine.connect() as conn:
            again = await conn.run_sync(outbox_schema)
    finally:
        await engine.dispose()

    assert schema["version"] == ["0002"]
    assert schema["tables"] == {"notifications", "deliveries", "notify_rules", VERSION_TABLE}
    # The models and the migrations describe the same schema.
    assert schema["drift"] == []
    deliveries = schema["deliveries"]
    assert {name for name, null in deliveries["nullable"].items() if null} == {
        "last_error",
        "claimed_by",
        "claimed_until",
        "delivered_at",
    }
    assert deliveries["indexes"] == {
        "ix_deliveries_notification_id": ("notification_id",),
        "ix_deliveries_created_at": ("created_at",),
        "ix_deliveries_state_next_attempt_at": ("state", "next_attempt_at"),
        "ix_deliveries_owner_state_created_at": ("owner", "state", "created_at"),
    }
    assert deliveries["unique"] == {"uq_deliveries_idempotency_key": ("idempotency_key",)}
    assert deliveries["foreign_keys"] == [(["notification_id"], "notifications", ["id"])]
    rules = schema["notify_rules"]
    assert not any(rules["nullable"].values())
    assert rules["indexes"] == {"ix_notify_rules_owner": ("owner",)}
    assert after_downgrade == {"notifications", VERSION_TABLE}
    assert again == schema


async def test_the_state_check_refuses_an_unknown_state(backend: Backend) -> None:
    async with outbox(backend.url) as store:
        await fill(store, 1)
        engine: AsyncEngine = store._engine
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE deliveries SET state = 'lost'"))
        assert [d.state for d in (await store.list()).items] == [DeliveryState.PENDING]


# -- writing with the notification ------------------------------------------------


async def test_a_notification_and_its_deliveries_are_written_together(backend: Backend) -> None:
    async with outbox(backend.url) as store:
        deliveries = [
            to("n1"),
            to("n1", kind=DestinationKind.SLACK, target="https://hooks.slack.example/T/B/X"),
        ]
        inserted = await store.add_with_notification([note("n1"), note("n2")], deliveries, T0)
        assert inserted == {"n1", "n2"}
        page = await store.list()
        assert {(d.notification_id, d.kind) for d in page.items} == {
            ("n1", "email"),
            ("n1", "slack"),
        }
        for d in page.items:
            assert d.state is DeliveryState.PENDING
            assert (d.attempts, d.next_attempt_at, d.created_at) == (0, T0, T0)
            assert (d.claimed_by, d.claimed_until, d.delivered_at, d.last_error) == (None,) * 4
            assert d.payload == {"subject": "Job n1 failed"}
            assert d.id.startswith("dlv-") and len(d.idempotency_key) == 64

        # Writing the same notification again writes nothing, its deliveries included.
        again = await store.add_with_notification(
            [note("n1")], [to("n1", rule_id="rule-2")], T0 + timedelta(minutes=1)
        )
        assert again == set()
        assert await count(store, "deliveries") == 2
        assert await count(store, "notifications") == 2


async def test_a_delivery_planned_twice_is_stored_once(backend: Backend) -> None:
    """The same idempotency key again (a transition re-planned after a failover) adds no
    second delivery, and does not cost the notification it came with."""
    async with outbox(backend.url) as store:
        await store.add_with_notification([note("n0")], [to("n0", key="job-7:alice:email")], T0)
        inserted = await store.add_with_notification(
            [note("n1"), note("n2")],
            [to("n1"), to("n2", key="job-7:alice:email")],
            T0,
        )
        assert inserted == {"n1", "n2"}
        # Within one call too.
        await store.add_with_notification(
            [note("n3")], [to("n3", key="k"), to("n3", rule_id="rule-2", key="k")], T0
        )
        async with store._engine.connect() as conn:
            stored = (await conn.execute(select(NotificationRow.id))).scalars().all()
            owners = (await conn.execute(select(DeliveryRow.notification_id))).scalars().all()
    assert sorted(stored) == ["n0", "n1", "n2", "n3"]
    assert sorted(owners) == ["n0", "n1", "n3"]


async def test_the_writer_function_joins_the_callers_transaction(backend: Backend) -> None:
    async with outbox(backend.url) as store:
        engine: AsyncEngine = store._engine
        rows = [row_values(note("n1"))]
        deliveries = [delivery_values(to("n1"), T0)]
        with pytest.raises(RuntimeError):
            async with engine.begin() as conn:
                assert await write_notifications(conn, rows, deliveries) == {"n1"}
                raise RuntimeError("the caller's transaction fails after the write")
        assert (await count(store, "notifications"), await count(store, "deliveries")) == (0, 0)
        async with engine.begin() as conn:
            assert await write_notifications(conn, rows, deliveries) == {"n1"}
        assert (await count(store, "notifications"), await count(store, "deliveries")) == (1, 1)


async def test_values_that_do_not_fit_are_refused_before_writing(backend: Backend) -> None:
    async with outbox(backend.url) as store:
        with pytest.raises(ProtocolError, match="owner"):
            await store.add_with_notification([note("n1")], [to("n1", owner="x" * 65)], T0)
        with pytest.raises(ProtocolError, match="idempotency key"):
            await store.add_with_notification([note("n1")], [to("n1", key="k" * 129)], T0)
        with pytest.raises(ValueError, match="not given"):
            await store.add_with_notification([note("n1")], [to("elsewhere")], T0)
        with pytest.raises(ProtocolError, match="instance id"):
            await store.claim("i" * 65, T0, LEASE, 10)
        assert await count(store, "notifications") == 0


# -- claiming -------------------------------------------------------------------


async def test_claim_takes_due_rows_oldest_first_and_holds_them(backend: Backend) -> None:
    async with outbox(backend.url) as store:
        ids = await fill(store, 5)
        now = T0 + timedelta(seconds=2.5)  # the last two are not due yet
        claimed = await store.claim("inst-a", now, LEASE, 2)
        assert [d.id for d in claimed] == ids[:2]
        until = now + timedelta(seconds=LEASE)
        for d in claimed:
            assert d.state is DeliveryState.DELIVERING
            assert (d.claimed_by, d.claimed_until, d.attempts) == ("inst-a", until, 1)
            assert d.next_attempt_at == until
        assert [d.id for d in await store.claim("inst-a", now, LEASE, 10)] == ids[2:3]
        assert await store.claim("inst-a", now, LEASE, 10) == []
        assert await store.claim("inst-a", now, LEASE, 0) == []
        stored = await store.get(ids[0])
        assert stored is not None and stored.claimed_by == "inst-a"


async def test_two_concurrent_claimers_never_take_the_same_row(backend: Backend) -> None:
    async with outbox(backend.url) as store:
        ids = await fill(store, 20)
        now = T0 + timedelta(hours=1)
        first, second = await asyncio.gather(
            store.claim("inst-a", now, LEASE, 15), store.claim("inst-b", now, LEASE, 15)
        )
    a, b = {d.id for d in first}, {d.id for d in second}
    assert not a & b
    assert a | b == set(ids)
    assert {d.claimed_by for d in first} <= {"inst-a"}
    assert {d.claimed_by for d in second} <= {"inst-b"}


async def test_claimers_on_separate_engines_take_each_row_once(backend: Backend) -> None:
    async with outbox(backend.url) as store:
        ids = await fill(store, 60)
    now = T0 + timedelta(hours=1)
    engines = [make_engine(backend.url) for _ in range(2)]
    stores = [OutboxStore(e) for e in engines]
    taken: dict[str, list[str]] = {}

    async def worker(name: str, store: OutboxStore) -> None:
        while batch := await store.claim(name, now, LEASE, 4):
            for d in batch:
                taken.setdefault(d.id, []).append(name)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(
            *(worker(f"inst-{i}", stores[i % 2]) for i in range(6)),
        )
    finally:
        for e in engines:
            await e.dispose()
    assert sorted(taken) == ids
    assert all(len(by) == 1 for by in taken.values()), {
        k: v for k, v in taken.items() if len(v) > 1
    }


async def test_an_expired_lease_is_claimed_again_and_fences_the_first_claimer(
    backend: Backend,
) -> None:
    async with outbox(backend.url) as store:
        [id] = await fill(store, 1)
        [first] = await store.claim("inst-a", T0, LEASE, 10)
        # Still held: nobody else gets it.
        assert await store.claim("inst-b", T0 + timedelta(seconds=LEASE - 1), LEASE, 10) == []
        # inst-a was killed mid-delivery; its lease runs out.
        later = T0 + timedelta(seconds=LEASE)
        [second] = await store.claim("inst-b", later, LEASE, 10)
        assert (second.id, second.claimed_by, second.attempts) == (id, "inst-b", 2)
        assert second.idempotency_key == first.idempotency_key
        # inst-a, back late, may no longer record anything about it.
        assert not await store.failed(id, "timeout", later, later, by="inst-a")
        assert not await store.delivered(id, later, by="inst-a")
        assert await store.delivered(id, later, by="inst-b")
        done = await store.get(id)
    assert done is not None
    assert (done.state, done.delivered_at, done.claimed_by) == (
        DeliveryState.DELIVERED,
        later,
        "inst-b",
    )
    assert done.claimed_until is None


# -- transitions ------------------------------------------------------------------


async def test_failed_reschedules_then_dead_then_retry(backend: Backend) -> None:
    async with outbox(backend.url) as store:
        [id] = await fill(store, 1)
        t1 = T0 + timedelta(seconds=1)
        assert not await store.failed(id, "not claimed", None, t1)  # only a delivering row
        await store.claim("inst-a", t1, LEASE, 1)
        retry_at = t1 + timedelta(seconds=10)
        assert await store.failed(id, "HTTP 503", retry_at, t1, by="inst-a")
        pending = await store.get(id)
        assert pending is not None
        assert (pending.state, pending.next_attempt_at, pending.last_error) == (
            DeliveryState.PENDING,
            retry_at,
            "HTTP 503",
        )
        assert pending.claimed_until is None and pending.attempts == 1
        assert await store.claim("inst-a", retry_at - timedelta(seconds=1), LEASE, 1) == []
        [again] = await store.claim("inst-a", retry_at, LEASE, 1)
        assert again.attempts == 2

        long_error = "E" * 5000
        assert await store.failed(id, long_error, None, retry_at)
        dead = await store.get(id)
        assert dead is not None and dead.state is DeliveryState.DEAD
        assert dead.last_error is not None and len(dead.last_error) == 1000
        assert dead.last_error.endswith("…")
        assert await store.claim("inst-a", retry_at + timedelta(days=1), LEASE, 1) == []
        assert not await store.delivered(id, retry_at)

        # Only the owner (or an admin) retries, and only a dead delivery.
        assert await store.retry(id, retry_at, owner="bob") is None
        back = await store.retry(id, retry_at + timedelta(hours=1), owner="alice")
        assert back is not None
        assert (back.state, back.attempts, back.next_attempt_at) == (
            DeliveryState.PENDING,
            0,
            retry_at + timedelta(hours=1),
        )
        assert back.last_error == dead.last_error
        assert await store.retry(id, retry_at) is None  # not dead any more
        [third] = await store.claim("inst-b", retry_at + timedelta(hours=1), LEASE, 1)
        assert third.attempts == 1
        assert await store.delivered(id, retry_at + timedelta(hours=1))
        assert not await store.delivered(id, retry_at + timedelta(hours=2))  # once
        assert await store.retry("missing", retry_at) is None


# -- reading --------------------------------------------------------------------


async def test_a_batchs_outcomes_are_recorded_together(backend: Backend) -> None:
    async with outbox(backend.url) as store:
        ids = await fill(store, 5)
        now = T0 + timedelta(seconds=5)
        claimed = await store.claim("inst-a", now, LEASE, 4)
        assert [d.id for d in claimed] == ids[:4]
        changed = await store.record(
            [
                Outcome.delivered(ids[0], now),
                Outcome.delivered(ids[1], now),
                Outcome.failed(ids[2], "HTTP 503", now + timedelta(minutes=1), now),
                Outcome.postponed(ids[3], now + timedelta(seconds=30)),
                Outcome.delivered(ids[4], now),  # never claimed: left alone
            ],
            by="inst-a",
        )
        assert changed == 4
        states = {d.id: d for d in (await store.list(limit=10)).items}
        assert [states[i].state for i in ids] == [
            DeliveryState.DELIVERED,
            DeliveryState.DELIVERED,
            DeliveryState.PENDING,
            DeliveryState.PENDING,
            DeliveryState.PENDING,
        ]
        assert states[ids[0]].delivered_at == now
        assert (states[ids[2]].attempts, states[ids[2]].last_error) == (1, "HTTP 503")
        assert (states[ids[3]].attempts, states[ids[3]].last_error) == (0, None)
        # Another claimer's outcomes change nothing.
        [again] = await store.claim("inst-a", now + timedelta(minutes=2), LEASE, 1)
        assert await store.record([Outcome.delivered(again.id, now)], by="inst-b") == 0
        assert await store.record([]) == 0


async def test_list_filters_pages_and_owner_scoping(backend: Backend) -> None:
    async with outbox(backend.url) as store:
        alice = await fill(store, 5, owner="alice")
        bob = await fill(store, 3, owner="bob")
        now = T0 + timedelta(hours=1)
        await store.claim("inst-a", now, LEASE, 2)  # alice-d000, bob-d000 (same times, id order)
        await store.failed("alice-d000", "refused", None, now)

        def ids(page_items: list[Delivery]) -> list[str]:
            return [d.id for d in page_items]

        everyone = await store.list(limit=MAX_PAGE + 10)
        # Newest first: (created_at, id) descending.
        assert ids(everyone.items) == [
            "alice-d004",
            "alice-d003",
            "bob-d002",
            "alice-d002",
            "bob-d001",
            "alice-d001",
            "bob-d000",
            "alice-d000",
        ]
        assert everyone.next_before is None
        assert ids((await store.list(owner="alice")).items) == alice[::-1]
        assert ids((await store.list(owner="bob")).items) == bob[::-1]
        assert ids((await store.list(owner="carol")).items) == []
        assert ids((await store.list(state=DeliveryState.DEAD)).items) == ["alice-d000"]
        assert ids((await store.list(state=DeliveryState.DEAD, owner="bob")).items) == []
        assert ids((await store.list(state=DeliveryState.DELIVERING, owner="bob")).items) == [
            "bob-d000"
        ]

        first = await store.list(owner="alice", limit=2)
        assert ids(first.items) == ["alice-d004", "alice-d003"] and first.next_before
        second = await store.list(owner="alice", limit=2, before=first.next_before)
        assert ids(second.items) == ["alice-d002", "alice-d001"] and second.next_before
        third = await store.list(owner="alice", limit=2, before=second.next_before)
        assert ids(third.items) == ["alice-d000"] and third.next_before is None

        with pytest.raises(ProtocolError):
            await store.list(before="not a cursor")
        assert await store.get("bob-d001", owner="alice") is None
        found = await store.get("bob-d001", owner="bob")
        assert found is not None and found.data()["created_at"] == "2026-01-01T12:00:01Z"
        assert await store.get("bob-d001") == found
        assert await store.get("missing") is None


# -- rules --------------------------------------------------------------------


async def test_rules_crud_is_scoped_to_their_owner(backend: Backend) -> None:
    spec: dict[str, Any] = {
        "events": ["job_failed", "job_timeout"],
        "partition": "gpu",
        "destination": {"kind": "email"},
    }
    async with outbox(backend.url) as store:
        mine = await store.add_rule("alice", spec, T0)
        theirs = await store.add_rule(
            "bob", {"events": ["job_completed"]}, T0 + timedelta(seconds=0.5), enabled=False
        )
        later = await store.add_rule("alice", {"events": []}, T0 + timedelta(seconds=1), id="r-x")
        assert mine.id.startswith("rule-") and later.id == "r-x"

        assert await store.rules_for("alice") == [mine, later]
        assert await store.rules_for("bob") == [theirs]
        assert await store.rules_for("carol") == []
        assert await store.all_rules() == [mine, theirs, later]
        assert await store.all_rules(enabled_only=True) == [mine, later]
        assert await store.get_rule(mine.id, owner="bob") is None
        assert await store.get_rule(mine.id, owner="alice") == mine

        t1 = T0 + timedelta(minutes=5)
        assert await store.update_rule(mine.id, t1, owner="bob", enabled=False) is None
        changed = await store.update_rule(mine.id, t1, owner="alice", enabled=False)
        assert changed is not None
        assert (changed.spec, changed.enabled, changed.created_at, changed.updated_at) == (
            spec,
            False,
            T0,
            t1,
        )
        by_admin = await store.update_rule(theirs.id, t1, spec={"events": ["job_failed"]})
        assert by_admin is not None and by_admin.spec == {"events": ["job_failed"]}
        assert by_admin.enabled is False
        assert await store.update_rule("missing", t1) is None
        assert await store.all_rules(enabled_only=True) == [later]

        assert not await store.delete_rule(mine.id, owner="bob")
        assert await store.delete_rule(mine.id, owner="alice")
        assert not await store.delete_rule(mine.id)
        assert await store.delete_rule(theirs.id)  # an admin
        assert await store.all_rules() == [later]
        assert later.data()["created_at"] == "2026-01-01T12:00:01Z"

        with pytest.raises(ProtocolError):
            await store.add_rule("alice", {}, T0, id="r-x")  # the id is taken
        with pytest.raises(ProtocolError, match="owner"):
            await store.add_rule("", {}, T0)


# -- outages ----------------------------------------------------------------------


async def test_a_database_down_is_a_storage_error_and_reported(backend: Backend) -> None:
    down = backend.make_down()
    reasons: list[str] = []

    async def on_unavailable(reason: str) -> None:
        reasons.append(reason)

    parsed = parse_url(down.url)
    engine = create_engine(parsed)
    availability = Availability("test", None, on_unavailable)
    store = OutboxStore(engine, availability=availability, prepare=lambda: upgrade(engine))
    try:
        with pytest.raises(StorageError) as caught:
            await store.claim("inst-a", T0, LEASE, 10)
        assert caught.value.code is ErrorCode.STORAGE_UNAVAILABLE and caught.value.temporary
        with pytest.raises(StorageError):
            await store.rules_for("alice")
        assert len(reasons) == 1 and not availability.available

        await down.bring_up()
        ensure_sqlite_directory(parsed)
        assert await store.rules_for("alice") == []
        assert not availability.available  # a read does not end an outage
        await store.add_rule("alice", {}, T0)
        assert availability.available
    finally:
        await engine.dispose()
