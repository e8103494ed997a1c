"""Cancellation that a library turned into another exception.

redis-py (among others) can catch the ``CancelledError`` thrown into a
command it is running and raise a connection error instead. A loop that
retries connection errors would then never end: its task stays "cancelling"
while it sleeps and retries, and whoever awaits it (a ``TaskGroup``, a
shutdown) waits forever. Every ``except`` that swallows broad errors in a
long-running loop calls ``raise_if_cancelled()`` first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("slurmcast")


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task has been asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


#: Seconds a stopping task gets before it is cancelled again, and again after that.
STOP_GRACE = 5.0


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], *, grace: float = STOP_GRACE
) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait until they end; returns those that would not.

    A task whose cancellation was swallowed (a library turned it into another
    error, and a retry loop went on) is cancelled a second time after
    ``grace`` seconds, and left running after another ``grace``: a shutdown
    must end even then, so that SIGTERM always stops the process. Failures
    of the tasks are logged, not raised.
    """
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    for attempt in (1, 2):
        if not pending:
            break
        _done, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            log.warning(
                "%s did not stop %.0f s after being cancelled%s",
                task.get_name(),
                grace * attempt,
                ": cancelling it again" if attempt == 1 else "; leaving it behind",
            )
            if attempt == 1:
                task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("%s failed while stopping", task.get_name(), exc_info=task.exception())
    return sorted(pending, key=lambda task: task.get_name())
