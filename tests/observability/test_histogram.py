"""``Histogram``: plain buckets that read out as Prometheus' cumulative ones."""

from __future__ import annotations

import math

import pytest

from slurmcast.observability.histogram import Histogram


def test_observations_land_in_the_first_bucket_whose_bound_they_do_not_exceed() -> None:
    histogram = Histogram((0.1, 1.0, 10.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0, 99.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.1, 2), (1.0, 4), (10.0, 5), (math.inf, 6)]
    assert histogram.count == 6
    assert histogram.sum == pytest.approx(103.65)


def test_an_empty_histogram_reads_as_zeros() -> None:
    assert Histogram((1.0,)).cumulative() == [(1.0, 0), (math.inf, 0)]


def test_bounds_must_increase() -> None:
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))
    with pytest.raises(ValueError):
        Histogram((1.0, 1.0))
