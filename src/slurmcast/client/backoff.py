"""Reconnection delays: exponential backoff with full jitter.

Full jitter (a uniform draw between zero and the exponential ceiling) spreads
the clients of a restarted server over the whole window instead of letting
them return in synchronised waves (AWS Architecture Blog, "Exponential
Backoff And Jitter", 2015). Pure: the random source is passed in.
"""

from __future__ import annotations

import random

#: Exponent beyond which the ceiling is the cap anyway (keeps 2**n small).
_MAX_EXPONENT = 62
#: After the server said it is restarting (1001, 1012), the ceiling stays at
#: most this many seconds by default: the clients of a restarted server come back within
#: ~2 s of it answering again, spread evenly over that window, instead of
#: sleeping up to the growing ceiling they reached while it was down.
RESTART_MAXIMUM = 2.0
#: ... for this many attempts (~15 s of a server that does not come back),
#: then the delays grow as after any other failure.
RESTART_ATTEMPTS = 15


def backoff_ceiling(
    attempt: int, *, initial: float, maximum: float, restart_maximum: float | None = None
) -> float:
    """The longest wait before reconnection attempt ``attempt`` (0 = the first).

    ``initial * 2**attempt``, never more than ``maximum``. With
    ``restart_maximum`` (the server closed with 1001 or 1012, saying it
    restarts), never more than that either for ``RESTART_ATTEMPTS`` attempts.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    ceiling = min(maximum, initial * 2.0 ** min(attempt, _MAX_EXPONENT))
    if restart_maximum is not None and attempt < RESTART_ATTEMPTS:
        return min(ceiling, restart_maximum)
    return ceiling


def backoff_delay(
    attempt: int,
    *,
    initial: float,
    maximum: float,
    rng: random.Random,
    restart_maximum: float | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt``: uniform in ``[0, ceiling]``.

    Args:
        attempt: consecutive failed attempts so far (0 before the first retry).
        initial: the ceiling of the first attempt.
        maximum: the ceiling never exceeds this.
        rng: the random source (seed it for reproducible delays).
        restart_maximum: the server closed saying it restarts (see ``backoff_ceiling``).
    """
    ceiling = backoff_ceiling(
        attempt, initial=initial, maximum=maximum, restart_maximum=restart_maximum
    )
    return rng.uniform(0.0, ceiling)
