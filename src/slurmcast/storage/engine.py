"""Database URLs and engines: one async code path for SQLite and PostgreSQL.

Only two drivers are supported, because idempotent inserts are written per
dialect: ``sqlite+aiosqlite`` and ``postgresql+asyncpg``. A bare ``sqlite://``,
``postgresql://`` or ``postgres://`` URL is given the matching driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from slurmcast.errors import ConfigError
from slurmcast.storage.rows import load_json

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_DRIVERS = {SQLITE: "sqlite+aiosqlite", POSTGRESQL: "postgresql+asyncpg"}
#: asyncpg waits 60 s for a connection by default; a blackholed host would
#: then hold every API request that long before it can answer 503.
POSTGRES_CONNECT_TIMEOUT = 5.0


def default_url(data_dir: str | Path) -> str:
    """The SQLite database used when no URL is configured: ``<data_dir>/slurmcast.db``."""
    path = Path(data_dir).resolve() / "slurmcast.db"
    return f"sqlite+aiosqlite:///{path}"


def parse_url(url: str) -> URL:
    """Parse and normalise a database URL.

    Raises:
        ConfigError: the URL cannot be parsed, names another database, another
            driver, or an in-memory SQLite database (each connection would see
            its own empty database).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL is not valid: {exc}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = POSTGRESQL
    if backend not in _DRIVERS:
        raise ConfigError(
            f"database {backend!r} is not supported: use sqlite+aiosqlite or postgresql+asyncpg"
        )
    wanted = _DRIVERS[backend]
    if driver and f"{backend}+{driver}" != wanted:
        raise ConfigError(f"database driver {driver!r} is not supported: use {wanted}")
    if backend == SQLITE and parsed.database in (None, "", ":memory:"):
        raise ConfigError("SQLite needs a file: in-memory databases are not supported")
    return parsed.set(drivername=wanted)


def backend_name(url: URL) -> str:
    """``"sqlite"`` or ``"postgresql"``."""
    return url.get_backend_name()


def masked(url: URL) -> str:
    """The URL as text with any password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL."""
    if backend_name(url) != SQLITE or not url.database:
        return None
    return Path(url.database)


def ensure_sqlite_directory(url: URL) -> None:
    """Create the directory of a SQLite database file (no-op for PostgreSQL).

    Raises:
        OSError: the directory cannot be created.
    """
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: URL, **options: Any) -> AsyncEngine:
    """An async engine for a normalised URL (see ``parse_url``).

    ``options`` go to ``create_async_engine`` (e.g. ``poolclass``).
    """
    connect_args: dict[str, Any] = {}
    if backend_name(url) == POSTGRESQL and "timeout" not in url.query:
        connect_args["timeout"] = POSTGRES_CONNECT_TIMEOUT
    engine = create_async_engine(
        url,
        connect_args=connect_args,
        # A PostgreSQL restart leaves dead connections in the pool; without a
        # ping the first query after it fails although the server is back.
        pool_pre_ping=True,
        # Error messages end up in logs and /health: keep notification
        # contents out of them.
        hide_parameters=True,
        # A stored value that cannot be decoded must not fail the whole fetch.
        json_deserializer=load_json,
        **options,
    )
    if backend_name(url) == SQLITE:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets API reads go on while the writer task inserts; in the default
    # rollback journal a reader and a writer lock each other out.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()
