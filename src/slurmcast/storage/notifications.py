"""Persisted notifications: a SQLAlchemy store over SQLite or PostgreSQL.

Live delivery never waits for the database. The monitor calls ``enqueue``,
which only appends to a bounded in-memory queue; one writer task inserts
batches and, while the database is down, keeps its batch and retries with
doubling delays. The HTTP API reads and marks rows with the awaited methods,
which raise ``StorageError`` when the database cannot answer, and
``ProtocolError`` when it refuses a value given (e.g. NUL in PostgreSQL text).
Any failure reports an outage; only a successful write reports its end.

Semantics:

- ``user`` NULL is an announcement for everyone. Each row has one ``read``
  flag, so an announcement's flag is shared by all users: only an admin
  (``user=None``) may mark it, and users see it unread until one does.
- Ids are unique; writing an id again changes nothing (the first write wins).
- The queue holds ``queue_limit`` notifications. It only fills during an
  outage (the writer inserts tens of thousands a second otherwise); beyond that the
  newest are dropped, counted in ``health()["dropped"]`` and logged as errors.
- Pages are newest first, ordered by (created_at, id). The cursor is opaque
  to clients: base64url of ``1|<created_at, UTC, microseconds>|<id>``.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import Table, and_, false, or_, select, update
from sqlalchemy.sql import ColumnElement

import slurmcast.storage.engine as engines
from slurmcast.core.notifications import Notification
from slurmcast.core.notify.plan import DeliverySpec
from slurmcast.errors import ProtocolError
from slurmcast.ports import NotificationPage
from slurmcast.storage.availability import Availability
from slurmcast.storage.guard import StoreGuard
from slurmcast.storage.migrate import upgrade
from slurmcast.storage.models import NotificationRow
from slurmcast.storage.outbox import (
    DestinationKind,
    NewDelivery,
    OutboxStore,
    delivery_values,
    write_notifications,
)
from slurmcast.storage.rows import decode_cursor, encode_cursor, row_values, wire
from slurmcast.storage.writer import BatchWriter

log = logging.getLogger("slurmcast.storage")

#: Largest page ``list`` returns, whatever the caller asks for.
MAX_PAGE = 500
CLOSE_TIMEOUT = 5.0
#: Ids per statement in ``mark_read``: old SQLite builds allow 999 parameters.
_IDS_PER_STATEMENT = 500
_TABLE: Table = NotificationRow.metadata.tables["notifications"]
#: A queued row's deliveries travel with it, under this key, to be written in its transaction.
_DELIVERIES = "__deliveries__"


class NotificationStore:
    """The notifications database, shared by the writer task and the HTTP API.

    Args:
        url: ``sqlite+aiosqlite:///<file>`` or ``postgresql+asyncpg://...``.
        queue_limit: notifications ``enqueue`` holds while the database is down.
        batch_size: most rows per insert.
        retry_max: longest wait between retries, in seconds.
        on_unavailable: awaited once per outage with a one-line reason.
        on_recovered: awaited once when the database answers again.
        close_timeout: how long ``close`` keeps trying to write what is queued.

    Raises:
        ConfigError: the URL is not a supported database.
    """

    def __init__(
        self,
        url: str,
        *,
        queue_limit: int = 100_000,
        batch_size: int = 500,
        retry_max: float = 30.0,
        on_unavailable: Callable[[str], Awaitable[None]] | None = None,
        on_recovered: Callable[[], Awaitable[None]] | None = None,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self._url = engines.parse_url(url)
        self._engine = engines.create_engine(self._url)
        self._close_timeout = close_timeout
        self._ready_lock = asyncio.Lock()
        self._migrated = False
        self._availability = Availability(
            engines.masked(self._url), self._url.password, on_unavailable, on_recovered
        )
        #: Called after a write that stored deliveries (the delivery worker wakes up).
        self.on_deliveries: Callable[[], None] = lambda: None
        #: The outbox and the rules, on the same engine (issue 18).
        self._guard = StoreGuard(
            self._availability,
            self._url.password,
            prepare=self._ensure_ready,
            waiting=lambda: self._writer.pending,
            on_outage=lambda: self._writer.wake(),  # it checks for the recovery
        )
        self.outbox = OutboxStore(self._engine, guard=self._guard)
        self._writer = BatchWriter(
            insert=self._insert,
            prepare=self._ensure_ready,
            probe=self._probe,
            availability=self._availability,
            queue_limit=queue_limit,
            batch_size=batch_size,
            retry_max=retry_max,
        )

    async def start(self) -> None:
        """Migrate the schema and start the writer; never raises for a database outage.

        When the database cannot be reached, ``on_unavailable`` is awaited and
        the writer keeps trying in the background: live channels do not
        depend on it.
        """
        try:
            await self._ensure_ready()
        except Exception as exc:  # any failure here is reported, never raised: see docstring
            await self._availability.failed(exc, self._writer.pending)
        else:
            await self._availability.succeeded()
        self._writer.start()

    def enqueue(self, notification: Notification, deliveries: Sequence[DeliverySpec] = ()) -> None:
        """Queue a notification, and the deliveries to make of it, for the writer. Never
        blocks, never raises.

        The deliveries are written in the notification's transaction: both or neither.
        Call it from the event loop's thread. A notification that cannot be
        stored (id too long) or that finds the queue full is dropped and logged.
        """
        try:
            values = row_values(notification)
            if deliveries:
                values[_DELIVERIES] = [
                    delivery_values(
                        NewDelivery(
                            notification_id=notification.id,
                            owner=d.owner,
                            rule_id=d.rule_id,
                            kind=DestinationKind(d.kind),
                            target=d.target,
                            payload=d.payload,
                            idempotency_key=d.idempotency_key,
                        ),
                        notification.created_at,
                    )
                    for d in deliveries
                ]
        except ProtocolError as exc:
            self._writer.dropped += 1
            log.error("notification %.64r not stored: %s", notification.id, exc.message)
            return
        self._writer.put(values)

    async def add(self, notifications: builtins.list[Notification]) -> None:
        """Insert now and wait for it; ids already stored are left as they are.

        Raises:
            ProtocolError: ``INVALID_FIELD`` for an id, user or text that cannot be stored.
            StorageError: the database is unavailable.
        """
        rows = [row_values(n) for n in notifications]
        if not rows:
            return
        async with self._guard("store notifications", write=True):
            await self._insert(rows)

    async def list(
        self,
        user: str | None,
        *,
        unread_only: bool = False,
        limit: int = 50,
        before: str | None = None,
    ) -> NotificationPage:
        """A page of notifications, newest first.

        Args:
            user: whose notifications: their own plus announcements (``user``
                NULL); None (an admin) sees every row.
            unread_only: only rows whose ``read`` flag is false.
            limit: page size, between 1 and ``MAX_PAGE`` (values outside are clamped).
            before: ``next_before`` of the previous page.

        Raises:
            ProtocolError: ``INVALID_FIELD`` when ``before`` is not a cursor.
            StorageError: the database is unavailable.

        A row whose ``data`` cannot be sent is returned with ``{}`` (see ``wire``).
        """
        limit = max(1, min(limit, MAX_PAGE))
        statement = select(_TABLE)
        if user is not None:
            statement = statement.where(or_(_TABLE.c.user == user, _TABLE.c.user.is_(None)))
        if unread_only:
            statement = statement.where(_TABLE.c.read == false())
        if before is not None:
            created_at, last_id = decode_cursor(before)
            statement = statement.where(
                or_(
                    _TABLE.c.created_at < created_at,
                    and_(_TABLE.c.created_at == created_at, _TABLE.c.id < last_id),
                )
            )
        # One row more than asked says whether there is a next page.
        statement = statement.order_by(_TABLE.c.created_at.desc(), _TABLE.c.id.desc())
        async with self._guard("list notifications", write=False), self._engine.connect() as conn:
            rows = (await conn.execute(statement.limit(limit + 1))).all()
        page = rows[:limit]
        next_before = None
        if len(rows) > limit:
            last = page[-1]
            next_before = encode_cursor(last.created_at, last.id)
        return NotificationPage([wire(r._mapping) for r in page], next_before)

    async def mark_read(self, ids: builtins.list[str], user: str | None) -> builtins.list[str]:
        """Mark notifications read.

        Args:
            ids: notification ids; duplicates are ignored.
            user: whose rows may be marked; None (an admin) may mark any,
                including announcements (``user`` NULL), which users may not.

        Returns:
            The ids that are now read and were the caller's to mark, in the
            order given. Ids that were read already are included (marking is
            idempotent, so a retried request returns the same list); unknown
            ids and other people's are not.

        Raises:
            StorageError: the database is unavailable.
        """
        wanted = list(dict.fromkeys(ids))
        marked: set[str] = set()
        async with (
            self._guard("mark notifications read", write=True),
            self._engine.begin() as conn,
        ):
            for start in range(0, len(wanted), _IDS_PER_STATEMENT):
                chunk = wanted[start : start + _IDS_PER_STATEMENT]
                condition: ColumnElement[bool] = _TABLE.c.id.in_(chunk)
                if user is not None:
                    condition = and_(condition, _TABLE.c.user == user)
                found = (await conn.execute(select(_TABLE.c.id).where(condition))).scalars().all()
                if found:
                    await conn.execute(
                        update(_TABLE)
                        .where(_TABLE.c.id.in_(found), _TABLE.c.read == false())
                        .values(read=True)
                    )
                marked.update(found)
        return [i for i in wanted if i in marked]

    async def mark_all_read(self, user: str | None) -> int:
        """Mark every unread row of ``user`` read (None: every row); return how many changed.

        Announcements (``user`` NULL) are only marked by the admin form.

        Raises:
            StorageError: the database is unavailable.
        """
        statement = update(_TABLE).where(_TABLE.c.read == false()).values(read=True)
        if user is not None:
            statement = statement.where(_TABLE.c.user == user)
        async with (
            self._guard("mark notifications read", write=True),
            self._engine.begin() as conn,
        ):
            result = await conn.execute(statement)
        return int(result.rowcount)

    async def get(self, id: str) -> dict[str, Any] | None:
        """One notification in the wire shape, or None. The caller checks who may see it.

        Raises:
            StorageError: the database is unavailable.
        """
        async with self._guard("read a notification", write=False), self._engine.connect() as conn:
            row = (await conn.execute(select(_TABLE).where(_TABLE.c.id == id))).first()
        return wire(row._mapping) if row is not None else None

    def health(self) -> dict[str, Any]:
        """Facts for /health; the URL's password is masked."""
        return {
            "backend": engines.backend_name(self._url),
            "url": engines.masked(self._url),
            "available": self._availability.available,
            "error": self._availability.error,
            "pending": self._writer.pending,
            "written": self._writer.written,
            "dropped": self._writer.dropped,
        }

    @property
    def write_failures(self) -> int:
        """Writer attempts that failed and were retried (GET /metrics)."""
        return self._writer.failures

    async def close(self) -> None:
        """Write what is queued (for up to ``close_timeout``), stop the writer, release connections.

        What cannot be written in time (the database is down) is logged as lost.
        """
        await self._writer.close(self._close_timeout)
        await self._engine.dispose()

    # -- the database -------------------------------------------------------

    async def _insert(self, rows: builtins.list[dict[str, Any]]) -> None:
        notes = [{k: v for k, v in row.items() if k != _DELIVERIES} for row in rows]
        deliveries = [d for row in rows for d in row.get(_DELIVERIES, ())]
        async with self._engine.begin() as conn:
            await write_notifications(conn, notes, deliveries)
        if deliveries:
            self.on_deliveries()

    async def _probe(self) -> None:
        # A write that changes nothing: a database that answers reads but
        # refuses writes (read-only, locked, disk full) is not back yet.
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_TABLE).where(_TABLE.c.id.is_(None)).values(read=_TABLE.c.read)
            )

    async def _ensure_ready(self) -> None:
        if self._migrated:
            return
        async with self._ready_lock:
            if not self._migrated:
                engines.ensure_sqlite_directory(self._url)
                await upgrade(self._engine)
                self._migrated = True
