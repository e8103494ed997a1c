"""What only a shared broker has to do: several instances, lost messages, lost Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from brokers.test_broker_contract import Recorder, message, numbers, position_of
from slurmcast.brokers.redis import RedisBroker
from slurmcast.errors import BrokerUnavailable, Fenced
from slurmcast.instances.lease_redis import RedisLease
from slurmcast.ports import Batch

from support.redis import REDIS_URL, PrivateRedis, shared_prefix


@contextlib.asynccontextmanager
async def brokers(
    prefix: str, count: int, url: str = REDIS_URL, **options: object
) -> AsyncIterator[list[tuple[RedisBroker, Recorder]]]:
    started = []
    try:
        for n in range(count):
            broker = RedisBroker(url, prefix=prefix, instance=f"i{n}", **options)  # type: ignore[arg-type]
            handler = Recorder()
            await broker.start(handler)
            started.append((broker, handler))
        yield started
    finally:
        for broker, _ in started:
            await broker.close()


async def kill_subscriptions(instance: str, url: str = REDIS_URL) -> int:
    """Cut an instance's Pub/Sub connection, as a network blip would."""
    admin = Redis.from_url(url)
    try:
        killed = 0
        for client in await admin.client_list():
            if client.get("name") == f"slurmcast-{instance}" and int(client.get("sub", 0)) > 0:
                await admin.client_kill_filter(_id=client["id"])
                killed += 1
        return killed
    finally:
        await admin.aclose()


async def test_every_instance_receives_every_publication_in_order() -> None:
    async with shared_prefix() as prefix, brokers(prefix, 3) as trio:
        (a, _), (b, on_b), (_c, on_c) = trio
        for n in range(1, 21):
            await (a if n % 2 else b).publish(message("jobs", n), confirm=False)
        for handler in (on_b, on_c):
            await handler.wait_for(lambda h: len(h.received) == 20)
            assert numbers(handler.received) == list(range(1, 21))
            assert [p.offset for p in handler.received] == list(range(1, 21))


async def test_a_dropped_subscription_is_filled_from_history() -> None:
    async with shared_prefix() as prefix, brokers(prefix, 2) as pair:
        (a, _), (_b, on_b) = pair
        await a.publish(message("jobs", 1), confirm=False)
        await on_b.wait_for(lambda h: len(h.received) == 1)
        assert await kill_subscriptions("i1") == 1
        for n in range(2, 12):
            await a.publish(message("jobs", n), confirm=False)
        await on_b.wait_for(lambda h: len(h.received) >= 11)
        assert [p.offset for p in on_b.received] == list(range(1, 12)), "each once, in order"
        assert on_b.lost == []


async def test_a_message_lost_without_a_disconnect_is_found_by_the_audit() -> None:
    async with shared_prefix() as prefix, brokers(prefix, 1, audit_interval=0.2) as single:
        ((broker, handler),) = single
        await broker.publish(message("jobs", 1))
        # Append offset 2 the way the commit script does, but without PUBLISH:
        # exactly what a subscriber sees when Redis drops a Pub/Sub message.
        raw = Redis.from_url(REDIS_URL)
        try:
            top = await raw.hincrby(f"{prefix}:ch:jobs", "top", 1)
            from slurmcast.brokers.redis import encode_entry

            await raw.xadd(
                f"{prefix}:h:jobs", {"d": encode_entry(message("jobs", 2)), "t": 0}, id=f"0-{top}"
            )
        finally:
            await raw.aclose()
        await handler.wait_for(lambda h: len(h.received) == 2)
        assert numbers(handler.received) == [1, 2]
        assert broker.gaps_filled == 1


async def test_a_gap_history_no_longer_holds_means_the_stream_is_lost() -> None:
    sizes = lambda channel: 2  # noqa: E731
    async with shared_prefix() as prefix, brokers(prefix, 2, history_size=sizes) as pair:
        (a, _), (b, on_b) = pair
        await a.publish(message("jobs", 1), confirm=False)
        await on_b.wait_for(lambda h: len(h.received) == 1)
        await b.close()  # b hears nothing while five more are published
        for n in range(2, 7):
            await a.publish(message("jobs", n), confirm=False)
        late = RedisBroker(REDIS_URL, prefix=prefix, instance="late", history_size=sizes)
        late.track("jobs", position_of(on_b.received[-1]))
        lost = Recorder()
        await late.start(lost)
        try:
            await lost.wait_for(lambda h: h.lost == ["jobs"])
            await a.publish(message("jobs", 7), confirm=False)
            await lost.wait_for(lambda h: len(h.received) == 1)
            assert lost.received[0].offset == 7, "after the loss, delivery goes on"
        finally:
            await late.close()


