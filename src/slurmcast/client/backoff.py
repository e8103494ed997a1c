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


def backoff_ceiling(attempt: int, *, initial: float, maximum: float) -> float:
    """The longest wait before reconnection attempt ``attempt`` (0 = the first).

    ``initial * 2**attempt``, never more than ``maximum``.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    return min(maximum, initial * 2.0 ** min(attempt, _MAX_EXPONENT))


def backoff_delay(attempt: int, *, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempt``: uniform in ``[0, ceiling]``.

    Args:
        attempt: consecutive failed attempts so far (0 before the first retry).
        initial: the ceiling of the first attempt.
        maximum: the ceiling never exceeds this.
        rng: the random source (seed it for reproducible delays).
    """
    return rng.uniform(0.0, backoff_ceiling(attempt, initial=initial, maximum=maximum))
