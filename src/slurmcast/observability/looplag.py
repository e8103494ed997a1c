"""``LoopLag``: how late the event loop runs what is due, measured once a second.

A callback is scheduled ``interval`` seconds ahead; when it runs, the time
past its due moment is how long something held the loop (a long parse, a
burst of writes, the garbage collector). No task: one timer handle, rescheduled
each time.
"""

from __future__ import annotations

import asyncio
from typing import Final

from slurmcast.observability.histogram import LAG_BUCKETS, Histogram

#: Seconds between two measurements.
LAG_INTERVAL: Final = 1.0


class LoopLag:
    """The event loop's scheduling delay: the last one and their distribution."""

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self.interval = interval
        #: Seconds the last measurement's callback ran late.
        self.last = 0.0
        self.histogram = Histogram(LAG_BUCKETS)
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start measuring on the running loop (again: no-op)."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        assert self._loop is not None
        due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(due, self._tick, due)

    def _tick(self, due: float) -> None:
        assert self._loop is not None
        lag = max(0.0, self._loop.time() - due)
        self.last = lag
        self.histogram.observe(lag)
        self._schedule()
