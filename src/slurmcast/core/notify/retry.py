"""When a failed delivery is tried again, and when it is given up (the dead letter).

Exponential backoff with full jitter: after failed attempt ``n`` the next one waits a uniform
draw between zero and ``base * 2**(n-1)`` (at most ``cap``). A destination that was down for
everyone (a mail relay restarting) is then not hit by every queued delivery at the same
instant when it returns ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015). The
random draw is passed in, so the schedule is testable and the core reads no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from slurmcast.core.backoff import retry_delay
from slurmcast.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How deliveries are retried.

    The defaults give up after 8 attempts spread over about an hour at most (waits of up
    to 30 s, 1, 2, 4, 8, 16 and 32 minutes, 64 in all): long enough for a relay's restart or a brief
    outage, short enough that a notification about a job is still worth reading.
    """

    base_s: float = 30.0
    cap_s: float = 3600.0
    max_attempts: int = 8

    def __post_init__(self) -> None:
        if not self.base_s > 0:
            raise ConfigError("the retry base delay must be positive")
        if not self.cap_s >= self.base_s:
            raise ConfigError("the retry cap must be at least the base delay")
        if self.max_attempts < 1:
            raise ConfigError("a delivery needs at least one attempt")


DEFAULT_POLICY = RetryPolicy()


def ceiling(attempt: int, policy: RetryPolicy = DEFAULT_POLICY) -> float:
    """The longest wait (seconds) after failed attempt ``attempt`` (1 = the first)."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    # retry_delay(base, 0) is base, then doubling up to the cap: the first retry's ceiling
    # is the base delay itself.
    return retry_delay(policy.base_s, attempt - 1, policy.cap_s)


def next_attempt(
    attempt: int,
    now: datetime,
    random: Callable[[], float],
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    not_before_s: float | None = None,
) -> datetime | None:
    """When to try again after failed attempt number ``attempt`` (1 = the first), or None
    when that was the last one allowed: the delivery becomes a dead letter.

    ``random`` returns a float in [0, 1) (``random.Random(...).random``). ``not_before_s``
    is the destination's own request to wait (HTTP ``Retry-After``), honoured up to the cap.
    """
    if attempt >= policy.max_attempts:
        return None
    draw = min(max(random(), 0.0), 1.0)
    delay = draw * ceiling(attempt, policy)
    if not_before_s is not None:
        delay = max(delay, min(not_before_s, policy.cap_s))
    return now + timedelta(seconds=delay)
