"""How the client reacts to each close code (docs/protocol.md, "Connection behaviour")."""

from __future__ import annotations

import pytest

from slurmcast.client.closes import Reaction, reaction_to_close


@pytest.mark.parametrize(
    ("code", "reason", "reaction"),
    [
        (1000, "", Reaction.RECONNECT),
        (1001, "server shutting down", Reaction.RESTART),
        (1012, "service restart", Reaction.RESTART),
        (1006, "", Reaction.RECONNECT),
        (None, "", Reaction.RECONNECT),
        (1008, "rate limit exceeded after repeated warnings", Reaction.RECONNECT),
        (1008, "Authentication failed: token expired", Reaction.REAUTHENTICATE),
        (1009, "", Reaction.RECONNECT),
        (1011, "keepalive ping timeout", Reaction.RECONNECT),
        (4001, "token expired: reconnect with a new token", Reaction.REAUTHENTICATE),
        (4008, "slow consumer: too much unread data", Reaction.RECONNECT),
        (4010, "stream of jobs lost: reconnect and recover", Reaction.RECONNECT),
        (4029, "too many connections for user alice", Reaction.BACK_OFF),
    ],
)
def test_reaction_to_close(code: int | None, reason: str, reaction: Reaction) -> None:
    assert reaction_to_close(code, reason) is reaction
