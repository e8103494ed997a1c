"""Whether the notifications database works: each outage and each recovery reported once.

Any failed operation starts an outage; only a successful write ends it. A
database can answer reads while it refuses writes (read-only after a
failover, locked, out of disk): were reads to end the outage, its alert would
resolve and fire again with every read until writes worked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from slurmcast.storage.rows import describe_error

log = logging.getLogger("slurmcast.storage")


class Availability:
    """The database's state as the operations on it found it.

    Args:
        where: the database as shown in logs (password masked).
        password: the URL's password, scrubbed from every reason.
        on_unavailable: awaited with a one-line reason when an outage starts.
        on_recovered: awaited when the first write after an outage succeeds.
    """

    def __init__(
        self,
        where: str,
        password: str | None,
        on_unavailable: Callable[[str], Awaitable[None]] | None = None,
        on_recovered: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._where = where
        self._password = password
        self._on_unavailable = on_unavailable
        self._on_recovered = on_recovered
        self.available = True
        self.error: str | None = None

    def describe(self, exc: BaseException) -> str:
        """``Kind: message`` for an exception, without SQL or the password."""
        return describe_error(exc, self._password)

    async def failed(self, exc: BaseException, waiting: int) -> str:
        """Record a failed operation; return its reason (``Kind: message``).

        Args:
            exc: what the driver or SQLAlchemy raised.
            waiting: notifications queued, for the log.
        """
        reason = self.describe(exc)
        self.error = reason
        if not self.available:
            log.debug("notification database still unavailable: %s", reason)
            return reason
        # Flip before awaiting the callback: a concurrent failure must not report again.
        self.available = False
        log.error(
            "notification database %s is unavailable: %s (%d notifications waiting)",
            self._where,
            reason,
            waiting,
        )
        if self._on_unavailable is not None:
            await _call_safely(self._on_unavailable(reason))
        return reason

    async def succeeded(self) -> None:
        """Record a successful write; the first after an outage reports the recovery."""
        if self.available:
            return
        self.available = True
        self.error = None
        log.warning("notification database %s is available again", self._where)
        if self._on_recovered is not None:
            await _call_safely(self._on_recovered())


async def _call_safely(callback: Awaitable[None]) -> None:
    try:
        await callback
    except Exception:  # a broken callback must not stop the writer or fail a request
        log.exception("notification storage callback failed")
