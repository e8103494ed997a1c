"""One timer for every connection's deadlines, and one flush per loop iteration.

A connection has a few deadlines (its handshake, its closing handshake, its
session's auth timeout or token expiry, its keepalive pong) and 10k
connections must not mean 10k tasks or timer handles. ``Deadlines`` keeps
them in one heap behind one loop timer; a deadline is cancelled by replacing
it (the heap entry then no longer matches and is skipped when it comes up).
Cancelled entries still hold their connection, so once they outnumber the
live ones the heap is rebuilt without them: a closed connection is not kept
alive until its forgotten handshake or ping deadline would have come.

``Flusher`` collects the connections that got frames during one loop
iteration and writes each one's frames in a single call at the end of it: a
burst of messages costs one system call per client, not one per message.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class HasDeadlines(Protocol):
    """What ``Deadlines`` needs of a connection: where its current tokens are kept."""

    deadline_tokens: dict[str, int]

    def on_deadline(self, kind: str, now: float) -> None: ...


class Deadlines:
    """Deadlines of many connections behind one ``loop.call_at``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, HasDeadlines, str]] = []
        self._counter = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._live = 0

    def set(self, owner: HasDeadlines, kind: str, when: float) -> None:
        """Call ``owner.on_deadline(kind)`` at loop time ``when`` (replacing an earlier one)."""
        token = next(self._counter)
        replacing = kind in owner.deadline_tokens
        owner.deadline_tokens[kind] = token
        heapq.heappush(self._heap, (when, token, owner, kind))
        if replacing:
            self._forgotten(0)
        else:
            self._live += 1
        if when < self._timer_at:
            self._arm(when)

    def clear(self, owner: HasDeadlines, kind: str) -> None:
        if owner.deadline_tokens.pop(kind, None) is not None:
            self._forgotten(1)

    def clear_all(self, owner: HasDeadlines) -> None:
        count = len(owner.deadline_tokens)
        owner.deadline_tokens.clear()
        self._forgotten(count)

    def _forgotten(self, count: int) -> None:
        self._live -= count
        heap = self._heap
        if len(heap) > 2 * self._live + 64:
            heap[:] = [e for e in heap if e[2].deadline_tokens.get(e[3]) == e[1]]
            heapq.heapify(heap)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, token, owner, kind = heapq.heappop(heap)
            if owner.deadline_tokens.get(kind) == token:
                del owner.deadline_tokens[kind]
                self._live -= 1
                owner.on_deadline(kind, now)
        # Drop cancelled entries at the top so the next wake-up is a real one.
        while heap and heap[0][2].deadline_tokens.get(heap[0][3]) != heap[0][1]:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, float("inf")
        self._heap.clear()
        self._live = 0


class Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """Writes every connection's queued frames once, after the loop iteration that queued them.

    A publication to 10k clients queues 10k frames, then the writes go out in
    slices of about ``slice_seconds``, with the loop free to run in between:
    requests keep being answered, and publications that arrive meanwhile join
    the frames still waiting, so under load one write carries several
    messages. At low rates every message is written at the end of the
    iteration it was published in, as before.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, slice_seconds: float = 0.002) -> None:
        self._loop = loop
        self._dirty: collections.deque[Flushable] = collections.deque()
        self._scheduled = False
        self._slice = slice_seconds
        #: Flushing slices run so far (a benchmark figure).
        self.slices = 0
        self.writes = 0
        #: Bytes handed to the connections' transports (GET /metrics); the
        #: connections add what they write.
        self.bytes_written = 0

    def mark(self, connection: Flushable) -> None:
        """``connection`` has frames to write (call once per batch: it remembers)."""
        self._dirty.append(connection)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.slices += 1
        dirty = self._dirty
        clock = time.perf_counter
        deadline = clock() + self._slice
        written = 0
        while dirty:
            dirty.popleft().flush()
            written += 1
            if not written & 63 and clock() > deadline and dirty:
                self._loop.call_soon(self._flush)  # the rest after what is waiting
                self.writes += written
                return
        self._scheduled = False
        self.writes += written


def periodic(
    loop: asyncio.AbstractEventLoop, interval: float, step: Callable[[], None]
) -> Callable[[], None]:
    """Run ``step`` every ``interval`` seconds from the loop; returns the canceller."""
    handle: asyncio.TimerHandle | None = None
    stopped = False

    def tick() -> None:
        nonlocal handle
        if stopped:
            return
        try:
            step()
        finally:
            handle = loop.call_later(interval, tick)

    handle = loop.call_later(interval, tick)

    def cancel() -> None:
        nonlocal stopped
        stopped = True
        if handle is not None:
            handle.cancel()

    return cancel
