"""What the client does when the server closes the connection (docs/protocol.md).

Pure: a close code and reason in, a ``Reaction`` out.
"""

from __future__ import annotations

from enum import Enum

from slurmcast.errors import CloseCode


class Reaction(Enum):
    #: Reconnect with backoff, starting again from the shortest delay.
    RECONNECT = "reconnect"
    #: The server is restarting: reconnect with backoff, the delays kept short
    #: while it is down (``backoff.RESTART_MAXIMUM``).
    RESTART = "restart"
    #: Reconnect with backoff, the delays still growing: the server asked to wait.
    BACK_OFF = "back_off"
    #: Reconnect with a new token from the provider; without a provider, give up.
    REAUTHENTICATE = "reauthenticate"


#: Closes meaning "come back later": the backoff keeps growing across them.
BACK_OFF_CODES = frozenset({CloseCode.TOO_MANY_CONNECTIONS})
#: Closes meaning "I am going away and will be back": slurmcast sends 1001 when it
#: stops; 1012 (Service Restart, IANA registry) comes from other servers and proxies.
SERVICE_RESTART = 1012
RESTART_CODES = frozenset({int(CloseCode.GOING_AWAY), SERVICE_RESTART})
#: Prefix of the server's 1008 reason when a token is refused (core/session.py).
AUTH_FAILED_REASON = "Authentication failed"


def reaction_to_close(code: int | None, reason: str) -> Reaction:
    """How to react to the connection ending with ``code`` (None: no close frame).

    4001 (token expired) and a 1008 whose reason says authentication failed
    need a new token. 4029 (too many connections for the user) backs off.
    1001 and 1012 announce a restart. Everything else — 1011 internal, 4008
    slow consumer, 4010 stream lost, a dropped TCP connection, even 1000 — is
    reconnected: a subscriber wants its stream, and recovery makes the
    reconnection loss-free.
    """
    if code == CloseCode.TOKEN_EXPIRED:
        return Reaction.REAUTHENTICATE
    if code == CloseCode.POLICY_VIOLATION and reason.startswith(AUTH_FAILED_REASON):
        return Reaction.REAUTHENTICATE
    if code in BACK_OFF_CODES:
        return Reaction.BACK_OFF
    if code in RESTART_CODES:
        return Reaction.RESTART
    return Reaction.RECONNECT
