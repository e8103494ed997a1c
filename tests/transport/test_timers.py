"""One deadline heap for every connection, and one flush per loop iteration."""

from __future__ import annotations

import asyncio

from slurmcast.transport.timers import Deadlines, Flusher


class Owner:
    def __init__(self, name: str, fired: list[tuple[str, str]], done: asyncio.Event | None = None):
        self.name = name
        self.deadline_tokens: dict[str, int] = {}
        self.fired = fired
        self.done = done

    def on_deadline(self, kind: str, now: float) -> None:
        self.fired.append((self.name, kind))
        if self.done is not None:
            self.done.set()


async def test_deadlines_fire_in_order_and_replaced_or_cleared_ones_do_not() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    fired: list[tuple[str, str]] = []
    done = asyncio.Event()
    a, b, last = Owner("a", fired), Owner("b", fired), Owner("last", fired, done)
    now = loop.time()
    deadlines.set(a, "ping", now + 0.02)
    deadlines.set(b, "ping", now + 0.01)
    deadlines.set(b, "close", now + 0.001)
    deadlines.clear(b, "close")
    deadlines.set(a, "ping", now + 0.03)  # replaces a's first ping
    deadlines.set(last, "end", now + 0.05)
    await asyncio.wait_for(done.wait(), 5)
    assert fired == [("b", "ping"), ("a", "ping"), ("last", "end")]
    assert a.deadline_tokens == b.deadline_tokens == last.deadline_tokens == {}
    deadlines.close()


async def test_forgotten_deadlines_do_not_keep_their_owners() -> None:
    deadlines = Deadlines(asyncio.get_running_loop())
    far = asyncio.get_running_loop().time() + 3600
    keeper = Owner("keeper", [])
    deadlines.set(keeper, "ping", far)
    for n in range(10_000):
        gone = Owner(str(n), [])
        deadlines.set(gone, "handshake", far)
        deadlines.set(gone, "ping", far)
        deadlines.set(gone, "ping", far)  # replaced: a stale entry
        deadlines.clear_all(gone)  # the connection closed
    # Stale entries are dropped once they outnumber the live ones.
    assert len(deadlines._heap) <= 2 * 1 + 64
    assert keeper.deadline_tokens
    deadlines.close()


async def test_a_burst_is_flushed_once_per_connection_after_the_iteration() -> None:
    flushes: list[str] = []
    flushed = asyncio.Event()

    class Connection:
        def __init__(self, name: str) -> None:
            self.name = name

        def flush(self) -> None:
            flushes.append(self.name)
            flushed.set()

    flusher = Flusher(asyncio.get_running_loop())
    a, b = Connection("a"), Connection("b")
    flusher.mark(a)
    flusher.mark(b)
    assert flushes == []  # nothing written before the iteration ends
    await asyncio.wait_for(flushed.wait(), 5)
    assert flushes == ["a", "b"]


async def test_a_long_flush_lets_the_loop_run_between_slices() -> None:
    loop = asyncio.get_running_loop()
    order: list[object] = []
    finished = asyncio.Event()

    class Connection:
        def __init__(self, number: int) -> None:
            self.number = number

        def flush(self) -> None:
            order.append(self.number)
            if self.number == 199:
                finished.set()

    flusher = Flusher(loop, slice_seconds=0.0)  # every slice is over at once
    for number in range(200):
        flusher.mark(Connection(number))
    loop.call_soon(order.append, "other")  # e.g. an HTTP request that came in
    await asyncio.wait_for(finished.wait(), 5)
    # Slices of 64 writes: the request is served after the first, not after all 200.
    assert order.index("other") == 64
    assert [n for n in order if n != "other"] == list(range(200))
