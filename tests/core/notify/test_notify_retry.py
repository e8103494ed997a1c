"""Delivery retries: full jitter under a doubling ceiling, the cap, the dead letter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurmcast.core.notify.retry import RetryPolicy, ceiling, next_attempt
from slurmcast.errors import ConfigError

NOW = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_s=10, cap_s=100, max_attempts=6)


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (40, 100)]
)
def test_ceiling_doubles_then_caps(attempt: int, expected: float) -> None:
    assert ceiling(attempt, POLICY) == expected


def test_ceiling_counts_from_one() -> None:
    with pytest.raises(ValueError):
        ceiling(0, POLICY)


@pytest.mark.parametrize(("draw", "seconds"), [(0.0, 0.0), (0.5, 20.0), (0.999, 39.96)])
def test_full_jitter_draws_between_zero_and_the_ceiling(draw: float, seconds: float) -> None:
    when = next_attempt(3, NOW, lambda: draw, POLICY)
    assert when is not None
    assert (when - NOW).total_seconds() == pytest.approx(seconds)


def test_dead_letter_after_max_attempts() -> None:
    assert next_attempt(5, NOW, lambda: 0.5, POLICY) is not None
    assert next_attempt(6, NOW, lambda: 0.5, POLICY) is None
    assert next_attempt(7, NOW, lambda: 0.5, POLICY) is None


def test_single_attempt_policy_never_retries() -> None:
    assert next_attempt(1, NOW, lambda: 0.5, RetryPolicy(max_attempts=1)) is None


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    assert next_attempt(1, NOW, lambda: 0.0, POLICY, not_before_s=60) == NOW + timedelta(seconds=60)
    assert next_attempt(1, NOW, lambda: 0.0, POLICY, not_before_s=10_000) == NOW + timedelta(
        seconds=100
    )
    # A shorter Retry-After than the draw does not shorten the wait.
    assert next_attempt(4, NOW, lambda: 0.5, POLICY, not_before_s=1) == NOW + timedelta(seconds=40)


def test_a_bad_random_source_is_clamped() -> None:
    assert next_attempt(1, NOW, lambda: 7.0, POLICY) == NOW + timedelta(seconds=10)
    assert next_attempt(1, NOW, lambda: -1.0, POLICY) == NOW


@given(attempt=st.integers(min_value=1, max_value=5), seed=st.integers())
def test_every_wait_is_within_zero_and_ceiling(attempt: int, seed: int) -> None:
    when = next_attempt(attempt, NOW, random.Random(seed).random, POLICY)
    assert when is not None
    assert NOW <= when <= NOW + timedelta(seconds=ceiling(attempt, POLICY))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_s": 0},
        {"base_s": -1},
        {"base_s": 10, "cap_s": 5},
        {"max_attempts": 0},
    ],
)
def test_invalid_policies_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_default_policy_spreads_over_about_two_hours() -> None:
    policy = RetryPolicy()
    total = sum(ceiling(n, policy) for n in range(1, policy.max_attempts))
    assert 3600 <= total <= 3 * 3600
