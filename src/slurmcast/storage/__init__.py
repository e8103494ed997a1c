"""Persisted notifications: SQLite by default, PostgreSQL by URL, one async code path.

``NotificationStore`` is the adapter (its protocol is ``ports.NotificationStorePort``),
``migrate`` brings a database to the newest schema (Alembic, run from code).
"""

from slurmcast.storage.engine import default_url
from slurmcast.storage.migrate import migrate
from slurmcast.storage.notifications import MAX_PAGE, NotificationStore

__all__ = [
    "MAX_PAGE",
    "NotificationStore",
    "default_url",
    "migrate",
]
