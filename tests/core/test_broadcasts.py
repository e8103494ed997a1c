"""What a posted broadcast becomes: the seed's typed messages, the server's types guarded."""

from typing import Any

import pytest

from slurmcast.core.broadcasts import RESERVED_TYPES, broadcast_message
from slurmcast.errors import ErrorCode, ProtocolError


def test_a_message_without_type_is_a_broadcast_of_itself() -> None:
    assert broadcast_message({"text": "hi", "data": 1}) == ("broadcast", {"text": "hi", "data": 1})
    assert broadcast_message({}) == ("broadcast", {})


def test_a_typed_message_keeps_its_type_and_its_data() -> None:
    message = {"type": "maintenance", "data": {"start": "18:00", "nodes": ["n1"]}}
    assert broadcast_message(message) == ("maintenance", {"start": "18:00", "nodes": ["n1"]})
    # Any JSON value may be the data, as in the seed.
    assert broadcast_message({"type": "motd", "data": "hello"}) == ("motd", "hello")
    assert broadcast_message({"type": "motd", "data": None}) == ("motd", None)


def test_a_typed_message_without_data_sends_its_other_fields() -> None:
    message = {"type": "maintenance", "text": "at 18:00", "severity": "warning"}
    assert broadcast_message(message) == (
        "maintenance",
        {"text": "at 18:00", "severity": "warning"},
    )


def test_broadcast_as_a_type_is_the_default_made_explicit() -> None:
    assert broadcast_message({"type": "broadcast", "data": {"x": 1}}) == ("broadcast", {"x": 1})


@pytest.mark.parametrize("kind", sorted(RESERVED_TYPES))
def test_the_servers_own_types_are_refused(kind: str) -> None:
    with pytest.raises(ProtocolError) as info:
        broadcast_message({"type": kind, "data": {}})
    assert info.value.code is ErrorCode.RESERVED_TYPE and kind in info.value.message


def test_every_event_the_monitors_emit_is_reserved() -> None:
    from slurmcast.core import events

    emitted = {
        getattr(cls, "event_type", None)
        for cls in vars(events).values()
        if isinstance(cls, type) and isinstance(getattr(cls, "event_type", None), str)
    }
    assert emitted and emitted <= RESERVED_TYPES


@pytest.mark.parametrize(
    "kind", [1, None, "", "two words", "x" * 65, "9lives", "<script>", ["maintenance"]]
)
def test_a_type_must_be_a_short_name(kind: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        broadcast_message({"type": kind})
    assert info.value.code is ErrorCode.INVALID_FIELD


def test_fields_beside_type_and_data_would_be_lost_so_they_are_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        broadcast_message({"type": "maintenance", "data": {}, "text": "lost?"})
    assert info.value.code is ErrorCode.INVALID_MESSAGE and "'text'" in info.value.message
