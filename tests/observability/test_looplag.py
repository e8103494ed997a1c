"""``LoopLag``: a callback held up by a blocking step is measured late by that much."""

from __future__ import annotations

import asyncio
import time

from slurmcast.observability.looplag import LoopLag

from support.waiting import eventually


async def test_a_blocked_loop_shows_as_lag() -> None:
    lag = LoopLag(interval=0.01)
    lag.start()
    try:
        await eventually(lambda: asyncio.sleep(0, lag.histogram.count), lambda n: n >= 2)
        time.sleep(0.2)  # noqa: ASYNC251 - holding the loop, as a long parse would, is the point

        def late() -> int:
            return lag.histogram.count - dict(lag.histogram.cumulative())[0.1]

        # The probe due while the loop was held ran about 0.2 s late.
        await eventually(lambda: asyncio.sleep(0, late()), lambda n: n >= 1)
    finally:
        lag.stop()


async def test_stopping_ends_the_measurements() -> None:
    lag = LoopLag(interval=0.01)
    lag.start()
    lag.start()  # again: still one timer
    await eventually(lambda: asyncio.sleep(0, lag.histogram.count), lambda n: n >= 1)
    lag.stop()
    count = lag.histogram.count
    await asyncio.sleep(0.05)
    assert lag.histogram.count == count
