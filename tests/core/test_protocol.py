from typing import Any, cast

import pytest

from slurmcast.core import protocol
from slurmcast.core.channels import Channel
from slurmcast.errors import ErrorCode, ProtocolError


def parse(value: Any) -> protocol.Request:
    return protocol.parse_request(value)


def code_of(value: Any) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        parse(value)
    return info.value.code


def test_subscribe_single_and_multiple() -> None:
    assert parse({"type": "subscribe", "channel": "jobs"}) == protocol.Subscribe((Channel.JOBS,))
    request = parse({"type": "subscribe", "channels": ["jobs", "nodes", "jobs"], "id": 7})
    assert request == protocol.Subscribe((Channel.JOBS, Channel.NODES), 7)


def test_unsubscribe_both_forms() -> None:
    assert parse({"type": "unsubscribe", "channel": "alerts", "id": "a"}) == protocol.Unsubscribe(
        (Channel.ALERTS,), "a"
    )
    request = cast(protocol.Unsubscribe, parse({"type": "unsubscribe", "channels": ["metrics"]}))
    assert request.channels == (Channel.METRICS,)


def test_ping_and_broadcast() -> None:
    assert parse({"type": "ping", "id": 1}) == protocol.Ping(1)
    request = parse({"type": "broadcast", "channel": "all", "message": {"x": 1}})
    assert request == protocol.Broadcast("all", "broadcast", {"x": 1})
    typed = {"type": "maintenance", "data": {"at": "18:00"}}
    request = parse({"type": "broadcast", "channel": "alerts", "message": typed, "id": 2})
    assert request == protocol.Broadcast("alerts", "maintenance", {"at": "18:00"}, 2)


def test_a_broadcast_of_a_reserved_type_is_refused_with_its_id() -> None:
    with pytest.raises(ProtocolError) as info:
        parse({"type": "broadcast", "channel": "jobs", "message": {"type": "job_update"}, "id": 9})
    assert info.value.code is ErrorCode.RESERVED_TYPE and info.value.request_id == 9


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ([1, 2], ErrorCode.NOT_AN_OBJECT),
        ("subscribe", ErrorCode.NOT_AN_OBJECT),
        (None, ErrorCode.NOT_AN_OBJECT),
        ({}, ErrorCode.MISSING_TYPE),
        ({"type": 5}, ErrorCode.INVALID_FIELD),
        ({"type": "dance"}, ErrorCode.UNKNOWN_TYPE),
        ({"type": "subscribe"}, ErrorCode.MISSING_CHANNEL),
        ({"type": "subscribe", "channel": "gpus"}, ErrorCode.UNKNOWN_CHANNEL),
        ({"type": "subscribe", "channel": 3}, ErrorCode.INVALID_FIELD),
        ({"type": "subscribe", "channels": "jobs"}, ErrorCode.INVALID_FIELD),
        ({"type": "subscribe", "channels": []}, ErrorCode.INVALID_FIELD),
        ({"type": "subscribe", "channels": ["jobs", "nope"]}, ErrorCode.UNKNOWN_CHANNEL),
        ({"type": "subscribe", "channel": "jobs", "channels": ["jobs"]}, ErrorCode.INVALID_FIELD),
        ({"type": "ping", "id": True}, ErrorCode.INVALID_FIELD),
        ({"type": "ping", "id": [1]}, ErrorCode.INVALID_FIELD),
        ({"type": "ping", "id": "x" * 200}, ErrorCode.INVALID_FIELD),
        ({"type": "broadcast", "message": {}}, ErrorCode.MISSING_CHANNEL),
        ({"type": "broadcast", "channel": "jobs"}, ErrorCode.MISSING_MESSAGE),
        ({"type": "broadcast", "channel": "jobs", "message": "hi"}, ErrorCode.INVALID_FIELD),
    ],
)
def test_each_bad_request_has_its_own_code(value: Any, code: ErrorCode) -> None:
    assert code_of(value) is code


