"""The durable outbox (issue 18): deliveries written with their notification, claimed under a lease.

Nothing here sends anything. A notification that some user's rule wants
delivered by e-mail, Slack or webhook gets one ``deliveries`` row per
destination, inserted in the same transaction as the notification itself
(``write_notifications``), so either both exist or neither. Delivery workers
then ``claim`` due rows, send them, and record ``delivered`` or ``failed``.

States::

    pending --claim--> delivering --delivered--> delivered
       ^                  |  |
       +----failed(at)----+  +--failed(None)--> dead --retry--> pending

- ``claim`` takes pending rows whose ``next_attempt_at`` has come, and
  delivering rows whose lease (``claimed_until``) has run out: the process
  that claimed them died mid-delivery, so they are delivered after a restart.
  A claim counts an attempt (``attempts`` + 1), a lost one included.
  While a row is delivering, ``next_attempt_at`` equals ``claimed_until``;
  one index, (state, next_attempt_at), serves both halves of the claim.
- Two claimers never get the same row: PostgreSQL locks the rows it picks
  with ``SELECT ... FOR UPDATE SKIP LOCKED`` and updates them in the same
  transaction; SQLite claims with one ``UPDATE ... WHERE id IN (SELECT ...)
  RETURNING`` (SQLite 3.35 or newer), and SQLite has one writer at a time.
- ``delivered`` and ``failed`` change only a row that is delivering; given
  ``by`` (the claimer's instance id), only one that instance still holds, so a
  claimer whose lease ran out cannot undo the attempt of the one that took
  over. The receiver drops the second send by its idempotency key.
- ``retry`` puts a dead row back to pending, due at once, with ``attempts``
  reset to 0: a person asked for it again, so it gets the full number of
  attempts again; ``last_error`` is kept until the next failure replaces it.
- ``owner`` is the owner of the rule that made the delivery; a user (``owner``
  given) only sees, and retries, their own; None is an admin, who sees all.
  Rules are scoped the same way. A rule's ``spec`` is stored as JSON; what it
  means is ``core.notify``'s business.

Errors are those of ``NotificationStore``: ``StorageError`` when the database
cannot answer, ``ProtocolError`` (``INVALID_FIELD``) for a value it refuses or
that does not fit. A delivery whose idempotency key is already used is not
written again (see ``write_notifications``).
"""

from __future__ import annotations

import builtins
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, Table, and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from slurmcast.core.notifications import Notification
from slurmcast.core.notify.rules import DestinationKind
from slurmcast.core.timefmt import iso_z
from slurmcast.errors import ErrorCode, ProtocolError
from slurmcast.storage.availability import Availability
from slurmcast.storage.guard import StoreGuard
from slurmcast.storage.models import (
    ID_LENGTH,
    IDEMPOTENCY_KEY_LENGTH,
    INSTANCE_LENGTH,
    LAST_ERROR_LENGTH,
    RULE_ID_LENGTH,
    USER_LENGTH,
    DeliveryRow,
    NotificationRow,
    NotifyRuleRow,
)
from slurmcast.storage.rows import (
    UNREADABLE,
    decode_cursor,
    encode_cursor,
    row_values,
)

