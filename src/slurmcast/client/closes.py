"""What the client does when the server closes the connection (docs/protocol.md).

Pure: a close code and reason in, a ``Reaction`` out.
"""

from __future__ import annotations

from enum import Enum

from slurmcast.errors import CloseCode


class Reaction(Enum):
    #: Reconnect with backoff, starting again from the shortest delay.
    RECONNECT = "reconnect"
    #: Reconnect with backoff, the delays still growing: the server asked to wait.
    BACK_OFF = "back_off"
    #: Reconnect with a new token from the provider; without a provider, give up.
    REAUTHENTICATE = "reauthenticate"


#: Closes meaning "come back later": the backoff keeps growing across them.
BACK_OFF_CODES = frozenset({CloseCode.TOO_MANY_CONNECTIONS})
#: Prefix of the server's 1008 reason when a token is refused (core/session.py).
AUTH_FAILED_REASON = "Authentication failed"


def reaction_to_close(code: int | None, reason: str) -> Reaction:
    """How to react to the connection ending with ``code`` (None: no close frame).

    4001 (token expired) and a 1008 whose reason says authentication failed
    need a new token. 4029 (too many connections for the user) backs off.
    Everything else — 1001 going away, 1011 internal, 4008 slow consumer, 4010 stream lost, a
    dropped TCP connection, even 1000 — is reconnected: a subscriber wants
    its stream, and recovery makes the reconnection loss-free.
    """
    if code == CloseCode.TOKEN_EXPIRED:
        return Reaction.REAUTHENTICATE
    if code == CloseCode.POLICY_VIOLATION and reason.startswith(AUTH_FAILED_REASON):
        return Reaction.REAUTHENTICATE
    if code in BACK_OFF_CODES:
        return Reaction.BACK_OFF
    return Reaction.RECONNECT
