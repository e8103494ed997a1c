"""Channel names from clients: the public channels and ``user:<name>``."""

import pytest

from slurmcast.core.channels import (
    CHANNEL_NAMES,
    Channel,
    channel_user,
    is_valid_user_name,
    parse_channel,
    user_channel,
)
from slurmcast.errors import ErrorCode, ProtocolError


def test_the_five_public_channels() -> None:
    assert {"jobs", "nodes", "metrics", "notifications", "alerts"} == CHANNEL_NAMES
    assert {c.value for c in Channel} == CHANNEL_NAMES


@pytest.mark.parametrize("name", sorted(CHANNEL_NAMES))
def test_public_channels_parse_as_themselves(name: str) -> None:
    assert parse_channel(name) == name


@pytest.mark.parametrize("user", ["alice", "a", "bob.smith", "_svc", "u-1_2.3", "x" * 64])
def test_user_channels_round_trip(user: str) -> None:
    channel = user_channel(user)
    assert channel == f"user:{user}"
    assert channel_user(channel) == user
    assert parse_channel(channel) == channel


def test_public_channels_have_no_user() -> None:
    assert channel_user("jobs") is None
    assert channel_user("users:alice") is None


@pytest.mark.parametrize(
    "user",
    ["", "-alice", "bob\n", "al ice", "x" * 65, "ali/ce", "éva"],
)
def test_bad_user_names(user: str) -> None:
    assert not is_valid_user_name(user)
    with pytest.raises(ProtocolError) as caught:
        parse_channel(user_channel(user))
    assert caught.value.code is ErrorCode.UNKNOWN_CHANNEL


@pytest.mark.parametrize("name", ["gpus", "JOBS", "all", " jobs", "user", "user:"])
def test_unknown_channels_list_the_known_ones(name: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_channel(name, request_id="r1")
    error = caught.value
    assert error.code is ErrorCode.UNKNOWN_CHANNEL
    assert error.request_id == "r1"
    assert "alerts, jobs, metrics, nodes, notifications" in error.message
    assert "user:<name>" in error.message


def test_an_unknown_name_is_shortened_in_the_message() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_channel("z" * 10_000)
    assert "z" * 64 in caught.value.message
    assert "z" * 65 not in caught.value.message


@pytest.mark.parametrize("name", [None, 5, ["jobs"], {"channel": "jobs"}, b"jobs"])
def test_a_channel_must_be_a_string(name: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_channel(name, request_id=3)
    assert caught.value.code is ErrorCode.INVALID_FIELD
    assert caught.value.request_id == 3
