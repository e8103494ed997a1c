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


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task has been asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
