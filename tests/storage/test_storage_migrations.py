"""The Alembic migrations, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from slurmcast.errors import StorageError
from slurmcast.storage import NotificationStore, migrate
from slurmcast.storage.engine import create_engine, parse_url
from slurmcast.storage.migrate import alembic_config
from slurmcast.storage.models import Base

from support.databases import Backend

VERSION_TABLE = "slurmcast_alembic_version"
T = TypeVar("T")


def schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    columns = {
        c["name"]: (type(c["type"]).__name__.upper(), c["nullable"])
        for c in inspector.get_columns("notifications")
    }
    indexes = {i["name"]: tuple(i["column_names"]) for i in inspector.get_indexes("notifications")}
    version = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    return {
        "tables": set(inspector.get_table_names()),
        "columns": columns,
        "primary_key": inspector.get_pk_constraint("notifications")["constrained_columns"],
        "indexes": indexes,
        "version": [row[0] for row in version],
    }


def differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return list(compare_metadata(context, Base.metadata))


async def run(engine: AsyncEngine, function: Callable[[Connection], T]) -> T:
    async with engine.connect() as connection:
        return await connection.run_sync(function)


async def test_migrate_creates_the_models_schema_and_a_second_run_changes_nothing(
    backend: Backend,
) -> None:
    engine = create_engine(parse_url(backend.url))
    try:
        await migrate(backend.url)
        first = await run(engine, schema)
        await migrate(backend.url)
        second = await run(engine, schema)
        drift = await run(engine, differences)
    finally:
        await engine.dispose()
    assert first == second
    assert first["tables"] == {"notifications", "deliveries", "notify_rules", VERSION_TABLE}
    assert first["version"] == ["0002"]
    assert first["primary_key"] == ["id"]
    nullable = {name: null for name, (_, null) in first["columns"].items()}
    assert nullable == {
        "id": False,
        "user": True,
        "type": False,
        "title": False,
        "message": False,
        "severity": False,
        "read": False,
        "created_at": False,
        "data": True,
    }
    assert first["indexes"] == {
        "ix_notifications_user": ("user",),
        "ix_notifications_created_at": ("created_at",),
        "ix_notifications_user_read_created_at": ("user", "read", "created_at"),
    }
    # The models and the migrations describe the same schema.
    assert drift == []


async def test_downgrade_to_base_removes_the_table(backend: Backend) -> None:
    await migrate(backend.url)
    engine = create_engine(parse_url(backend.url))
    config = alembic_config()

    def downgrade(connection: Connection) -> set[str]:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        return set(inspect(connection).get_table_names())

    try:
        async with engine.begin() as connection:
            tables = await connection.run_sync(downgrade)
    finally:
        await engine.dispose()
    assert tables == {VERSION_TABLE}
    await migrate(backend.url)  # and back up again


async def test_the_alembic_tools_work_without_a_running_loop(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a developer runs to write the next revision: env.py makes its own
    # engine and event loop from sqlalchemy.url (here in a worker thread,
    # since the test's loop is running).
    config = alembic_config(backend.url)
    await asyncio.to_thread(command.upgrade, config, "head")
    engine = create_engine(parse_url(backend.url))
    try:
        assert (await run(engine, schema))["version"] == ["0002"]
    finally:
        await engine.dispose()
    await asyncio.to_thread(command.upgrade, alembic_config(backend.url), "base:head", sql=True)
    assert "CREATE TABLE notifications" in capsys.readouterr().out


async def test_a_schema_from_a_newer_version_is_reported_not_raised(backend: Backend) -> None:
    await migrate(backend.url)
    engine = create_engine(parse_url(backend.url))
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    finally:
        await engine.dispose()
    reasons: list[str] = []

    async def on_unavailable(reason: str) -> None:
        reasons.append(reason)

    store = NotificationStore(backend.url, on_unavailable=on_unavailable, close_timeout=0.1)
    await store.start()
    try:
        with pytest.raises(StorageError, match="9999"):
            await store.list(None)
        health = store.health()
    finally:
        await store.close()
    assert health["available"] is False and "9999" in health["error"]
    assert reasons == [health["error"]]
