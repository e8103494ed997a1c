"""Alembic environment for slurmcast's storage.

``slurmcast.storage.migrate`` runs Alembic inside ``AsyncConnection.run_sync``
and hands the connection over in ``config.attributes["connection"]``: Alembic
is synchronous, and the event loop is already running, so it must not start
one itself. Without a connection (the ``alembic`` command line with
``sqlalchemy.url`` set) this file makes an async engine and runs it with
``asyncio.run``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from slurmcast.storage.engine import create_engine, ensure_sqlite_directory, parse_url
from slurmcast.storage.models import Base

#: Our own name, so a PostgreSQL database shared with another Alembic project
#: does not mix the two histories in one ``alembic_version`` table.
VERSION_TABLE = "slurmcast_alembic_version"

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or run through slurmcast.storage.migrate")
    parsed = parse_url(url)
    ensure_sqlite_directory(parsed)
    engine = create_engine(parsed, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_offline()
elif (shared := config.attributes.get("connection")) is not None:
    run_migrations(shared)
else:
    asyncio.run(run_online())
