"""The background writer on a real SQLite database: batches, drops, outages and recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from slurmcast.storage.availability import Availability
from slurmcast.storage.writer import BatchWriter, Rows

#: Upper bound on any wait: a guard against hanging, not a speed target.
WAIT = 30.0

METADATA = MetaData()
ROWS = Table(
    "rows",
    METADATA,
    Column("id", String, primary_key=True),
    Column("n", Integer, nullable=False),
)


class Database:
    """A SQLite file whose directory can be made impossible to create (the database "down")."""

    def __init__(self, tmp_path: Path) -> None:
        self.blocker = tmp_path / "blocker"
        self.path = self.blocker / "data" / "rows.db"
        self.engine: AsyncEngine = create_async_engine(f"sqlite+aiosqlite:///{self.path}")
        self.migrate = True
        self.batches: list[list[str]] = []
        self.prepares = 0
        self.probes = 0
        self.unavailable: list[str] = []
        self.recovered = 0
        self.changed = asyncio.Condition()
        self.availability = Availability(
            "sqlite:///rows.db", None, self._on_unavailable, self._on_recovered
        )

    def down(self) -> None:
        self.blocker.write_text("")

    def up(self) -> None:
        self.blocker.unlink()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _on_unavailable(self, reason: str) -> None:
        self.unavailable.append(reason)
        await self._notify()

    async def _on_recovered(self) -> None:
        self.recovered += 1
        await self._notify()

    async def prepare(self) -> None:
        try:
            self.prepares += 1
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.migrate:
                async with self.engine.begin() as conn:
                    await conn.run_sync(METADATA.create_all)
        finally:
            await self._notify()

    async def insert(self, rows: Rows) -> None:
        self.batches.append([row["id"] for row in rows])
        async with self.engine.begin() as conn:
            await conn.execute(insert(ROWS), rows)

    async def probe(self) -> None:
        try:
            self.probes += 1
            async with self.engine.begin() as conn:
                await conn.execute(update(ROWS).where(ROWS.c.id.is_(None)).values(n=ROWS.c.n))
        finally:
            await self._notify()

    def writer(self, *, queue_limit: int = 1000, batch_size: int = 100) -> BatchWriter:
        return BatchWriter(
            insert=self.insert,
            prepare=self.prepare,
            probe=self.probe,
            availability=self.availability,
            queue_limit=queue_limit,
            batch_size=batch_size,
            retry_max=0.01,
        )

    async def stored(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(ROWS.c.id, ROWS.c.n))
            return {row.id: row.n for row in result}

    async def until(self, predicate: Any) -> None:
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(predicate)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path)
    yield database
    await database.engine.dispose()


def row(id: str, n: int = 1) -> dict[str, Any]:
    return {"id": id, "n": n}


async def test_rows_are_written_in_batches(db: Database) -> None:
    writer = db.writer(batch_size=2)
    for i in range(5):
        writer.put(row(f"r{i}", i))
    assert writer.pending == 5
    writer.start()
    await writer.close(WAIT)  # writes what is queued, then stops
    assert db.batches == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert await db.stored() == {f"r{i}": i for i in range(5)}
    assert (writer.written, writer.dropped, writer.pending) == (5, 0, 0)


async def test_rows_put_while_running_are_written(db: Database) -> None:
    writer = db.writer()
    writer.put(row("first"))
    writer.start()
    await db.until(lambda: bool(db.batches))
    writer.put(row("late"))
    await writer.close(WAIT)
    assert await db.stored() == {"first": 1, "late": 1}
    assert db.batches == [["first"], ["late"]]
    assert writer.written == 2


async def test_a_full_queue_drops_and_counts(db: Database) -> None:
    writer = db.writer(queue_limit=3)
    for i in range(5):
        writer.put(row(f"r{i}"))
    assert (writer.pending, writer.dropped) == (3, 2)
    writer.start()
    await writer.close(WAIT)
    assert set(await db.stored()) == {"r0", "r1", "r2"}  # the oldest are kept
    assert (writer.written, writer.dropped) == (3, 2)


async def test_rows_put_after_close_are_dropped(db: Database) -> None:
    writer = db.writer()
    writer.start()
    await writer.close(WAIT)
    writer.put(row("too-late"))
    assert (writer.pending, writer.dropped) == (0, 1)


async def test_a_row_the_database_refuses_is_dropped_alone(db: Database) -> None:
    writer = db.writer(batch_size=10)
    for id in ("a", "b", "a", "c"):  # the second "a" breaks the primary key
        writer.put(row(id, n=len(db.batches)))
    writer.start()
    await writer.close(WAIT)
    # The batch failed as a whole, then each row was written on its own.
    assert db.batches == [["a", "b", "a", "c"], ["a"], ["b"], ["a"], ["c"]]
    assert set(await db.stored()) == {"a", "b", "c"}
    assert (writer.written, writer.dropped, writer.pending) == (3, 1, 0)
    assert db.unavailable == []  # a refused row is not an outage


async def test_an_error_that_is_not_about_a_row_keeps_the_batch(db: Database) -> None:
    db.migrate = False  # "no such table": the database, not the rows, is at fault
    writer = db.writer(batch_size=10)
    writer.put(row("kept"))
    writer.start()
    await db.until(lambda: bool(db.unavailable))
    assert writer.pending == 1 and writer.dropped == 0
    db.migrate = True
    await db.until(lambda: db.recovered == 1)
    await writer.close(WAIT)
    assert await db.stored() == {"kept": 1}
    assert (writer.written, writer.dropped) == (1, 0)


async def test_an_outage_is_reported_once_retried_and_recovered(db: Database) -> None:
    db.down()
    writer = db.writer(batch_size=2)
    for i in range(3):
        writer.put(row(f"r{i}"))
    writer.start()
    await db.until(lambda: bool(db.unavailable))
    attempts = db.prepares
    await db.until(lambda: db.prepares >= attempts + 2)  # it keeps retrying...
    assert len(db.unavailable) == 1  # ...but reports the outage once
    assert not db.availability.available and db.availability.error
    assert writer.pending == 3 and writer.written == 0
    db.up()
    await db.until(lambda: db.recovered == 1)
    await writer.close(WAIT)
    assert set(await db.stored()) == {"r0", "r1", "r2"}
    assert db.availability.available and db.availability.error is None
    assert (writer.written, writer.dropped, len(db.unavailable), db.recovered) == (3, 0, 1, 1)


async def test_an_outage_seen_elsewhere_is_probed_until_the_database_is_back(
    db: Database,
) -> None:
    writer = db.writer()
    writer.start()  # nothing queued: it waits without touching the database
    db.down()
    # An API call found the database down while nothing was queued.
    await db.availability.failed(OSError("disk I/O error"), writer.pending)
    writer.wake()
    await db.until(lambda: db.probes >= 1 or db.prepares >= 3)
    assert db.recovered == 0 and not db.availability.available
    db.up()
    await db.until(lambda: db.recovered == 1)
    assert db.probes >= 1  # the check was a write that changes nothing
    assert db.batches == []
    await writer.close(WAIT)


async def test_close_gives_up_on_what_cannot_be_written(db: Database) -> None:
    db.down()
    writer = db.writer()
    writer.put(row("lost"))
    writer.start()
    await db.until(lambda: bool(db.unavailable))
    await writer.close(0.05)  # the database stays down: close must end anyway
    assert writer.pending == 1 and writer.written == 0
    writer.put(row("after"))
    assert writer.dropped == 1
