"""An async Python client for slurmcast servers, for dashboards and scripts.

::

    from slurmcast.client import SlurmcastClient

    async with SlurmcastClient("ws://127.0.0.1:5011/", token_provider=get_token) as client:
        async for message in await client.subscribe("jobs", snapshot=True):
            ...  # a snapshot, then every job event once, in order, across reconnections

See ``SlurmcastClient`` and ``Subscription``.
"""

from slurmcast.client.backoff import backoff_ceiling, backoff_delay
from slurmcast.client.connection import HistoryPage, SlurmcastClient, TokenProvider
from slurmcast.client.errors import (
    AuthenticationFailed,
    ClientClosed,
    ClientError,
    ConnectionFailed,
)
from slurmcast.client.state import ConnectionState
from slurmcast.client.stream import Message, Position
from slurmcast.client.subscription import Callback, Subscription
from slurmcast.client.wire import WireFormat

__all__ = [
    "AuthenticationFailed",
    "Callback",
    "ClientClosed",
    "ClientError",
    "ConnectionFailed",
    "ConnectionState",
    "HistoryPage",
    "Message",
    "Position",
    "SlurmcastClient",
    "Subscription",
    "TokenProvider",
    "WireFormat",
    "backoff_ceiling",
    "backoff_delay",
]
