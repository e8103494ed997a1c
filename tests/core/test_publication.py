"""Publications: the wire form with the broker's position spliced in."""

import orjson

from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import ALL_CLIENTS, Publication

PAYLOAD = orjson.dumps({"channel": "jobs", "type": "job_submitted", "data": {"job_id": "7"}})


def test_wire_without_a_position_is_the_payload_itself() -> None:
    publication = Publication("jobs", PAYLOAD)
    assert publication.wire() is PAYLOAD
    assert publication.offset == 0


def test_wire_splices_offset_and_epoch_into_the_envelope() -> None:
    publication = Publication("jobs", PAYLOAD).at(StreamPosition(1040, "a1b2c3d4"))
    wire = publication.wire()
    assert orjson.loads(wire) == {
        "channel": "jobs",
        "type": "job_submitted",
        "data": {"job_id": "7"},
        "offset": 1040,
        "epoch": "a1b2c3d4",
    }
    # The payload's bytes are kept as they are: only the closing brace is replaced.
    assert wire.startswith(PAYLOAD[:-1] + b',"offset":1040,')
    assert publication.offset == 1040


def test_redis_born_epochs_splice_as_plain_strings() -> None:
    wire = Publication("nodes", b'{"a":1}', position=StreamPosition(1, "1712-0")).wire()
    assert orjson.loads(wire) == {"a": 1, "offset": 1, "epoch": "1712-0"}


def test_at_returns_a_positioned_copy() -> None:
    original = Publication("jobs", PAYLOAD, owner="alice", tags={"user": "alice"})
    positioned = original.at(StreamPosition(2, "e"))
    assert original.position is None
    assert positioned.position == StreamPosition(2, "e")
    assert (positioned.channel, positioned.payload, positioned.owner, positioned.tags) == (
        "jobs",
        PAYLOAD,
        "alice",
        {"user": "alice"},
    )


def test_only_the_all_pseudo_channel_goes_to_all_clients() -> None:
    assert Publication(ALL_CLIENTS, b"{}").to_all_clients
    assert not Publication("jobs", b"{}").to_all_clients
    assert not Publication("user:all", b"{}").to_all_clients
