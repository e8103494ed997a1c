"""Fixtures shared by the whole suite.

Storage backends: every storage test (and the notifications API tests) runs on SQLite in a
temporary directory and on PostgreSQL.

PostgreSQL gets one fresh database per session, emptied before each test, and
dropped at the end. When the server cannot be reached its tests are skipped,
or fail when SLURMCAST_REQUIRE_POSTGRES=1 (CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slurmcast.storage import default_url

from support.databases import (
    REQUIRE_POSTGRES,
    Backend,
    DownDatabase,
    create_database,
    drop_database,
    postgres_unreachable_reason,
    random_database_name,
    reset_schema,
    run_in_thread,
    sqlalchemy_url,
)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The name of this session's PostgreSQL database."""
    reason = run_in_thread(postgres_unreachable_reason())
    if reason is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason}, and SLURMCAST_REQUIRE_POSTGRES=1")
        pytest.skip(f"{reason}; set SLURMCAST_REQUIRE_POSTGRES=1 to make this a failure")
    name = random_database_name()
    run_in_thread(create_database(name))
    try:
        yield name
    finally:
        run_in_thread(drop_database(name))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", default_url(tmp_path / "data"), lambda: _sqlite_down(tmp_path))
        return
    name: str = request.getfixturevalue("postgres_database")
    run_in_thread(reset_schema(name))
    created: list[str] = []

    def make_down() -> DownDatabase:
        missing = random_database_name()
        created.append(missing)
        return DownDatabase(sqlalchemy_url(missing), lambda: create_database(missing))

    yield Backend("postgresql", sqlalchemy_url(name), make_down)
    for missing in created:
        run_in_thread(drop_database(missing))


def _sqlite_down(tmp_path: Path) -> DownDatabase:
    # The data directory cannot be created while a file stands where its
    # parent should be; removing the file is the database "coming back".
    blocker = tmp_path / "blocker"
    blocker.write_text("")

    async def bring_up() -> None:
        blocker.unlink()

    return DownDatabase(default_url(blocker / "data"), bring_up)