async def test_a_new_epoch_tells_local_subscribers_to_recover() -> None:
    async with shared_prefix() as prefix, brokers(prefix, 2) as pair:
        (a, _), (_b, on_b) = pair
        first = (await a.publish(message("jobs", 1), confirm=False)).publication.position
        await on_b.wait_for(lambda h: len(h.received) == 1)
        raw = Redis.from_url(REDIS_URL)
        try:
            await raw.delete(f"{prefix}:ch:jobs", f"{prefix}:h:jobs")  # history lost
        finally:
            await raw.aclose()
        second = (await a.publish(message("jobs", 2), confirm=False)).publication.position
        assert first is not None and second is not None
        assert second.offset == 1 and second.epoch != first.epoch
        await on_b.wait_for(lambda h: h.lost == ["jobs"] and len(h.received) == 2)
        assert on_b.received[-1].position == second


async def test_a_fenced_batch_changes_nothing() -> None:
    async with shared_prefix() as prefix, brokers(prefix, 1) as single:
        ((broker, _handler),) = single
        holder = RedisLease(broker.redis, f"{prefix}:lease", 30)
        assert await holder.acquire()
        stale = "not-the-token"
        with pytest.raises(Fenced):
            await broker.commit(Batch([message("jobs", 1)], checkpoint={"jobs": b"x"}, fence=stale))
        assert (await broker.position("jobs")).offset == 0
        assert await broker.checkpoint() == {}
        (done,) = await broker.commit(Batch([message("jobs", 1)], fence=holder.token))
        assert done.offset == 1


async def test_redis_outage_refuses_publishes_then_recovers_with_a_new_epoch() -> None:
    async with PrivateRedis() as redis_server:
        events: list[bool] = []
        changed = asyncio.Event()

        async def on_connection(connected: bool, error: str) -> None:
            events.append(connected)
            changed.set()

        async def until(predicate: Callable[[], bool]) -> None:
            async with asyncio.timeout(30):
                while not predicate():
                    changed.clear()
                    await changed.wait()

        broker = RedisBroker(
            redis_server.url, prefix="t", on_connection=on_connection, reconnect_max=0.5
        )
        handler = Recorder()
        await broker.start(handler)
        try:
            await until(lambda: events == [True])
            before = (await broker.publish(message("jobs", 1))).publication.position
            await redis_server.stop()
            await until(lambda: events == [True, False])
            with pytest.raises(BrokerUnavailable):
                await broker.publish(message("jobs", 2))
            with pytest.raises(BrokerUnavailable):
                await broker.history("jobs", since=0, limit=5)
            assert broker.describe()["connected"] is False
            await redis_server.start()
            await until(lambda: events == [True, False, True])
            # Redis came back empty: the stream the local subscribers followed is gone.
            await handler.wait_for(lambda h: h.lost == ["jobs"])
            after = (await broker.publish(message("jobs", 3))).publication.position
            assert before is not None and after is not None
            assert after.offset == 1 and after.epoch != before.epoch
            assert broker.describe()["connected"] is True
        finally:
            await broker.close()


async def test_a_foreign_message_on_the_channel_is_ignored_and_delivery_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with shared_prefix() as prefix, brokers(prefix, 1) as single:
        ((broker, handler),) = single
        raw = Redis.from_url(REDIS_URL)
        try:
            junks = (b"hello", b"x\ny\nz\nnot json", b"7\ne\nn\n[1]\n{}", b"7\ne\nn\n[1,2,3]\n{}")
            for junk in junks:
                await raw.publish(broker.channel_name, junk)
        finally:
            await raw.aclose()
        await broker.publish(message("jobs", 1))
        await handler.wait_for(lambda h: len(h.received) == 1)
        assert numbers(handler.received) == [1]
        assert caplog.text.count("ignored a malformed message") == 4
        assert "reader crashed" not in caplog.text and "subscription lost" not in caplog.text


