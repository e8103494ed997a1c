"""What every store operation tells of the database: ``StoreGuard``.

The notification store and the outbox share one engine and one ``Availability``; each of
their operations runs inside the guard, so that any failure to reach the database starts an
outage, a value the database refuses is the caller's error (``ProtocolError``), and only a
successful write ends an outage: a database that still answers reads while it refuses
writes would otherwise raise and resolve its alert again with every read.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from slurmcast.errors import ErrorCode, ProtocolError, StorageError
from slurmcast.storage.availability import Availability
from slurmcast.storage.rows import describe_error, is_row_error


class StoreGuard:
    """Runs a store operation and reports what it found out about the database.

    Args:
        availability: told about outages and recoveries; None to report nothing.
        password: the URL's password, kept out of every message.
        prepare: awaited before each operation (the migration); None when the schema is
            known to be current.
        waiting: how many rows wait to be written (reported with an outage).
        on_outage: called when an operation found the database unavailable.
    """

    def __init__(
        self,
        availability: Availability | None,
        password: str | None,
        *,
        prepare: Callable[[], Awaitable[None]] | None = None,
        waiting: Callable[[], int] = lambda: 0,
        on_outage: Callable[[], None] = lambda: None,
    ) -> None:
        self._availability = availability
        self._password = password
        self._prepare = prepare
        self._waiting = waiting
        self._on_outage = on_outage

    @contextlib.asynccontextmanager
    async def __call__(self, action: str, *, write: bool) -> AsyncIterator[None]:
        try:
            if self._prepare is not None:
                await self._prepare()
            yield
        except SQLAlchemyError as exc:
            if not is_row_error(exc):
                raise await self._unavailable(action, exc) from exc
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"cannot {action}: the database refuses a value ({self._describe(exc)})",
            ) from None
        # CommandError: the database's schema is from a newer slurmcast.
        except (OSError, CommandError) as exc:
            raise await self._unavailable(action, exc) from exc
        if write and self._availability is not None:
            await self._availability.succeeded()

    def _describe(self, exc: BaseException) -> str:
        if self._availability is not None:
            return self._availability.describe(exc)
        return describe_error(exc, self._password)

    async def _unavailable(self, action: str, exc: BaseException) -> StorageError:
        if self._availability is not None:
            reason = await self._availability.failed(exc, self._waiting())
        else:
            reason = self._describe(exc)
        self._on_outage()
        return StorageError(
            f"cannot {action}: the notifications database is unavailable ({reason})"
        )
