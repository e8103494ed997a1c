"""Leadership: the monitor runs only while this instance holds the polling lease."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from slurmcast.instances.lease_sole import SoleLease
from slurmcast.monitors.leader import Leadership
from slurmcast.ports import Lease

#: Short, so that the contention loop (a step every third of it) turns quickly.
TTL = 0.03
#: Upper bound on any wait: a guard against hanging, not a speed target.
WAIT = 30.0


class Monitor:
    """A monitor that runs until cancelled, or ends when told to."""

    def __init__(self) -> None:
        self.starts = 0
        self.running = asyncio.Event()
        self.stopped = asyncio.Event()
        self._end = asyncio.Event()
        self.fail: Exception | None = None

    async def run(self) -> None:
        self.starts += 1
        self.stopped.clear()
        self.running.set()
        try:
            await self._end.wait()
            self._end.clear()
            if self.fail is not None:
                raise self.fail
        finally:
            self.running.clear()
            self.stopped.set()

    def end(self, error: Exception | None = None) -> None:
        """Make the monitor return (or raise) on its own."""
        self.fail = error
        self._end.set()


class TakeableLease:
    """A lease another instance can hold, take away, or that cannot be reached."""

    def __init__(self, *, free: bool = True) -> None:
        self.free = free
        self.held = False
        self.unreachable = False
        self.released = 0
        self.release_seen = asyncio.Event()
        self.renewals = 0
        self.renewed = asyncio.Event()
        self.attempts = 0
        self.attempted = asyncio.Event()

    @property
    def token(self) -> str | None:
        return "7" if self.held else None

    async def acquire(self) -> bool:
        self.attempts += 1
        self.attempted.set()
        if self.unreachable:
            raise ConnectionError("redis is down")
        if self.free:
            self.free, self.held = False, True
        return self.held

    async def renew(self) -> bool:
        self.renewals += 1
        self.renewed.set()
        if self.unreachable:
            raise ConnectionError("redis is down")
        return self.held

    async def release(self) -> None:
        self.released += 1
        self.release_seen.set()
        if self.held:
            self.held, self.free = False, True

    def take_away(self) -> None:
        """Another instance got it (ours expired meanwhile)."""
        self.held = self.free = False

    def give_back(self) -> None:
        self.free = True

    async def next_renewal(self) -> None:
        self.renewed.clear()
        await self.renewed.wait()

    async def next_attempt(self) -> None:
        self.attempted.clear()
        await self.attempted.wait()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def contending(leadership: Leadership) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(leadership.run())
    try:
        async with asyncio.timeout(WAIT):
            await leadership.first_step.wait()
            yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait(event: asyncio.Event) -> None:
    async with asyncio.timeout(WAIT):
        await event.wait()


def _lease(lease: Lease) -> Lease:
    return lease  # both leases satisfy the port


async def test_a_sole_lease_runs_the_monitor_from_the_first_step() -> None:
    monitor = Monitor()
    leadership = Leadership(_lease(SoleLease()), monitor.run, ttl=TTL)
    assert not leadership.is_leader and not leadership.first_step.is_set()
    async with contending(leadership) as task:
        assert leadership.is_leader
        await wait(monitor.running)
        assert monitor.starts == 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Cancelling the leadership stops the monitor with it.
        assert monitor.stopped.is_set() and not leadership.is_leader


async def test_a_lease_held_elsewhere_sets_first_step_without_polling() -> None:
    monitor = Monitor()
    lease = TakeableLease(free=False)
    leadership = Leadership(_lease(lease), monitor.run, ttl=TTL)
    async with contending(leadership):
        assert lease.attempts == 1
        assert not leadership.is_leader
        await lease.next_attempt()  # it keeps contending
        assert monitor.starts == 0 and not leadership.is_leader


async def test_steps_down_when_the_lease_is_taken_and_takes_over_when_it_is_free() -> None:
    monitor = Monitor()
    lease = TakeableLease()
    leadership = Leadership(_lease(lease), monitor.run, ttl=TTL)
    async with contending(leadership):
        await wait(monitor.running)
        await lease.next_renewal()
        assert leadership.is_leader and monitor.starts == 1
        lease.take_away()
        await wait(monitor.stopped)
        assert not leadership.is_leader
        await lease.next_attempt()  # contending again, in vain
        assert monitor.starts == 1
        lease.give_back()
        await wait(monitor.running)
        assert leadership.is_leader and monitor.starts == 2


async def test_cancel_stops_the_monitor_and_releases_the_lease() -> None:
    monitor = Monitor()
    lease = TakeableLease()
    leadership = Leadership(_lease(lease), monitor.run, ttl=TTL)
    async with contending(leadership) as task:
        await wait(monitor.running)
        assert lease.held
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert monitor.stopped.is_set()
        assert lease.released == 1 and not lease.held and lease.free
        assert not leadership.is_leader


async def test_a_non_leader_releases_on_cancel_too_and_it_is_harmless() -> None:
    lease = TakeableLease(free=False)
    leadership = Leadership(_lease(lease), Monitor().run, ttl=TTL)
    async with contending(leadership) as task:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert lease.released == 1 and not lease.held and not lease.free


async def test_an_unreachable_lease_keeps_polling_until_the_ttl_has_run_out() -> None:
    monitor = Monitor()
    lease = TakeableLease()
    clock = Clock()
    leadership = Leadership(_lease(lease), monitor.run, ttl=TTL, clock=clock)
    async with contending(leadership):
        await wait(monitor.running)
        lease.unreachable = True
        clock.now += TTL / 2  # renewed recently: the lease is still ours
        await lease.next_renewal()
        await lease.next_renewal()
        assert leadership.is_leader and monitor.running.is_set()
        clock.now += TTL  # past the TTL: another instance may hold it now
        await wait(monitor.stopped)
        assert not leadership.is_leader
        lease.unreachable = False
        lease.free, lease.held = True, False  # it expired meanwhile
        await wait(monitor.running)
        assert leadership.is_leader and monitor.starts == 2


async def test_a_monitor_ending_on_its_own_gives_the_lease_up_and_starts_afresh() -> None:
    monitor = Monitor()
    lease = TakeableLease()
    leadership = Leadership(_lease(lease), monitor.run, ttl=TTL)
    async with contending(leadership):
        await wait(monitor.running)
        lease.release_seen.clear()
        monitor.end(RuntimeError("a bug"))
        await wait(lease.release_seen)
        assert lease.released == 1
        await wait(monitor.running)  # the lease was free again: taken back at once
        assert monitor.starts == 2 and leadership.is_leader