async def test_a_channel_born_under_a_tracking_instance_is_delivered_whole() -> None:
    async with shared_prefix() as prefix, brokers(prefix, 2) as pair:
        (a, _), (b, on_b) = pair
        unborn = await b.position("user:alice")
        b.track("user:alice", unborn)
        # Another channel is born first: user:alice's birth takes a later epoch
        # than the one b was told, and b must see that as a birth, not a loss.
        await a.publish(message("user:zed", 0), confirm=False)
        for n in range(1, 4):
            await a.publish(message("user:alice", n), confirm=False)
        await on_b.wait_for(lambda h: len(h.on("user:alice")) == 3)
        assert numbers(on_b.on("user:alice")) == [1, 2, 3]
        assert position_of(on_b.on("user:alice")[0]).epoch != unborn.epoch
        assert on_b.lost == []


async def test_a_birth_missed_while_disconnected_is_filled_by_the_audit() -> None:
    async with shared_prefix() as prefix, brokers(prefix, 2) as pair:
        (a, _), (b, on_b) = pair
        b.track("user:alice", await b.position("user:alice"))
        await a.publish(message("user:zed", 0), confirm=False)
        await on_b.wait_for(lambda h: len(h.received) == 1)
        assert await kill_subscriptions("i1") == 1
        for n in range(1, 4):
            await a.publish(message("user:alice", n), confirm=False)
        await on_b.wait_for(lambda h: len(h.on("user:alice")) == 3)
        assert numbers(on_b.on("user:alice")) == [1, 2, 3]
        assert on_b.lost == []


async def test_untracked_channels_are_forgotten() -> None:
    async with shared_prefix() as prefix, brokers(prefix, 1) as single:
        ((broker, _),) = single
        for n in range(20):
            name = f"user:u{n}"
            broker.track(name, await broker.position(name))
        assert len(broker._delivered) == 20
        for n in range(20):
            broker.untrack(f"user:u{n}")
        assert broker._delivered == {}


async def test_an_empty_redis_loses_the_channels_tracked_before_their_birth() -> None:
    async with PrivateRedis() as redis_server:
        broker = RedisBroker(redis_server.url, prefix="t", reconnect_max=0.5)
        handler = Recorder()
        await broker.start(handler)
        try:
            broker.track("user:alice", await broker.position("user:alice"))
            await redis_server.stop()
            await redis_server.start()
            # A publication that had been on its way when Redis went down would be
            # lost unseen: the subscribers are told to recover instead.
            await handler.wait_for(lambda h: h.lost == ["user:alice"])
        finally:
            await broker.close()


async def test_same_history_reads_asked_together_share_one_redis_call() -> None:
    async with shared_prefix() as prefix, brokers(prefix, 1) as [(broker, _)]:
        for n in range(1, 4):
            await broker.publish(message("jobs", n))
        calls = 0
        read = broker._read

        async def counted(**kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await read(**kwargs)

        # redis-py types the attribute as its AsyncScript; a coroutine function stands in.
        broker._read = counted  # type: ignore[assignment]
        # A restart brings thousands of clients recovering from one position at once.
        results = await asyncio.gather(
            *(broker.history("jobs", since=1, limit=100) for _ in range(50))
        )
        assert calls == 1
        assert all([p.offset for p in r.publications] == [2, 3] for r in results)
        # Asked after that read went out: a read of its own, which sees what came since.
        await broker.publish(message("jobs", 4))
        later = await broker.history("jobs", since=1, limit=100)
        assert calls == 2
        assert [p.offset for p in later.publications] == [2, 3, 4]
        # A caller that gives up does not take the shared read away from the others.
        first = asyncio.ensure_future(broker.history("jobs", since=2, limit=100))
        second = asyncio.ensure_future(broker.history("jobs", since=2, limit=100))
        await asyncio.sleep(0)
        first.cancel()
        assert [p.offset for p in (await second).publications] == [3, 4]
        assert first.cancelled()
        assert calls == 3
