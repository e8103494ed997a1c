"""Token buckets: a steady rate with a small burst."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``.

    ``now`` is passed in (seconds, any monotonic-enough clock); the bucket
    starts full. ``charge`` takes tokens after the fact, for work whose cost
    is known only once done (the size of an answer): the bucket may go into
    debt, down to ``-burst``, and refuses everything until it is repaid.
    """

    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> float:
        """Take one token.

        Returns:
            0.0 if a token was available (and is now taken), else the seconds
            until one will be.
        """
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def charge(self, cost: float, now: float) -> None:
        """Take ``cost`` more tokens, whatever is left, but never below ``-burst``.

        The floor bounds how long one expensive answer can silence a client
        (two bursts' worth of time), while still making a stream of them cost
        what they weigh.
        """
        self._refill(now)
        self.tokens = max(-self.burst, self.tokens - cost)

    def _refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now if self.updated is None else max(now, self.updated)


@dataclass
class Pacer:
    """Slots for sends to one destination: ``rate`` a second on average, ``burst`` at once.

    The generic cell rate algorithm: every ``reserve`` takes the next slot, also one in the
    future, so sends held back go in the order they asked and the rate is kept exactly,
    however many wait. ``now`` is passed in (seconds, a monotonic clock).
    """

    rate: float
    burst: int
    #: When the slot after the last one reserved comes (the "theoretical arrival time").
    next_slot: float | None = field(default=None, init=False)

    def reserve(self, now: float) -> float:
        """Reserve a slot; return how long from ``now`` until it (0.0: at once)."""
        interval = 1.0 / self.rate
        tat = now if self.next_slot is None else max(self.next_slot, now)
        earliest = max(tat - (self.burst - 1) * interval, now)
        self.next_slot = tat + interval
        return earliest - now

    def idle_since(self, now: float) -> bool:
        """Whether every slot reserved is in the past: the pacer may be forgotten."""
        return self.next_slot is None or self.next_slot <= now
