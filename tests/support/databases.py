"""Throw-away databases for storage tests: a SQLite file, or one on the local PostgreSQL.

PostgreSQL is the server at ``SLURMCAST_TEST_POSTGRES`` (default: trust auth as
``postgres`` on 127.0.0.1:5432). Tests create databases with random names next
to the maintenance database ``postgres`` and drop them afterwards; they never
use an existing database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from slurmcast.storage.engine import create_engine, parse_url

ADMIN_DSN = os.environ.get(
    "SLURMCAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("SLURMCAST_REQUIRE_POSTGRES") == "1"

T = TypeVar("T")


def random_database_name() -> str:
    return f"slurmcast_test_{secrets.token_hex(6)}"


def sqlalchemy_url(database: str) -> str:
    """The store URL for ``database`` on the test server (same host, user, password)."""
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{database}"


async def postgres_unreachable_reason() -> str | None:
    """None when the test server answers; otherwise why not."""
    try:
        connection = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {ADMIN_DSN} is not reachable ({type(exc).__name__}: {exc})"
    await connection.close()
    return None


async def create_database(name: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        # FORCE: a test that failed may have left a store connected.
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def reset_schema(name: str) -> None:
    """Empty a test database: no tables, no Alembic history."""
    connection = await asyncpg.connect(ADMIN_DSN.rpartition("/")[0] + f"/{name}")
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


def run_in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code (a sync fixture).

    In its own thread, so that it neither needs nor disturbs the event loop
    pytest-asyncio keeps for the tests.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass(frozen=True)
class DownDatabase:
    """A database URL that does not work yet, and how to make it work."""

    url: str
    bring_up: Callable[[], Awaitable[None]]


@dataclass
class Backend:
    """One backend of the contract suite: an empty database, and unreachable ones on demand."""

    name: str
    url: str
    make_down: Callable[[], DownDatabase]


def slow_lock_url(url: str) -> str:
    """``url`` with SQLite's busy timeout cut to 50 ms (PostgreSQL URLs unchanged).

    A store waits 5 s for a locked SQLite database by default; under
    ``writes_refused`` each write would take that long to fail.
    """
    return f"{url}?timeout=0.05" if url.startswith("sqlite") else url


@contextlib.asynccontextmanager
async def writes_refused(url: str) -> AsyncIterator[None]:
    """A database that answers reads but refuses writes, until the block exits.

    SQLite: another connection holds the write lock (WAL lets reads go on),
    as during a long write elsewhere. PostgreSQL: a trigger refuses every
    write with SQLSTATE 25006, what a read-only server answers after a
    failover. Give the store ``slow_lock_url(url)``; the schema must exist.
    """
    if url.startswith("sqlite"):
        path = make_url(url).database
        assert path is not None
        lock = sqlite3.connect(path, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            yield
            lock.execute("ROLLBACK")
        finally:
            lock.close()
        return
    database = make_url(url).database
    assert database is not None
    dsn = ADMIN_DSN.rpartition("/")[0] + "/" + database
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """
            CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'writes refused by the test'
                    USING ERRCODE = 'read_only_sql_transaction';
            END $$;
            CREATE TRIGGER refuse_writes BEFORE INSERT OR UPDATE OR DELETE ON notifications
                FOR EACH STATEMENT EXECUTE FUNCTION refuse_writes();
            """
        )
        yield
    finally:
        await connection.execute(
            "DROP TRIGGER IF EXISTS refuse_writes ON notifications;"
            "DROP FUNCTION IF EXISTS refuse_writes()"
        )
        await connection.close()


async def set_raw_data(url: str, values: dict[str, str]) -> None:
    """Write ``data`` columns as JSON text, past the store's checks, as another program could."""
    engine = create_engine(parse_url(url))
    try:
        async with engine.begin() as conn:
            for id, raw in values.items():
                await conn.execute(
                    text("UPDATE notifications SET data = :raw WHERE id = :id"),
                    {"raw": raw, "id": id},
                )
    finally:
        await engine.dispose()
