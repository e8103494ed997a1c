"""``http.bodies``: how deep a JSON value nests (the limit on posted bodies)."""

from __future__ import annotations

from typing import Any

import pytest

from slurmcast.http.bodies import nesting_exceeds


def nested(levels: int) -> Any:
    value: Any = 1
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("value", "limit", "exceeds"),
    [
        (1, 0, False),
        ({}, 1, False),
        ({}, 0, True),
        (nested(3), 3, False),
        (nested(4), 3, True),
        ({"a": [1, 2], "b": {"c": [[]]}}, 3, True),
        ({"a": [1, 2], "b": {"c": [[]]}}, 4, False),
    ],
)
def test_nesting_counts_levels_of_objects_and_arrays(value: Any, limit: int, exceeds: bool) -> None:
    assert nesting_exceeds(value, limit) is exceeds


def test_nesting_far_past_the_stack_is_measured_without_recursion() -> None:
    assert nesting_exceeds(nested(100_000), 32)
