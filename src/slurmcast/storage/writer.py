"""The background writer: a bounded queue, batched inserts, retries while the database is down.

``put`` only appends to the queue, so the monitor publishing live events
never waits for the database. One task takes up to ``batch_size`` rows at a
time, inserts them, and on failure keeps the batch and retries after 0.5 s,
1 s, 2 s ... up to ``retry_max``. While the database is down and nothing is
queued it checks every so often whether it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from slurmcast.storage.availability import Availability
from slurmcast.storage.rows import is_row_error

log = logging.getLogger("slurmcast.storage")

FIRST_RETRY = 0.5
Rows = list[dict[str, Any]]


class BatchWriter:
    """Writes queued rows in batches.

    Args:
        insert: writes rows idempotently; raises on failure.
        prepare: makes the database usable (migrations); raises on failure.
        probe: a cheap write that changes nothing, to notice that the database is back.
        availability: told about every failure and success.
    """

    def __init__(
        self,
        *,
        insert: Callable[[Rows], Awaitable[None]],
        prepare: Callable[[], Awaitable[None]],
        probe: Callable[[], Awaitable[None]],
        availability: Availability,
        queue_limit: int,
        batch_size: int,
        retry_max: float,
    ) -> None:
        self._insert = insert
        self._prepare = prepare
        self._probe = probe
        self._availability = availability
        self._queue: deque[dict[str, Any]] = deque()
        self._queue_limit = queue_limit
        self._batch_size = max(1, batch_size)
        self._retry_max = retry_max
        self._batch: Rows = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        #: Attempts (a batch, a migration, a probe) that failed and were retried.
        self.failures = 0

    @property
    def pending(self) -> int:
        """Rows queued or in the batch being written."""
        return len(self._queue) + len(self._batch)

    def put(self, row: dict[str, Any]) -> None:
        """Queue a row; when the queue is full (or closed) drop it, count it and log it."""
        if self._closing or len(self._queue) >= self._queue_limit:
            self.dropped += 1
            # Every drop is counted, but logging each one would flood the log
            # during a long outage: the first and then every thousandth.
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "notification queue %s (%d waiting): %d notifications dropped so far",
                    "closed" if self._closing else "full",
                    len(self._queue),
                    self.dropped,
                )
            return
        self._queue.append(row)
        self._wakeup.set()

    def wake(self) -> None:
        """Look at the queue and the availability again (an outage was seen elsewhere)."""
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notification-writer")

    async def close(self, timeout: float) -> None:
        """Write what is queued for up to ``timeout`` seconds, then stop; log what is lost."""
        self._closing = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                await asyncio.wait({task})
            elif (exc := task.exception()) is not None:
                log.error("the notification writer failed", exc_info=exc)
        if self.pending:
            log.error("notification store closed: %d notifications were not written", self.pending)

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._batch:
                while not self._queue and not self._closing and self._availability.available:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                if self._closing and not self._queue:
                    return
                # Empty when only checking whether the database is back.
                take = min(self._batch_size, len(self._queue))
                self._batch = [self._queue.popleft() for _ in range(take)]
            try:
                await self._prepare()
                if self._batch:
                    await self._write_batch()
                else:
                    await self._probe()
            # The writer must outlive any failure; each one is reported and retried.
            except Exception as exc:
                self.failures += 1
                await self._availability.failed(exc, self.pending)
                failures += 1
                delay = FIRST_RETRY * 2.0 ** min(failures - 1, 32)
                await asyncio.sleep(min(delay, self._retry_max))
                continue
            failures = 0
            await self._availability.succeeded()

    async def _write_batch(self) -> None:
        try:
            await self._insert(self._batch)
        except SQLAlchemyError as exc:
            if not is_row_error(exc):
                raise
            log.warning(
                "the database refused a batch of %d notifications (%s): writing them one by one",
                len(self._batch),
                self._availability.describe(exc),
            )
            await self._write_rows_alone()
        else:
            self.written += len(self._batch)
            self._batch = []

    async def _write_rows_alone(self) -> None:
        # Drop only the rows the database refuses; a connection error
        # propagates and the rows not yet written stay in the batch.
        while self._batch:
            row = self._batch[0]
            try:
                await self._insert([row])
            except SQLAlchemyError as exc:
                if not is_row_error(exc):
                    raise
                self.dropped += 1
                log.error(
                    "notification %r dropped, the database refuses it: %s",
                    row["id"],
                    self._availability.describe(exc),
                )
            else:
                self.written += 1
            del self._batch[0]
