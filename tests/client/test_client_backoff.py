"""Reconnection delays: exponential ceilings, full jitter, a cap."""

from __future__ import annotations

import random

import pytest

from slurmcast.client import backoff_ceiling, backoff_delay
from slurmcast.client.backoff import RESTART_ATTEMPTS, RESTART_MAXIMUM


def test_ceiling_doubles_from_initial_and_stops_at_the_cap() -> None:
    ceilings = [backoff_ceiling(n, initial=0.5, maximum=30.0) for n in range(10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert backoff_ceiling(10_000, initial=0.5, maximum=30.0) == 30.0
    with pytest.raises(ValueError):
        backoff_ceiling(-1, initial=0.5, maximum=30.0)


def test_delays_are_full_jitter_within_bounds_and_reproducible() -> None:
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


def test_a_restarting_server_is_retried_within_the_restart_maximum_for_a_while() -> None:
    ceilings = [
        backoff_ceiling(n, initial=0.5, maximum=30.0, restart_maximum=RESTART_MAXIMUM)
        for n in range(RESTART_ATTEMPTS + 3)
    ]
    assert ceilings[:3] == [0.5, 1.0, RESTART_MAXIMUM]
    assert set(ceilings[2:RESTART_ATTEMPTS]) == {RESTART_MAXIMUM}
    # A server that does not come back is then waited for as after any failure.
    assert ceilings[RESTART_ATTEMPTS:] == [30.0, 30.0, 30.0]
    # The client's own smaller maximum still wins.
    assert backoff_ceiling(5, initial=0.1, maximum=1.0, restart_maximum=RESTART_MAXIMUM) == 1.0
    rng = random.Random(7)
    draws = [
        backoff_delay(8, initial=0.5, maximum=30.0, rng=rng, restart_maximum=RESTART_MAXIMUM)
        for _ in range(200)
    ]
    assert all(0.0 <= d <= RESTART_MAXIMUM for d in draws) and max(draws) > RESTART_MAXIMUM * 0.9
