"""The client's connection states."""

from __future__ import annotations

from enum import Enum


class ConnectionState(Enum):
    """Where a ``SlurmcastClient`` stands.

    ::

        DISCONNECTED --connect()--> CONNECTING --ok--> CONNECTED
              ^                        |                  |
              +------- lost: backoff --+------------------+
        any --close()--> CLOSED        any --token refused / first connect fails--> FAILED

    CLOSED and FAILED are terminal until ``connect()`` is called again.
    """

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"
    FAILED = "failed"


#: States in which the client no longer tries to connect.
TERMINAL_STATES = frozenset({ConnectionState.CLOSED, ConnectionState.FAILED})
