"""Database URLs: defaults, normalisation, refusals, and never showing a password."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from slurmcast.errors import ConfigError, StorageError
from slurmcast.storage import NotificationStore, default_url
from slurmcast.storage.engine import parse_url


def test_default_url_is_an_absolute_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_url("state") == f"sqlite+aiosqlite:///{tmp_path}/state/slurmcast.db"
    assert parse_url(default_url("state")).database == str(tmp_path / "state" / "slurmcast.db")


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:////var/lib/slurmcast/slurmcast.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:////var/lib/slurmcast/slurmcast.db", "sqlite+aiosqlite"),
        ("postgresql://slurmcast@db/slurmcast", "postgresql+asyncpg"),
        ("postgres://slurmcast@db/slurmcast", "postgresql+asyncpg"),
        ("postgresql+asyncpg://slurmcast@db/slurmcast", "postgresql+asyncpg"),
    ],
)
def test_urls_get_the_async_driver(given: str, driver: str) -> None:
    assert parse_url(given).drivername == driver


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("mysql://u@h/db", "'mysql' is not supported"),
        ("postgresql+psycopg2://u@h/db", "'psycopg2' is not supported"),
        ("sqlite://", "in-memory"),
        ("sqlite+aiosqlite:///:memory:", "in-memory"),
        ("not a url", "not valid"),
    ],
)
def test_other_databases_are_refused_at_construction(given: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        NotificationStore(given)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_password_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "slurmcast.storage")
    secret = "s3cret-Pa55"
    port = closed_port()
    url = f"postgresql://slurmcast:{secret}@127.0.0.1:{port}/slurmcast"
    reasons: list[str] = []

    async def on_unavailable(reason: str) -> None:
        reasons.append(reason)

    store = NotificationStore(url, retry_max=0.05, on_unavailable=on_unavailable)
    await store.start()
    try:
        health = store.health()
        with pytest.raises(StorageError) as caught:
            await store.list(None)
    finally:
        await store.close()
    assert health["url"] == f"postgresql+asyncpg://slurmcast:***@127.0.0.1:{port}/slurmcast"
    assert health["available"] is False and "Connect" in health["error"]
    shown = [str(health), caught.value.message, *reasons, *(r.getMessage() for r in caplog.records)]
    assert len(shown) > 3 and not [text for text in shown if secret in text]


def test_a_sqlite_url_names_its_file(tmp_path: Path) -> None:
    assert NotificationStore(default_url(tmp_path)).health()["url"] == default_url(tmp_path)
