"""Schema migrations, run from code: no ``alembic.ini`` is needed at runtime.

The Alembic scripts ship inside the package (``storage/migrations``).
A developer changing ``models.py`` writes the next revision with::

    from alembic import command
    from slurmcast.storage.migrate import alembic_config
    command.revision(alembic_config("sqlite+aiosqlite:////tmp/dev.db"),
                     "what changed", autogenerate=True)

after migrating that scratch database to head, then reviews the file
(autogenerate misses renames and server defaults).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from slurmcast.storage.engine import create_engine, ensure_sqlite_directory, parse_url

MIGRATIONS = Path(__file__).resolve().with_name("migrations")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` built in code, pointing at the packaged scripts.

    Args:
        url: only for the ``alembic`` tools (``revision``, offline SQL); the
            async ``migrate`` passes its connection instead.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        # Config is a ConfigParser: a literal % (URL-encoded password) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision`` in one transaction.

    Running it on an up-to-date database changes nothing.

    Raises:
        sqlalchemy.exc.SQLAlchemyError, OSError: the database cannot be reached
            or refused a statement.
    """
    config = alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest schema.

    Creates the directory of a SQLite file first.

    Raises:
        ConfigError: the URL is not a supported database.
        sqlalchemy.exc.SQLAlchemyError, OSError: as ``upgrade``.
    """
    parsed = parse_url(url)
    ensure_sqlite_directory(parsed)
    engine = create_engine(parsed)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
