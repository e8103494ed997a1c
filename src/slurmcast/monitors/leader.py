"""Poll only while holding the lease: one poller for every instance together.

Every instance runs a ``Leadership``. The one that acquires the lease starts
its monitor (which resumes from the baseline committed in the broker) and
renews the lease every third of its TTL; the others try to acquire it at the
same pace, so a dead poller is replaced within about one TTL. A poller that
cannot renew (Redis unreachable) stops polling once its lease has run out,
since another instance may then hold it; one that finds the lease taken
stops at once. Fencing in the broker covers the moment in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from slurmcast.cancellation import raise_if_cancelled
from slurmcast.ports import Lease

log = logging.getLogger("slurmcast.leader")


class Leadership:
    def __init__(
        self,
        lease: Lease,
        poll: Callable[[], Awaitable[None]],
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.poll = poll
        self.ttl = ttl
        self.clock = clock
        self._task: asyncio.Future[None] | None = None
        self._renewed_at = 0.0
        #: Set once the first attempt to take the lease is over (taken or not).
        self.first_step = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self) -> None:
        """Contend for the lease until cancelled; poll while holding it."""
        try:
            while True:
                await self._step()
                self.first_step.set()
                await asyncio.sleep(self.ttl / 3)
        finally:
            try:
                await self._stop_polling()
            finally:
                # Even when stopping re-raised our own cancellation: another
                # instance takes over now, not once the lease has expired.
                with contextlib.suppress(Exception):
                    await self.lease.release()

    async def _step(self) -> None:
        try:
            async with asyncio.timeout(self.ttl / 3):
                await self._contend()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise_if_cancelled()
            if self._task is not None and self.clock() - self._renewed_at >= self.ttl:
                log.warning("the polling lease could not be renewed (%s): polling stops", exc)
                await self._stop_polling()
            else:
                log.debug("lease operation failed: %r", exc)
        if self._task is not None and self._task.done():
            # The monitor ended on its own (a bug): give the lease up for a fresh start.
            if not self._task.cancelled() and self._task.exception() is not None:
                log.error("the monitor stopped: %r", self._task.exception())
            self._task = None
            with contextlib.suppress(Exception):
                await self.lease.release()

    async def _contend(self) -> None:
        if self._task is None:
            if await self.lease.acquire():
                self._renewed_at = self.clock()
                log.info("this instance holds the polling lease: polling the cluster")
                self._task = asyncio.ensure_future(self.poll())
        elif await self.lease.renew():
            self._renewed_at = self.clock()
        else:
            log.warning("the polling lease was taken by another instance: polling stops")
            await self._stop_polling()

    async def _stop_polling(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Ours, or the caller's: re-raise only if this task is itself being cancelled.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:
            log.exception("the monitor failed while stopping")
