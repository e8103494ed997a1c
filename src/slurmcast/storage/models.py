"""The database schema, as SQLAlchemy declarative models.

The migrations in ``migrations/versions`` create exactly this schema; a test
compares the two, so a change here needs a new migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Named constraints, so that later migrations can drop or alter them by name
# on every backend (SQLite's batch mode needs names too).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored and returned in UTC on every backend.

    SQLite has no time zones: SQLAlchemy writes the wall-clock digits and
    drops the offset, so a +02:00 time would come back two hours off and
    naive. Converting to UTC before writing keeps the digits comparable
    (ordering, cursors) and lets us attach UTC again when reading.
    Naive datetimes are taken to be UTC already, as ``core.timefmt`` does.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class NotificationRow(Base):
    """One stored notification. ``user`` NULL means it is for everyone."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    type: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    read: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        # A user's inbox: their rows, read or unread, newest first.
        Index("ix_notifications_user_read_created_at", "user", "read", "created_at"),
    )


#: Column lengths, checked before writing so both backends refuse the same values.
ID_LENGTH = 64
USER_LENGTH = 64
TYPE_LENGTH = 32
TITLE_LENGTH = 200
SEVERITY_LENGTH = 16


# -- the outbox (issue 18) ----------------------------------------------------

#: Outbox column lengths, checked (or cut, for ``last_error``) before writing.
RULE_ID_LENGTH = 64
KIND_LENGTH = 16
STATE_LENGTH = 16
IDEMPOTENCY_KEY_LENGTH = 128
LAST_ERROR_LENGTH = 1000
INSTANCE_LENGTH = 64


class DeliveryRow(Base):
    """One message to send (the outbox): a notification, for one rule, to one destination.

    Written in the same transaction as its notification. ``state`` moves
    pending → delivering (claimed, under a lease) → delivered, or back to
    pending (a failed attempt, retried at ``next_attempt_at``), or dead.
    While delivering, ``next_attempt_at`` equals ``claimed_until``: a row
    whose lease ran out (its process died) is due again, so one index serves
    the claim of both. ``owner`` is the rule's owner: who may see and retry it.
    """

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    notification_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    owner: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(RULE_ID_LENGTH))
    kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    target: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_LENGTH), unique=True)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(LAST_ERROR_LENGTH), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(INSTANCE_LENGTH), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        CheckConstraint("state IN ('pending', 'delivering', 'delivered', 'dead')", name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        # The claim: due rows in state pending or delivering, oldest first.
        Index("ix_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        # A user's deliveries (optionally in one state), newest first.
        Index("ix_deliveries_owner_state_created_at", "owner", "state", "created_at"),
    )


class NotifyRuleRow(Base):
    """A user's notification rule; ``spec`` is ``core.notify.rules``' rule as JSON."""

    __tablename__ = "notify_rules"

    id: Mapped[str] = mapped_column(String(RULE_ID_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