def test_error_keeps_request_id_when_readable() -> None:
    with pytest.raises(ProtocolError) as info:
        parse({"type": "subscribe", "channel": "nope", "id": "req-9"})
    assert info.value.request_id == "req-9"
    reply = protocol.error(info.value.code, info.value.message, info.value.request_id)
    assert reply["id"] == "req-9" and reply["type"] == "error"
    assert reply["code"] == "unknown_channel"
    assert "jobs" in reply["message"]


def test_decode_frame_rejects_non_json() -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode_frame("{not json")
    assert info.value.code is ErrorCode.INVALID_JSON


def test_too_many_channels() -> None:
    assert code_of({"type": "subscribe", "channels": ["jobs"] * 33}) is ErrorCode.INVALID_FIELD


def test_replies_echo_id_only_when_given() -> None:
    assert protocol.pong(None) == {"type": "pong"}
    assert protocol.pong(3) == {"type": "pong", "id": 3}
    assert protocol.subscribed(Channel.JOBS, None) == {
        "type": "subscribed",
        "channel": "jobs",
        "message": "Subscribed to jobs",
    }


# Everything parse_request accepts must be writable back as JSON by orjson (replies
# echo the id; broadcasts re-encode the message): no 1011 for any client input.

ODD_FRAMES = {
    "id of 2**64": '{"type": "ping", "id": 18446744073709551616}',
    "id just past 2**53": '{"type": "ping", "id": 9007199254740993}',
    "negative id past 2**53": '{"type": "ping", "id": -9007199254740993}',
    "float id": '{"type": "ping", "id": 1e300}',
    "lone surrogate id": '{"type": "ping", "id": "\\ud800"}',
    "lone surrogate token": '{"type": "auth", "token": "\\udfff"}',
    "NUL in a token": '{"type": "refresh", "token": "a\\u0000b"}',
    "non-ASCII token": '{"type": "auth", "token": "é"}',
    "NaN": '{"type": "ping", "id": NaN}',
    "infinity": '{"type": "history", "channel": "jobs", "limit": 1e400}',
    "since beyond 2**53": '{"type": "history", "channel": "jobs", '
    '"since": {"offset": 9007199254740992, "epoch": "e"}}',
    "deep broadcast": '{"type": "broadcast", "channel": "alerts", "message": {"a": '
    + "[" * 40
    + "]" * 40
    + "}}",
    "nesting past 1024": "[" * 2000 + "]" * 2000,
    "NUL in a notification id": '{"type": "mark_read", "ids": ["\\u0000"]}',
}


@pytest.mark.parametrize("frame", ODD_FRAMES.values(), ids=ODD_FRAMES.keys())
def test_values_no_encoder_can_write_back_are_refused_with_a_code(frame: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(protocol.decode_frame(frame))
    assert info.value.code in {ErrorCode.INVALID_JSON, ErrorCode.INVALID_FIELD}


def test_the_largest_ids_and_offsets_still_accepted() -> None:
    assert parse({"type": "ping", "id": 2**53 - 1}).request_id == 2**53 - 1
    assert parse({"type": "ping", "id": -(2**53 - 1)}).request_id == -(2**53 - 1)
    since = {"offset": 2**53 - 1, "epoch": "e"}
    history = cast(protocol.History, parse({"type": "history", "channel": "jobs", "since": since}))
    assert history.since is not None
    assert history.since.offset == 2**53 - 1
    deep: dict[str, Any] = {"a": [[[]]]}
    broadcast = cast(
        protocol.Broadcast, parse({"type": "broadcast", "channel": "alerts", "message": deep})
    )
    assert broadcast.data == deep


def test_integers_beyond_64_bits_decode_as_floats_that_encode_again() -> None:
    value = protocol.decode_frame(
        '{"type": "broadcast", "channel": "alerts", "message": '
        '{"n": 123456789012345678901234567890}}'
    )
    request = cast(protocol.Broadcast, parse(value))
    assert isinstance(request.data["n"], float)
    import orjson

    assert orjson.loads(orjson.dumps(request.data))["n"] == request.data["n"]


def test_json_depth() -> None:
    assert protocol.json_depth(1) == 0
    assert protocol.json_depth({}) == 1
    assert protocol.json_depth({"a": [1, {"b": []}]}) == 4
    assert protocol.json_depth([[]] * 3) == 2
