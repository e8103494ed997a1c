"""Retry spacing for a failing source or connection: deterministic doubling.

(The client libraries' reconnection delays are jittered: ``client/backoff.py``.)
"""

from __future__ import annotations


def retry_delay(interval: float, failures: int, cap: float) -> float:
    """Seconds to wait before retry number ``failures`` (1 = first retry).

    Doubles the normal polling interval per consecutive failure, never waiting
    less than the interval nor more than ``cap``: a failing controller is not
    hammered, and a recovered one is noticed within ``cap`` seconds.
    """
    if failures <= 0:
        return interval
    return max(interval, min(cap, interval * 2.0 ** min(failures, 32)))
