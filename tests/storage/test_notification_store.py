"""The notification store's contract, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from sqlalchemy import select

from slurmcast.core.notifications import Notification, NotificationType, Severity
from slurmcast.errors import ErrorCode, ProtocolError, StorageError
from slurmcast.ports import NotificationStorePort
from slurmcast.storage import MAX_PAGE, NotificationStore
from slurmcast.storage.engine import create_engine, parse_url
from slurmcast.storage.models import NotificationRow
from slurmcast.storage.rows import encode_cursor

from support.builders import T0
from support.databases import Backend, set_raw_data, slow_lock_url, writes_refused
from support.waiting import eventually

T = TypeVar("T")


def note(id: str, *, user: str | None = "alice", at: datetime = T0, **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "id": id,
        "type": NotificationType.JOB_COMPLETED,
        "title": "Job Completed",
        "message": f"Job #{id} (train) has finished successfully",
        "severity": Severity.SUCCESS,
        "created_at": at,
        "user": user,
        "details": {"job_id": id, "nodes": ["node001"], "duration_s": 9000.0},
    }
    values.update(fields)
    return Notification(**values)


@asynccontextmanager
async def running(url: str, **options: Any) -> AsyncIterator[NotificationStore]:
    store = NotificationStore(url, **options)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


class Calls:
    """Records the availability callbacks."""

    def __init__(self) -> None:
        self.unavailable: list[str] = []
        self.recovered = 0

    async def on_unavailable(self, reason: str) -> None:
        self.unavailable.append(reason)

    async def on_recovered(self) -> None:
        self.recovered += 1


async def ids(store: NotificationStore, user: str | None = None, **options: Any) -> list[str]:
    return [item["id"] for item in (await store.list(user, **options)).items]


def test_the_store_satisfies_its_protocol(tmp_path: Path) -> None:
    _: NotificationStorePort = NotificationStore(f"sqlite+aiosqlite:///{tmp_path}/x.db")


async def test_enqueued_notifications_become_readable_in_the_wire_shape(backend: Backend) -> None:
    first, second = note("n1"), note("n2", at=T0 + timedelta(seconds=1), user=None)
    async with running(backend.url) as store:
        store.enqueue(first)
        store.enqueue(second)
        page = await eventually(lambda: store.list(None), lambda p: len(p.items) == 2)
        assert page.items == [second.data(), first.data()]
        assert page.next_before is None
        assert await store.get("n1") == first.data()
        assert await store.get("missing") is None
        health = store.health()
    assert health["backend"] == backend.name
    assert (health["available"], health["error"]) == (True, None)
    assert (health["pending"], health["written"], health["dropped"]) == (0, 2, 0)


async def test_times_are_aware_utc_whatever_zone_they_were_written_in(backend: Backend) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2026, 1, 1, 14, 30, 0, 123456, tzinfo=paris)  # 12:30:00.123456Z
    async with running(backend.url) as store:
        await store.add([note("local", at=local), note("earlier", at=T0)])
        assert [i["created_at"] for i in (await store.list(None)).items] == [
            "2026-01-01T12:30:00Z",
            "2026-01-01T12:00:00Z",
        ]
    engine = create_engine(parse_url(backend.url))
    try:
        async with engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(NotificationRow.created_at).where(NotificationRow.id == "local")
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert stored == local and stored.tzinfo is UTC


async def test_the_same_id_is_stored_once_and_the_first_write_wins(backend: Backend) -> None:
    async with running(backend.url) as store:
        original = note("dup")
        await store.add([original, note("dup", title="Again")])
        store.enqueue(note("dup", title="Queued again"))
        store.enqueue(note("other"))
        await eventually(lambda: ids(store), lambda found: "other" in found)
        assert sorted(await ids(store)) == ["dup", "other"]
        assert await store.get("dup") == original.data()


async def test_pages_follow_the_cursor_across_equal_times(backend: Backend) -> None:
    # Five share one instant: only the id orders them, and no page boundary
    # may repeat or skip one.
    tied = [note(f"t{i}", at=T0) for i in range(5)]
    others = [note("new", at=T0 + timedelta(minutes=1)), note("old", at=T0 - timedelta(minutes=1))]
    async with running(backend.url) as store:
        await store.add(tied + others)
        seen: list[str] = []
        before = None
        for _ in range(10):
            page = await store.list("alice", limit=2, before=before)
            seen += [item["id"] for item in page.items]
            before = page.next_before
            if before is None:
                break
        assert seen == ["new", "t4", "t3", "t2", "t1", "t0", "old"]
        with pytest.raises(ProtocolError) as caught:
            await store.list("alice", before="not-a-cursor")
        assert caught.value.code is ErrorCode.INVALID_FIELD


async def test_a_page_holds_at_most_the_maximum(backend: Backend) -> None:
    async with running(backend.url) as store:
        await store.add([note(f"n{i:04d}", at=T0 + timedelta(seconds=i)) for i in range(501)])
        page = await store.list(None, limit=10_000)
        assert len(page.items) == MAX_PAGE and page.next_before is not None
        rest = await store.list(None, before=page.next_before)
        assert [item["id"] for item in rest.items] == ["n0000"]
        assert len((await store.list(None, limit=0)).items) == 1


async def test_users_see_their_own_rows_and_announcements_only(backend: Backend) -> None:
    async with running(backend.url) as store:
        await store.add(
            [
                note("a1", user="alice"),
                note("b1", user="bob", at=T0 + timedelta(seconds=1)),
                note("all", user=None, at=T0 + timedelta(seconds=2)),
            ]
        )
        assert await ids(store, "alice") == ["all", "a1"]
        assert await ids(store, "bob") == ["all", "b1"]
        assert await ids(store, "carol") == ["all"]
        assert await ids(store, None) == ["all", "b1", "a1"]


async def test_unread_filter(backend: Backend) -> None:
    async with running(backend.url) as store:
        await store.add([note(f"a{i}", at=T0 + timedelta(seconds=i)) for i in range(3)])
        assert await store.mark_read(["a1"], "alice") == ["a1"]
        assert await ids(store, "alice", unread_only=True) == ["a2", "a0"]
        items = (await store.list("alice")).items
        assert [(i["id"], i["read"]) for i in items] == [("a2", False), ("a1", True), ("a0", False)]


async def test_users_mark_only_their_own_rows_and_admins_any(backend: Backend) -> None:
    async with running(backend.url) as store:
        await store.add([note("a1"), note("a2"), note("b1", user="bob"), note("all", user=None)])
        asked = ["b1", "all", "a1", "unknown", "a1"]
        assert await store.mark_read(asked, "alice") == ["a1"]
        assert await store.mark_read(["a1"], "alice") == ["a1"]  # already read: still "marked"
        assert await ids(store, None, unread_only=True) == ["b1", "all", "a2"]
        assert await store.mark_read(["b1", "all", "unknown"], None) == ["b1", "all"]
        assert await ids(store, None, unread_only=True) == ["a2"]
        assert await store.mark_read([], "alice") == []


async def test_mark_all_read_covers_the_users_rows_or_all_for_an_admin(backend: Backend) -> None:
    async with running(backend.url) as store:
        await store.add([note("a1"), note("a2"), note("b1", user="bob"), note("all", user=None)])
        assert await store.mark_all_read("alice") == 2
        assert await store.mark_all_read("alice") == 0
        assert await ids(store, None, unread_only=True) == ["b1", "all"]
        assert await store.mark_all_read(None) == 2
        assert await ids(store, None, unread_only=True) == []


async def test_notifications_survive_a_restart_and_close_flushes_the_queue(
    backend: Backend,
) -> None:
    async with running(backend.url) as store:
        await store.add([note("kept")])
        await store.mark_read(["kept"], "alice")
        for i in range(300):
            store.enqueue(note(f"q{i:03d}", at=T0 + timedelta(seconds=i)))
    async with running(backend.url) as store:
        page = await store.list(None, limit=MAX_PAGE)
        assert len(page.items) == 301
        assert await store.get("kept") == {**note("kept").data(), "read": True}


async def test_a_row_the_database_refuses_is_dropped_alone(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(backend.url) as store:
        store.enqueue(note("good1"))
        store.enqueue(note("bad", details={"not json": {1, 2}}))
        store.enqueue(note("good2", at=T0 + timedelta(seconds=1)))
        store.enqueue(note("x" * 65))  # an id that does not fit
        await eventually(lambda: ids(store), lambda found: len(found) == 2)
        health = store.health()
        assert await ids(store) == ["good2", "good1"]
        assert (health["available"], health["written"], health["dropped"]) == (True, 2, 2)
    assert any("'bad' dropped" in r.getMessage() for r in caplog.records)


async def test_the_database_down_then_back(backend: Backend) -> None:
    down = backend.make_down()
    calls = Calls()
    async with running(
        down.url,
        retry_max=0.05,
        on_unavailable=calls.on_unavailable,
        on_recovered=calls.on_recovered,
    ) as store:
        for i in range(3):
            store.enqueue(note(f"n{i}", at=T0 + timedelta(seconds=i)))
        health = store.health()
        assert (health["available"], health["pending"], health["written"]) == (False, 3, 0)
        assert health["error"] and len(calls.unavailable) == 1
        assert calls.unavailable[0] == health["error"]
        if backend.name == "postgresql":
            assert "does not exist" in health["error"]

        with pytest.raises(StorageError) as caught:
            await store.list("alice")
        assert caught.value.code is ErrorCode.STORAGE_UNAVAILABLE and caught.value.temporary
        assert "unavailable" in caught.value.message
        assert health["error"] in caught.value.message
        with pytest.raises(StorageError):
            await store.add([note("direct")])
        assert len(calls.unavailable) == 1  # one outage, one report

        await down.bring_up()
        # Nothing but the writer touches the store now: it must notice by itself.
        health = await eventually(awaitable(store.health), lambda h: h["written"] == 3)
        assert (health["available"], health["error"], health["pending"]) == (True, None, 0)
        assert (len(calls.unavailable), calls.recovered) == (1, 1)
        assert await ids(store) == ["n2", "n1", "n0"]


async def test_a_full_queue_drops_and_counts_loudly(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    down = backend.make_down()
    async with running(down.url, queue_limit=3, retry_max=0.05, close_timeout=0.2) as store:
        caplog.set_level(logging.ERROR, "slurmcast.storage")
        for i in range(5):
            store.enqueue(note(f"n{i}"))
        health = store.health()
        assert (health["pending"], health["dropped"]) == (3, 2)
    drops = [r for r in caplog.records if "dropped so far" in r.getMessage()]
    assert drops and drops[0].levelno == logging.ERROR
    assert "1 notifications dropped so far" in drops[0].getMessage()
    # close could not write them: that is said too
    assert any("3 notifications were not written" in r.getMessage() for r in caplog.records)


def awaitable(function: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def call() -> T:
        return function()

    return call


async def test_reading_and_marking_while_the_writer_inserts(backend: Backend) -> None:
    # SQLite allows one writer at a time: the API's updates and the writer's
    # inserts must wait for each other, not fail.
    async with running(backend.url, batch_size=50) as store:

        async def produce() -> None:
            for i in range(1000):
                store.enqueue(note(f"n{i:04d}", at=T0 + timedelta(milliseconds=i)))
                if i % 100 == 0:
                    await asyncio.sleep(0)

        marked = 0

        async def consume() -> None:
            nonlocal marked
            while store.health()["written"] < 1000:
                marked += await store.mark_all_read("alice")
                await store.list("alice", unread_only=True)

        await asyncio.wait_for(asyncio.gather(produce(), consume()), timeout=30)
        marked += await store.mark_all_read("alice")
        assert marked == 1000  # each row changed from unread to read exactly once
        assert (await store.list("alice", unread_only=True)).items == []
        health = store.health()
    assert (health["available"], health["written"], health["dropped"]) == (True, 1000, 0)


def still_unavailable(caplog: pytest.LogCaptureFixture) -> int:
    """How many failures were seen after an outage had already been reported."""
    return sum("still unavailable" in r.getMessage() for r in caplog.records)


async def test_reads_do_not_end_an_outage_only_a_write_does(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    # Reads work and writes fail (read-only after a failover, a lock held
    # elsewhere): the outage is one outage, not one per read.
    caplog.set_level(logging.DEBUG, "slurmcast.storage")
    calls = Calls()
    url = slow_lock_url(backend.url)
    async with running(
        url, retry_max=0.05, on_unavailable=calls.on_unavailable, on_recovered=calls.on_recovered
    ) as store:
        await store.add([note("before")])
        async with writes_refused(backend.url):
            store.enqueue(note("queued", at=T0 + timedelta(seconds=1)))
            await eventually(awaitable(store.health), lambda h: h["available"] is False)
            # Reads between the writer's failing retries.
            while still_unavailable(caplog) < 3:
                assert await ids(store) == ["before"]
                assert await store.get("before") is not None
                assert store.health()["available"] is False
            assert (len(calls.unavailable), calls.recovered) == (1, 0)
        health = await eventually(awaitable(store.health), lambda h: h["written"] == 1)
        assert (health["available"], health["pending"]) == (True, 0)
        assert (len(calls.unavailable), calls.recovered) == (1, 1)
        assert await ids(store) == ["queued", "before"]


async def test_the_writer_checks_for_the_recovery_with_a_write(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    # An outage an API write found, with nothing queued: the writer's check
    # must not take a database that still refuses writes for one that is back.
    caplog.set_level(logging.DEBUG, "slurmcast.storage")
    calls = Calls()
    url = slow_lock_url(backend.url)
    async with running(
        url, retry_max=0.05, on_unavailable=calls.on_unavailable, on_recovered=calls.on_recovered
    ) as store:
        await store.add([note("n1")])
        async with writes_refused(backend.url):
            with pytest.raises(StorageError):
                await store.mark_all_read("alice")
            await eventually(awaitable(lambda: still_unavailable(caplog)), lambda n: n >= 3)
            assert store.health()["available"] is False
            assert (len(calls.unavailable), calls.recovered) == (1, 0)
        await eventually(awaitable(store.health), lambda h: h["available"] is True)
        assert (len(calls.unavailable), calls.recovered) == (1, 1)
        assert await store.mark_all_read("alice") == 1


async def test_a_value_the_database_refuses_is_the_callers_error_not_an_outage(
    backend: Backend,
) -> None:
    calls = Calls()
    async with running(backend.url, on_unavailable=calls.on_unavailable) as store:
        await store.add([note("n1")])
        nul = note("n2", title="nul \x00 in it")
        if backend.name == "postgresql":  # its text cannot hold NUL; SQLite's can
            with pytest.raises(ProtocolError) as refused:
                await store.add([nul])
            assert refused.value.code is ErrorCode.INVALID_FIELD
            assert "refuses a value" in refused.value.message
            with pytest.raises(ProtocolError):
                await store.mark_read(["a\x00b"], None)
        else:
            await store.add([nul])
            assert await store.mark_read(["a\x00b"], None) == []
        with pytest.raises(ProtocolError):
            await store.list("alice", before=encode_cursor(T0, "a\x00b"))
        assert store.health()["available"] is True and calls.unavailable == []
        assert await store.mark_all_read(None) >= 1  # and the database works on


async def test_a_row_whose_data_cannot_be_sent_is_listed_with_empty_data(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    deep: Any = 1
    for _ in range(300):  # orjson reads 1024 levels but writes only 254
        deep = {"a": deep}
    # Ids of their own per backend: each row is warned about once per process.
    stored = {f"{backend.name}-poisoned": json.dumps(deep), f"{backend.name}-list": "[1, 2]"}
    if backend.name == "sqlite":  # PostgreSQL's json type refuses to store these
        stored["sqlite-not-json"] = "{not json"
        stored["sqlite-too-deep-to-decode"] = "[" * 100_000 + "]" * 100_000
    async with running(backend.url) as store:
        await store.add(
            [note(id, at=T0 + timedelta(seconds=i)) for i, id in enumerate(["good", *stored])]
        )
        await set_raw_data(backend.url, stored)
        for _ in range(2):
            page = await store.list(None)
            by_id = {item["id"]: item for item in page.items}
            assert set(by_id) == {"good", *stored}
            assert by_id["good"] == note("good").data()
            for id in stored:
                assert by_id[id]["data"] == {} and by_id[id]["title"] == "Job Completed"
            orjson.dumps(page.items)  # the page as a whole can be sent
        poisoned = await store.get(f"{backend.name}-poisoned")
        assert poisoned is not None
        assert poisoned["data"] == {}
    warnings = [r.getMessage() for r in caplog.records if "sent with empty data" in r.getMessage()]
    assert len(warnings) == len(stored)  # once per row, not once per page
