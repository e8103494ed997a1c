"""Persisted notifications: SQLite by default, PostgreSQL by URL, one async code path.

``NotificationStore`` is the adapter, ``NotificationStorePort`` its protocol,
``migrate`` brings a database to the newest schema (Alembic, run from code).
"""

from slurmcast.storage.engine import default_url
from slurmcast.storage.migrate import migrate
from slurmcast.storage.notifications import (
    MAX_PAGE,
    NotificationPage,
    NotificationStore,
    NotificationStorePort,
)

__all__ = [
    "MAX_PAGE",
    "NotificationPage",
    "NotificationStore",
    "NotificationStorePort",
    "default_url",
    "migrate",
]
