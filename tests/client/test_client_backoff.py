"""Reconnection delays: exponential ceilings, full jitter, a cap."""

from __future__ import annotations

import random

import pytest

from slurmcast.client import backoff_ceiling, backoff_delay


def test_ceiling_doubles_from_initial_and_stops_at_the_cap():
    ceilings = [backoff_ceiling(n, initial=0.5, maximum=30.0) for n in range(10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert backoff_ceiling(10_000, initial=0.5, maximum=30.0) == 30.0
    with pytest.raises(ValueError):
        backoff_ceiling(-1, initial=0.5, maximum=30.0)


def test_delays_are_full_jitter_within_bounds_and_reproducible():
    rng = random.Random(42)
    delays = [
        [backoff_delay(n, initial=0.5, maximum=30.0, rng=rng) for _ in range(200)]
        for n in range(12)
    ]
    for n, draws in enumerate(delays):
        ceiling = backoff_ceiling(n, initial=0.5, maximum=30.0)
        assert all(0.0 <= d <= ceiling for d in draws)
        # Full jitter: the draws cover the window, not only its top.
        assert min(draws) < ceiling * 0.1 and max(draws) > ceiling * 0.9
    means = [sum(draws) / len(draws) for draws in delays]
    assert means[0] < means[3] < means[6]  # grows...
    assert max(means[7:]) < 30.0 * 0.6  # ...and is capped (mean of U(0, 30) is 15)
    again = random.Random(42)
    assert [backoff_delay(0, initial=0.5, maximum=30.0, rng=again) for _ in range(200)] == delays[0]
