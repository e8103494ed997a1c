"""The database schema, as SQLAlchemy declarative models.

The migrations in ``migrations/versions`` create exactly this schema; a test
compares the two, so a change here needs a new migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Dialect, Index, MetaData, String, Text, false
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
