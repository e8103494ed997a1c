"""Stream positions, and parsing the ones clients send in ``since``."""

from typing import Any

import pytest

from slurmcast.core.position import MAX_EPOCH_LENGTH, MAX_OFFSET, StreamPosition
from slurmcast.errors import ErrorCode, ProtocolError


def test_round_trip_through_its_dict() -> None:
    position = StreamPosition(1040, "a1b2c3d4")
    assert position.to_dict() == {"offset": 1040, "epoch": "a1b2c3d4"}
    assert StreamPosition.parse(position.to_dict()) == position


@pytest.mark.parametrize(
    "value",
    [
        {"offset": 0, "epoch": "e"},  # before the first publication
        {"offset": MAX_OFFSET, "epoch": "e"},
        {"offset": 7, "epoch": "x" * MAX_EPOCH_LENGTH},
        {"offset": 7, "epoch": "e", "extra": True},  # unknown keys are ignored
    ],
)
def test_accepts_positions_at_the_limits(value: dict[str, Any]) -> None:
    position = StreamPosition.parse(value)
    assert (position.offset, position.epoch) == (value["offset"], value["epoch"])


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (None, "'since'"),
        ([1040, "e"], "'since'"),
        ("1040:e", "'since'"),
        ({"epoch": "e"}, "'since.offset'"),
        ({"offset": -1, "epoch": "e"}, "'since.offset'"),
        ({"offset": MAX_OFFSET + 1, "epoch": "e"}, "'since.offset'"),
        ({"offset": 1.0, "epoch": "e"}, "'since.offset'"),
        ({"offset": "12", "epoch": "e"}, "'since.offset'"),
        ({"offset": True, "epoch": "e"}, "'since.offset'"),  # a bool is not an offset
        ({"offset": 1}, "'since.epoch'"),
        ({"offset": 1, "epoch": ""}, "'since.epoch'"),
        ({"offset": 1, "epoch": 12}, "'since.epoch'"),
        ({"offset": 1, "epoch": "x" * (MAX_EPOCH_LENGTH + 1)}, "'since.epoch'"),
    ],
)
def test_refuses_bad_positions_naming_the_field(value: Any, names: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        StreamPosition.parse(value, request_id=9)
    assert caught.value.code is ErrorCode.INVALID_FIELD
    assert caught.value.request_id == 9
    assert caught.value.message.startswith(names)


def test_positions_are_values() -> None:
    assert StreamPosition(3, "e") == StreamPosition(3, "e")
    assert StreamPosition(3, "e") != StreamPosition(3, "f")
    assert len({StreamPosition(3, "e"), StreamPosition(3, "e")}) == 1