#: Largest page ``list`` returns, whatever the caller asks for.
MAX_PAGE = 500
_DELIVERIES: Table = DeliveryRow.metadata.tables["deliveries"]
_RULES: Table = NotifyRuleRow.metadata.tables["notify_rules"]
_NOTIFICATIONS: Table = NotificationRow.metadata.tables["notifications"]
_ELLIPSIS = "…"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to write with its notification.

    ``idempotency_key`` defaults to a digest of (notification, rule, kind,
    target): the same notification sent by the same rule to the same place
    is one delivery, however often it is written. ``id`` defaults to a new one.
    """

    notification_id: str
    owner: str
    rule_id: str
    kind: DestinationKind
    target: str
    payload: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    id: str | None = None

    def key(self) -> str:
        if self.idempotency_key is not None:
            return self.idempotency_key
        parts = (self.notification_id, self.rule_id, str(self.kind), self.target)
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stored delivery."""

    id: str
    notification_id: str
    owner: str
    rule_id: str
    kind: str
    target: str
    payload: dict[str, Any]
    idempotency_key: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    claimed_by: str | None
    claimed_until: datetime | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Delivery:
        payload = row["payload"]
        return cls(
            id=row["id"],
            notification_id=row["notification_id"],
            owner=row["owner"],
            rule_id=row["rule_id"],
            kind=row["kind"],
            target=row["target"],
            # A value another program wrote that is not an object is not ours to send.
            payload=payload if isinstance(payload, dict) and payload is not UNREADABLE else {},
            idempotency_key=row["idempotency_key"],
            state=DeliveryState(row["state"]),
            attempts=int(row["attempts"]),
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            claimed_by=row["claimed_by"],
            claimed_until=row["claimed_until"],
            created_at=row["created_at"],
            delivered_at=row["delivered_at"],
        )

    def data(self) -> dict[str, Any]:
        """The API's shape: times as ISO 8601 UTC strings."""
        return {
            "id": self.id,
            "notification_id": self.notification_id,
            "owner": self.owner,
            "rule_id": self.rule_id,
            "kind": self.kind,
            "target": self.target,
            "payload": self.payload,
            "idempotency_key": self.idempotency_key,
            "state": self.state.value,
            "attempts": self.attempts,
            "next_attempt_at": iso_z(self.next_attempt_at),
            "last_error": self.last_error,
            "claimed_by": self.claimed_by,
            "claimed_until": iso_z(self.claimed_until),
            "created_at": iso_z(self.created_at),
            "delivered_at": iso_z(self.delivered_at),
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt at a claimed delivery ended, as the columns it sets."""

    id: str
    values: dict[str, Any]
    #: Sent: recorded with the other deliveries of its batch in one statement.
    sent: bool = False

    @classmethod
    def delivered(cls, id: str, now: datetime) -> Outcome:
        values = {
            "state": DeliveryState.DELIVERED.value,
            "delivered_at": now,
            "claimed_until": None,
        }
        return cls(id, values, sent=True)

    @classmethod
    def failed(
        cls, id: str, error: str, next_attempt_at: datetime | None, now: datetime
    ) -> Outcome:
        """Pending again at ``next_attempt_at``, or dead when None; ``error`` cut to fit."""
        if len(error) > LAST_ERROR_LENGTH:
            error = error[: LAST_ERROR_LENGTH - 1] + _ELLIPSIS
        values: dict[str, Any] = {"last_error": error, "claimed_until": None}
        if next_attempt_at is None:
            values.update(state=DeliveryState.DEAD.value, next_attempt_at=now)
        else:
            values.update(state=DeliveryState.PENDING.value, next_attempt_at=next_attempt_at)
        return cls(id, values)

    @classmethod
    def postponed(cls, id: str, until: datetime) -> Outcome:
        """Given back unsent: the attempt its claim counted is taken back."""
        values: dict[str, Any] = {
            "state": DeliveryState.PENDING.value,
            "next_attempt_at": until,
            "claimed_until": None,
            "attempts": _DELIVERIES.c.attempts - 1,
        }
        return cls(id, values)


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    items: list[Delivery]
    #: The ``before`` of the next page; None on the last one.
    next_before: str | None


@dataclass(frozen=True, slots=True)
class StoredRule:
    """One user's notification rule as stored; ``spec`` is ``core.notify``'s rule as JSON."""

    id: str
    owner: str
    spec: dict[str, Any]
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StoredRule:
        spec = row["spec"]
        return cls(
            id=row["id"],
            owner=row["owner"],
            spec=spec if isinstance(spec, dict) and spec is not UNREADABLE else {},
            enabled=bool(row["enabled"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "spec": self.spec,
            "enabled": self.enabled,
            "created_at": iso_z(self.created_at),
            "updated_at": iso_z(self.updated_at),
        }


def new_delivery_id() -> str:
    return f"dlv-{uuid.uuid4().hex[:16]}"


def new_rule_id() -> str:
    return f"rule-{uuid.uuid4().hex[:16]}"


def delivery_values(delivery: NewDelivery, now: datetime) -> dict[str, Any]:
    """The column values of a new delivery: pending, due at ``now``.

    Raises:
        ProtocolError: ``INVALID_FIELD`` for a value that does not fit its column.
    """
    key = delivery.key()
    _check("a delivery id", delivery.id or "-", ID_LENGTH)
    _check("a notification id", delivery.notification_id, ID_LENGTH)
    _check("a delivery owner", delivery.owner, USER_LENGTH)
    _check("a rule id", delivery.rule_id, RULE_ID_LENGTH)
    _check("an idempotency key", key, IDEMPOTENCY_KEY_LENGTH)
    if not delivery.target:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "a delivery needs a target")
    return {
        "id": delivery.id or new_delivery_id(),
        "notification_id": delivery.notification_id,
        "owner": delivery.owner,
        "rule_id": delivery.rule_id,
        "kind": DestinationKind(delivery.kind).value,
        "target": delivery.target,
        "payload": delivery.payload,
        "idempotency_key": key,
        "state": DeliveryState.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "claimed_by": None,
        "claimed_until": None,
        "created_at": now,
        "delivered_at": None,
    }


async def write_notifications(
    conn: AsyncConnection,
    notifications: Sequence[dict[str, Any]],
    deliveries: Sequence[dict[str, Any]],
) -> set[str]:
    """Insert notification rows and their delivery rows on ``conn``, in the caller's transaction.

    Made for the batching writer: ``notifications`` are ``rows.row_values``
    dicts, ``deliveries`` are ``delivery_values`` dicts. A notification id
    already stored is left as it is (the first write wins) and so are its
    deliveries: only those of the notifications this call inserted are
    written, so writing a batch again adds nothing. A delivery whose
    idempotency key is already used is not written either: the same
    transition planned again (after a failover) is sent once.

    Returns:
        The ids of the notifications inserted now.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: as any statement.
    """
    if not notifications:
        return set()
    result = await conn.execute(
        _insert_ignoring(conn, _NOTIFICATIONS).returning(_NOTIFICATIONS.c.id), list(notifications)
    )
    inserted = set(result.scalars().all())
    rows = [d for d in deliveries if d["notification_id"] in inserted]
    if rows:
        # A delivery planned twice (a poll re-diffed after a failover) has the same key:
        # the first one stands, and nothing is sent twice.
        await conn.execute(_insert_ignoring(conn, _DELIVERIES, "idempotency_key"), rows)
    return inserted


class OutboxStore:
    """The outbox and the rules, over the notification store's engine.

    Args:
        engine: the notifications database's engine (shared: no second pool).
        availability: the notification store's, told about outages and
            recoveries; None to report nothing.
        prepare: awaited before each operation (the store's migration);
            None when the schema is known to be current.
        guard: the notification store's own guard, used instead of one built from
            ``availability`` and ``prepare`` (its outages also wake its writer).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        availability: Availability | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        guard: StoreGuard | None = None,
    ) -> None:
        self._engine = engine
        self._guard = guard or StoreGuard(availability, engine.url.password, prepare=prepare)
        self._postgres = engine.dialect.name == "postgresql"

    # -- writing ------------------------------------------------------------

    async def add_with_notification(
        self,
        notifications: builtins.list[Notification],
        deliveries: builtins.list[NewDelivery],
        now: datetime,
    ) -> set[str]:
        """Store notifications and their deliveries in one transaction; return the ids inserted.

        A notification already stored is left as it is, and its deliveries
        are not written (see ``write_notifications``).

        Raises:
            ValueError: a delivery names a notification not given here.
            ProtocolError: ``INVALID_FIELD`` for a value that cannot be stored.
            StorageError: the database is unavailable.
        """
        rows = [row_values(n) for n in notifications]
        given = {row["id"] for row in rows}
        stray = [d.notification_id for d in deliveries if d.notification_id not in given]
        if stray:
            raise ValueError(f"deliveries for notifications not given: {stray[:5]}")
        values = [delivery_values(d, now) for d in deliveries]
        async with self._guard("store notifications", write=True), self._engine.begin() as conn:
            return await write_notifications(conn, rows, values)

    async def claim(
        self, instance_id: str, now: datetime, lease_s: float, limit: int
    ) -> builtins.list[Delivery]:
        """Claim up to ``limit`` due deliveries for ``lease_s`` seconds, the longest due first.

        Due: pending with ``next_attempt_at`` reached, or delivering with its
        lease run out. Each claimed row is delivering, held by ``instance_id``
        until ``now + lease_s``, with one more attempt counted. The claimed
        rows are returned oldest (``created_at``) first.

        Raises:
            ProtocolError: ``INVALID_FIELD`` for an instance id that does not fit.
            StorageError: the database is unavailable.
        """
        _check("an instance id", instance_id, INSTANCE_LENGTH)
        if limit < 1:
            return []
        until = now + timedelta(seconds=lease_s)
        table = _DELIVERIES
        due = (
            select(table.c.id)
            .where(
                table.c.state.in_([DeliveryState.PENDING.value, DeliveryState.DELIVERING.value]),
                table.c.next_attempt_at <= now,
            )
            .order_by(table.c.next_attempt_at, table.c.id)
            .limit(limit)
        )
        claim = update(table).values(
            state=DeliveryState.DELIVERING.value,
            claimed_by=instance_id,
            claimed_until=until,
            next_attempt_at=until,
            attempts=table.c.attempts + 1,
        )
        async with self._guard("claim deliveries", write=True), self._engine.begin() as conn:
            if self._postgres:
                # Rows another claimer holds are skipped, not waited for.
                ids = (await conn.execute(due.with_for_update(skip_locked=True))).scalars().all()
                if not ids:
                    return []
                statement = claim.where(table.c.id.in_(ids))
            else:
                # One statement: SQLite runs one writer at a time.
                statement = claim.where(table.c.id.in_(due.scalar_subquery()))
            ids = (await conn.execute(statement.returning(table.c.id))).scalars().all()
            claimed = await _read_claimed(conn, list(ids))
        claimed.sort(key=lambda d: (d.created_at, d.id))
        return claimed

    async def delivered(self, id: str, now: datetime, *, by: str | None = None) -> bool:
        """Record a delivery as sent; False when it is not delivering (or not held by ``by``).

        Raises:
            StorageError: the database is unavailable.
        """
        return await self.record([Outcome.delivered(id, now)], by=by) == 1

    async def failed(
        self,
        id: str,
        error: str,
        next_attempt_at: datetime | None,
        now: datetime,
        *,
        by: str | None = None,
    ) -> bool:
        """Record a failed attempt: pending again at ``next_attempt_at``, or dead when None.

        ``error`` is cut to the column's length. Returns False when the
        delivery is not delivering (or not held by ``by``).

        Raises:
            StorageError: the database is unavailable.
        """
        return await self.record([Outcome.failed(id, error, next_attempt_at, now)], by=by) == 1

    async def postpone(self, id: str, until: datetime, *, by: str | None = None) -> bool:
        """Give a claimed delivery back unsent, pending again at ``until``.

        For a delivery the worker chose not to send yet (its destination's rate
        limit): no attempt was made, so the one its claim counted is taken back.
        Returns False when it is not delivering (or not held by ``by``).

        Raises:
            StorageError: the database is unavailable.
        """
        return await self.record([Outcome.postponed(id, until)], by=by) == 1

    async def record(self, outcomes: Sequence[Outcome], *, by: str | None = None) -> int:
        """Record the outcomes of a batch of attempts in one transaction; return how many
        deliveries changed (one not delivering, or not held by ``by``, is left alone).

        One transaction, and one statement for all the deliveries sent: a batch costs the
        database one commit, not one per delivery (on SQLite, one turn of its write lock).

        Raises:
            StorageError: the database is unavailable.
        """
        if not outcomes:
            return 0
        table = _DELIVERIES
        sent = [o for o in outcomes if o.sent]
        others = [o for o in outcomes if not o.sent]
        statements = []
        if sent:
            # All sent in one batch are recorded with the first one's delivered_at.
            ids = [o.id for o in sent]
            statements.append(update(table).where(table.c.id.in_(ids)).values(sent[0].values))
        statements += [update(table).where(table.c.id == o.id).values(o.values) for o in others]
        changed = 0
        async with self._guard("record deliveries", write=True), self._engine.begin() as conn:
            for statement in statements:
                statement = statement.where(table.c.state == DeliveryState.DELIVERING.value)
                if by is not None:
                    statement = statement.where(table.c.claimed_by == by)
                changed += int((await conn.execute(statement)).rowcount)
        return changed

    async def retry(self, id: str, now: datetime, *, owner: str | None = None) -> Delivery | None:
        """Put a dead delivery back: pending, due at ``now``, attempts reset to 0.

        Returns:
            The delivery as it now is; None when there is no dead delivery
            ``id`` that ``owner`` may see (None: an admin, any).

        Raises:
            StorageError: the database is unavailable.
        """
        table = _DELIVERIES
        statement = (
            update(table)
            .where(table.c.id == id, table.c.state == DeliveryState.DEAD.value)
            .values(
                state=DeliveryState.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                claimed_by=None,
                claimed_until=None,
            )
        )
        if owner is not None:
            statement = statement.where(table.c.owner == owner)
        async with self._guard("retry a delivery", write=True), self._engine.begin() as conn:
            row = (await conn.execute(statement.returning(*table.c))).first()
        return Delivery.from_row(row._mapping) if row is not None else None

    # -- reading ------------------------------------------------------------

    async def get(self, id: str, *, owner: str | None = None) -> Delivery | None:
        """One delivery, or None (also when it is not ``owner``'s).

        Raises:
            StorageError: the database is unavailable.
        """
        statement = select(_DELIVERIES).where(_DELIVERIES.c.id == id)
        if owner is not None:
            statement = statement.where(_DELIVERIES.c.owner == owner)
        async with self._guard("read a delivery", write=False), self._engine.connect() as conn:
            row = (await conn.execute(statement)).first()
        return Delivery.from_row(row._mapping) if row is not None else None

    async def list(
        self,
        *,
        state: DeliveryState | None = None,
        owner: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> DeliveryPage:
        """A page of deliveries, newest first (by created_at, then id).

        Args:
            state: only deliveries in this state.
            owner: only this user's; None (an admin) sees every one.
            limit: page size, clamped between 1 and ``MAX_PAGE``.
            before: ``next_before`` of the previous page.

        Raises:
            ProtocolError: ``INVALID_FIELD`` when ``before`` is not a cursor.
            StorageError: the database is unavailable.
        """
        table = _DELIVERIES
        limit = max(1, min(limit, MAX_PAGE))
        statement = select(table)
        if owner is not None:
            statement = statement.where(table.c.owner == owner)
        if state is not None:
            statement = statement.where(table.c.state == DeliveryState(state).value)
        if before is not None:
            created_at, last_id = decode_cursor(before)
            statement = statement.where(
                or_(
                    table.c.created_at < created_at,
                    and_(table.c.created_at == created_at, table.c.id < last_id),
                )
            )
        statement = statement.order_by(table.c.created_at.desc(), table.c.id.desc())
        async with self._guard("list deliveries", write=False), self._engine.connect() as conn:
            rows = (await conn.execute(statement.limit(limit + 1))).all()
        page = [Delivery.from_row(r._mapping) for r in rows[:limit]]
        next_before = None
        if len(rows) > limit:
            next_before = encode_cursor(page[-1].created_at, page[-1].id)
        return DeliveryPage(page, next_before)

    async def notification_ids(self, prefix: str, since: datetime) -> set[str]:
        """Ids of the notifications stored since ``since`` whose id starts with ``prefix``.

        The planner's memory of what it told, across a restart (ids derived from a job and
        a rule: ``core.notify.plan.PENDING_ID_PREFIX``).

        Raises:
            StorageError: the database is unavailable.
        """
        table = _NOTIFICATIONS
        statement = select(table.c.id).where(
            table.c.id.startswith(prefix, autoescape=True), table.c.created_at >= since
        )
        async with (
            self._guard("read notification ids", write=False),
            self._engine.connect() as conn,
        ):
            return set((await conn.execute(statement)).scalars().all())

    # -- rules --------------------------------------------------------------

    async def add_rule(
        self,
        owner: str,
        spec: dict[str, Any],
        now: datetime,
        *,
        enabled: bool = True,
        id: str | None = None,
    ) -> StoredRule:
        """Store a new rule for ``owner``.

        Raises:
            ProtocolError: ``INVALID_FIELD`` for an owner or id that does not fit,
                an id already used, or a spec the database refuses.
            StorageError: the database is unavailable.
        """
        _check("a rule owner", owner, USER_LENGTH)
        rule = StoredRule(id or new_rule_id(), owner, spec, enabled, now, now)
        _check("a rule id", rule.id, RULE_ID_LENGTH)
        values = {
            "id": rule.id,
            "owner": owner,
            "spec": spec,
            "enabled": enabled,
            "created_at": now,
            "updated_at": now,
        }
        async with self._guard("store a rule", write=True), self._engine.begin() as conn:
            await conn.execute(_RULES.insert().values(values))
        return rule

    async def get_rule(self, id: str, *, owner: str | None = None) -> StoredRule | None:
        """One rule, or None (also when it is not ``owner``'s).

        Raises:
            StorageError: the database is unavailable.
        """
        statement = _scoped(select(_RULES).where(_RULES.c.id == id), owner)
        async with self._guard("read a rule", write=False), self._engine.connect() as conn:
            row = (await conn.execute(statement)).first()
        return StoredRule.from_row(row._mapping) if row is not None else None

    async def update_rule(
        self,
        id: str,
        now: datetime,
        *,
        owner: str | None = None,
        spec: dict[str, Any] | None = None,
        enabled: bool | None = None,
    ) -> StoredRule | None:
        """Change a rule's spec and/or enabled flag; None when ``owner`` has no rule ``id``.

        Raises:
            ProtocolError: ``INVALID_FIELD`` for a spec the database refuses.
            StorageError: the database is unavailable.
        """
        values: dict[str, Any] = {"updated_at": now}
        if spec is not None:
            values["spec"] = spec
        if enabled is not None:
            values["enabled"] = enabled
        statement = update(_RULES).where(_RULES.c.id == id).values(values)
        if owner is not None:
            statement = statement.where(_RULES.c.owner == owner)
        async with self._guard("change a rule", write=True), self._engine.begin() as conn:
            row = (await conn.execute(statement.returning(*_RULES.c))).first()
        return StoredRule.from_row(row._mapping) if row is not None else None

    async def delete_rule(self, id: str, *, owner: str | None = None) -> bool:
        """Delete a rule; False when ``owner`` has no rule ``id``.

        Deliveries the rule already made are kept (and still sent).

        Raises:
            StorageError: the database is unavailable.
        """
        statement = delete(_RULES).where(_RULES.c.id == id)
        if owner is not None:
            statement = statement.where(_RULES.c.owner == owner)
        async with self._guard("delete a rule", write=True), self._engine.begin() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount) == 1

    async def rules_for(self, owner: str) -> builtins.list[StoredRule]:
        """``owner``'s rules, oldest first.

        Raises:
            StorageError: the database is unavailable.
        """
        return await self._rules(_scoped(select(_RULES), owner))

    async def all_rules(self, *, enabled_only: bool = False) -> builtins.list[StoredRule]:
        """Every user's rules (or only the enabled ones), oldest first.

        Raises:
            StorageError: the database is unavailable.
        """
        statement = select(_RULES)
        if enabled_only:
            statement = statement.where(_RULES.c.enabled.is_(True))
        return await self._rules(statement)

    # -- the database -------------------------------------------------------

    async def _rules(self, statement: Select[Any]) -> builtins.list[StoredRule]:
        statement = statement.order_by(_RULES.c.created_at, _RULES.c.id)
        async with self._guard("list rules", write=False), self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [StoredRule.from_row(r._mapping) for r in rows]


async def _read_claimed(conn: AsyncConnection, ids: builtins.list[str]) -> builtins.list[Delivery]:
    """The claimed rows; one nothing can read (another program's value) becomes a dead
    letter instead of failing every claim that takes it and the rows claimed with it."""
    table = _DELIVERIES
    if not ids:
        return []
    try:
        rows = (await conn.execute(select(table).where(table.c.id.in_(ids)))).all()
        return [Delivery.from_row(r._mapping) for r in rows]
    except (ValueError, TypeError, KeyError):
        pass
    claimed, unreadable = [], []
    for id in ids:
        try:
            row = (await conn.execute(select(table).where(table.c.id == id))).one()
            claimed.append(Delivery.from_row(row._mapping))
        except (ValueError, TypeError, KeyError):
            unreadable.append(id)
    await conn.execute(
        update(table)
        .where(table.c.id.in_(unreadable))
        .values(
            state=DeliveryState.DEAD.value,
            last_error="the stored delivery cannot be read",
            claimed_until=None,
        )
    )
    return claimed


def _insert_ignoring(conn: AsyncConnection, table: Table, column: str = "id") -> Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=[column])
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=[column])


def _scoped(statement: Select[Any], owner: str | None) -> Select[Any]:
    return statement if owner is None else statement.where(_RULES.c.owner == owner)


def _check(what: str, value: str, length: int) -> None:
    if not value or len(value) > length:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{what} must be 1 to {length} characters")


__all__ = [
    "MAX_PAGE",
    "Delivery",
    "DeliveryPage",
    "DeliveryState",
    "DestinationKind",
    "NewDelivery",
    "OutboxStore",
    "Outcome",
    "StoredRule",
    "delivery_values",
    "new_delivery_id",
    "new_rule_id",
    "write_notifications",
]
