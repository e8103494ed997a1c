"""Persisted notifications: SQLite by default, PostgreSQL by URL, one async code path.

``migrate`` brings a database to the newest schema (Alembic, run from code).
"""

from slurmcast.storage.engine import default_url
from slurmcast.storage.migrate import migrate

__all__ = ["default_url", "migrate"]
