"""The broker contract: every implementation passes the same tests.

A broker positions publications (offsets without gaps, an epoch per history),
keeps each channel's history and state, delivers to its handler in order,
and applies a batch all at once. These tests run against the in-memory
broker and the Redis broker (on the shared Redis, under a fresh key prefix).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
import pytest

from slurmcast.brokers.memory import MemoryBroker
from slurmcast.brokers.redis import RedisBroker
from slurmcast.core.history import recover
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.core.views import StateChange
from slurmcast.ports import Batch, Broker

from support.redis import REDIS_URL, shared_prefix
from support.server import WAIT


@dataclass
class Recorder:
    """A handler that remembers what it was given."""

    received: list[Publication] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def handle_publication(self, publication: Publication) -> int:
        self.received.append(publication)
        self.changed.set()
        return 1

    def handle_stream_lost(self, channel: str) -> None:
        self.lost.append(channel)
        self.changed.set()

    async def wait_for(self, predicate: Callable[[Recorder], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

    def on(self, channel: str) -> list[Publication]:
        return [p for p in self.received if p.channel == channel]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def sizes(channel: str) -> int:
    return 3 if channel == "metrics" else 100


@dataclass
class Subject:
    broker: Broker
    handler: Recorder
    clock: Clock
    #: Names of the channels the broker stores anything for (in memory, or keys in Redis).
    stored: Callable[[], Awaitable[set[str]]]


@contextlib.asynccontextmanager
async def memory_broker(ttl: float | None) -> AsyncIterator[Subject]:
    clock = Clock()
    broker = MemoryBroker(sizes, ttl, clock=clock)
    handler = Recorder()

    async def stored() -> set[str]:
        return {*broker._channels, *broker._states}

    await broker.start(handler)
    try:
        yield Subject(broker, handler, clock, stored)
    finally:
        await broker.close()


@contextlib.asynccontextmanager
async def redis_broker(ttl: float | None) -> AsyncIterator[Subject]:
    async with shared_prefix() as prefix:
        clock = Clock()
        broker = RedisBroker(
            REDIS_URL, prefix=prefix, history_size=sizes, history_ttl=ttl, wall_clock=clock
        )
        handler = Recorder()

        async def stored() -> set[str]:
            names = set()
            async for key in broker.redis.scan_iter(match=f"{prefix}:*", count=1000):
                kind, _, channel = key.decode()[len(prefix) + 1 :].partition(":")
                if kind in ("ch", "h", "s"):
                    names.add(channel)
            return names

        await broker.start(handler)
        try:
            yield Subject(broker, handler, clock, stored)
        finally:
            await broker.close()


BROKERS = {"memory": memory_broker, "redis": redis_broker}


class MakeBroker(Protocol):
    def __call__(
        self, ttl: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[Subject]: ...


@pytest.fixture(params=sorted(BROKERS))
def make_broker(request: pytest.FixtureRequest) -> MakeBroker:
    factory = BROKERS[request.param]

    def make(ttl: float | None = None) -> contextlib.AbstractAsyncContextManager[Subject]:
        return factory(ttl)

    return make


def message(channel: str, n: int, state: StateChange | None = None) -> Publication:
    payload = orjson.dumps({"channel": channel, "type": "broadcast", "data": {"n": n}})
    return Publication(channel, payload, "alice", {"user": "alice"}, None, state)


def position_of(publication: Publication) -> StreamPosition:
    """The position of a publication the broker has positioned."""
    assert publication.position is not None
    return publication.position


def numbers(publications: list[Publication]) -> list[int]:
    return [orjson.loads(p.payload)["data"]["n"] for p in publications]


async def test_offsets_count_up_per_channel_and_deliveries_come_in_order(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as subject:
        broker, handler = subject.broker, subject.handler
        first = await broker.position("jobs")
        assert first.offset == 0 and first.epoch
        assert await broker.position("jobs") == first, "the epoch is stable"
        results = [await broker.publish(message("jobs", n)) for n in range(1, 6)]
        await broker.publish(message("nodes", 1))
        assert [r.publication.offset for r in results] == [1, 2, 3, 4, 5]
        assert {position_of(r.publication).epoch for r in results} == {first.epoch}
        assert all(r.delivered == 1 for r in results), "confirmed: delivered locally"
        await handler.wait_for(lambda h: len(h.received) == 6)
        assert numbers(handler.on("jobs")) == [1, 2, 3, 4, 5]
        assert [p.offset for p in handler.on("jobs")] == [1, 2, 3, 4, 5]
        assert handler.on("nodes")[0].offset == 1
        assert handler.on("jobs")[0].owner == "alice"
        assert handler.on("jobs")[0].tags == {"user": "alice"}
        assert await broker.position("jobs") == StreamPosition(5, first.epoch)


async def test_messages_to_everyone_have_no_position(make_broker: MakeBroker) -> None:
    async with make_broker() as subject:
        result = await subject.broker.publish(message("all", 1))
        assert result.publication.position is None
        await subject.handler.wait_for(lambda h: len(h.on("all")) == 1)
        assert subject.handler.on("all")[0].position is None


async def test_history_since_latest_and_trimming(make_broker: MakeBroker) -> None:
    async with make_broker() as subject:
        broker = subject.broker
        for n in range(1, 6):
            await broker.publish(message("metrics", n))
        kept = await broker.history("metrics", since=None, limit=10)
        assert numbers(list(kept.publications)) == [3, 4, 5], "only the last 3 are kept"
        assert kept.oldest == 3 and kept.top.offset == 5
        latest = await broker.history("metrics", since=None, limit=2)
        assert numbers(list(latest.publications)) == [4, 5]
        since = await broker.history("metrics", since=3, limit=10)
        assert [p.offset for p in since.publications] == [4, 5]
        assert recover(StreamPosition(3, since.top.epoch), since, ()).recovered
        too_old = await broker.history("metrics", since=1, limit=10)
        assert not recover(StreamPosition(1, too_old.top.epoch), too_old, ()).recovered
        paged = await broker.history("metrics", since=2, limit=1)
        assert [p.offset for p in paged.publications] == [3]
        stranger = StreamPosition(4, "another-epoch")
        assert not recover(
            stranger, await broker.history("metrics", since=4, limit=5), ()
        ).recovered


async def test_history_forgets_messages_older_than_the_ttl(make_broker: MakeBroker) -> None:
    async with make_broker(ttl=60.0) as subject:
        broker, clock = subject.broker, subject.clock
        await broker.publish(message("jobs", 1))
        clock.now += 45
        await broker.publish(message("jobs", 2))
        clock.now += 30  # the first is 75 s old, the second 30 s
        history = await broker.history("jobs", since=0, limit=10)
        assert numbers(list(history.publications)) == [2]
        assert history.oldest == 2
        assert not recover(StreamPosition(0, history.top.epoch), history, ()).recovered
        assert recover(StreamPosition(1, history.top.epoch), history, ()).recovered


async def test_state_follows_publications_and_seeds(make_broker: MakeBroker) -> None:
    async with make_broker() as subject:
        broker = subject.broker
        assert await broker.snapshot("notifications") is None
        empty = await broker.snapshot("nodes")
        assert empty is not None and empty.items == [] and empty.position.offset == 0
        await broker.publish(message("nodes", 0))
        seeded = {"n1": {"node": "n1", "state": "IDLE"}, "n2": {"node": "n2", "state": "IDLE"}}
        assert await broker.commit(Batch(seeds={"nodes": seeded})) == []
        snap = await broker.snapshot("nodes")
        assert snap is not None
        assert sorted(i["node"] for i in snap.items) == ["n1", "n2"]
        # Replaced without messages: a new history, and local subscribers must resync.
        assert snap.position.offset == 0 and snap.position.epoch != empty.position.epoch
        await subject.handler.wait_for(lambda h: h.lost == ["nodes"])
        down = {"node": "n1", "state": "DOWN"}
        await broker.publish(message("nodes", 1, StateChange("n1", down)))
        await broker.publish(message("nodes", 2, StateChange("n2", None)))
        snap = await broker.snapshot("nodes")
        assert snap is not None
        assert snap.items == [down]
        assert snap.position.offset == 2


async def test_a_batch_positions_stores_and_delivers_everything_at_once(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as subject:
        broker, handler = subject.broker, subject.handler
        assert await broker.checkpoint() == {}
        job = {"job_id": "7", "status": "RUNNING"}
        batch = Batch(
            publications=[
                message("jobs", 1, StateChange("7", job)),
                message("notifications", 2),
                message("jobs", 3),
            ],
            seeds={"metrics": {"latest": {"cpu": 1}}},
            checkpoint={"jobs": b"\x00binary\xffbaseline", "alerts": b"[]"},
        )
        positioned = await broker.commit(batch)
        assert [(p.channel, p.offset) for p in positioned] == [
            ("jobs", 1),
            ("notifications", 1),
            ("jobs", 2),
        ]
        await handler.wait_for(lambda h: len(h.received) == 3)
        assert [(p.channel, p.offset) for p in handler.received] == [
            ("jobs", 1),
            ("notifications", 1),
            ("jobs", 2),
        ]
        assert await broker.checkpoint() == {"jobs": b"\x00binary\xffbaseline", "alerts": b"[]"}
        await broker.commit(Batch(checkpoint={"alerts": b"[1]"}))
        assert (await broker.checkpoint())["alerts"] == b"[1]"
        assert (await broker.checkpoint())["jobs"] == b"\x00binary\xffbaseline", "parts kept"
        jobs = await broker.snapshot("jobs")
        assert jobs is not None
        assert jobs.items == [job] and jobs.position.offset == 2
        metrics = await broker.snapshot("metrics")
        assert metrics is not None
        assert metrics.items == [{"cpu": 1}]


async def test_history_replays_the_bytes_that_were_delivered(make_broker: MakeBroker) -> None:
    async with make_broker() as subject:
        broker, handler = subject.broker, subject.handler
        await broker.publish(message("user:alice", 1))
        await handler.wait_for(lambda h: len(h.received) == 1)
        history = await broker.history("user:alice", since=0, limit=5)
        (stored,) = history.publications
        (live,) = handler.received
        assert stored.wire() == live.wire()
        assert orjson.loads(stored.wire())["offset"] == 1


async def test_reading_a_channel_nobody_published_on_stores_nothing(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as subject:
        broker = subject.broker
        for n in range(50):
            name = f"user:nobody{n}"
            position = await broker.position(name)
            assert position.offset == 0 and position.epoch
            history = await broker.history(name, since=None, limit=10)
            assert list(history.publications) == [] and history.top == position
            assert list((await broker.history(name, since=0, limit=10)).publications) == []
            broker.track(name, position)
            broker.untrack(name)
        empty = await broker.snapshot("nodes")
        assert empty is not None and empty.items == [] and empty.position.offset == 0
        assert await subject.stored() == set()


async def test_a_channel_is_born_with_the_epoch_it_reported_and_recovers_from_it(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as subject:
        broker = subject.broker
        before = await broker.position("user:alice")
        first = (await broker.publish(message("user:alice", 1))).publication.position
        assert first == StreamPosition(1, before.epoch)
        history = await broker.history("user:alice", since=0, limit=10)
        recovery = recover(before, history, ())
        assert recovery.recovered and numbers(recovery.publications) == [1]
        assert await subject.stored() == {"user:alice"}


async def test_history_after_a_position_far_beyond_the_channel_is_empty(
    make_broker: MakeBroker,
) -> None:
    async with make_broker() as subject:
        broker = subject.broker
        await broker.publish(message("jobs", 1))
        for since in (10**14, 2**53 - 1):  # Lua prints numbers from 1e14 on as 1e+14
            history = await broker.history("jobs", since=since, limit=10)
            assert list(history.publications) == [] and history.top.offset == 1
            assert not recover(StreamPosition(since, history.top.epoch), history, ()).recovered
