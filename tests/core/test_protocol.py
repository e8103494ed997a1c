import pytest

from slurmcast.core import protocol
from slurmcast.core.channels import Channel
from slurmcast.errors import ErrorCode, ProtocolError


def parse(value):
    return protocol.parse_request(value)


def code_of(value) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        parse(value)
    return info.value.code


def test_subscribe_single_and_multiple():
    assert parse({"type": "subscribe", "channel": "jobs"}) == protocol.Subscribe((Channel.JOBS,))
    request = parse({"type": "subscribe", "channels": ["jobs", "nodes", "jobs"], "id": 7})
    assert request == protocol.Subscribe((Channel.JOBS, Channel.NODES), 7)


def test_unsubscribe_both_forms():
    assert parse({"type": "unsubscribe", "channel": "alerts", "id": "a"}) == protocol.Unsubscribe(
        (Channel.ALERTS,), "a"
    )
    assert parse({"type": "unsubscribe", "channels": ["metrics"]}).channels == (Channel.METRICS,)


def test_ping_and_broadcast():
    assert parse({"type": "ping", "id": 1}) == protocol.Ping(1)
    request = parse({"type": "broadcast", "channel": "all", "message": {"x": 1}})
    assert request == protocol.Broadcast("all", {"x": 1})


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
def test_each_bad_request_has_its_own_code(value, code):
    assert code_of(value) is code


def test_error_keeps_request_id_when_readable():
    with pytest.raises(ProtocolError) as info:
        parse({"type": "subscribe", "channel": "nope", "id": "req-9"})
    assert info.value.request_id == "req-9"
    reply = protocol.error(info.value.code, info.value.message, info.value.request_id)
    assert reply["id"] == "req-9" and reply["type"] == "error"
    assert reply["code"] == "unknown_channel"
    assert "jobs" in reply["message"]


def test_decode_frame_rejects_non_json():
    with pytest.raises(ProtocolError) as info:
        protocol.decode_frame("{not json")
    assert info.value.code is ErrorCode.INVALID_JSON


def test_too_many_channels():
    assert code_of({"type": "subscribe", "channels": ["jobs"] * 33}) is ErrorCode.INVALID_FIELD


def test_replies_echo_id_only_when_given():
    assert protocol.pong(None) == {"type": "pong"}
    assert protocol.pong(3) == {"type": "pong", "id": 3}
    assert protocol.subscribed(Channel.JOBS, None) == {
        "type": "subscribed",
        "channel": "jobs",
        "message": "Subscribed to jobs",
    }
