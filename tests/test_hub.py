"""The hub: who is connected, who is subscribed, and fan-out of one frame per encoding."""

from __future__ import annotations

import msgpack
import orjson
import pytest

from slurmcast.core.filters import parse_filter
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import ALL_CLIENTS, Publication
from slurmcast.core.subscription import Subscription
from slurmcast.hub import Hub
from slurmcast.ports import FrameEncoder
from slurmcast.transport.encoding import PLAIN_JSON, WireFormat, encoding_for


class CountingEncoder:
    """An encoding that counts the frames it makes (hashed by identity)."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag
        self.frames = 0

    def frame(self, envelope_json: bytes) -> bytes:
        self.frames += 1
        return self.tag + envelope_json


class Client:
    """A subscriber that records what it is given.

    ``user`` set: like a session with authentication, it sees only messages
    about no one or about its own jobs. ``writable`` False: a closing socket.
    """

    def __init__(
        self, encoding: FrameEncoder = PLAIN_JSON, *, user: str | None = None, writable: bool = True
    ) -> None:
        self._encoding = encoding
        self.user = user
        self.writable = writable
        self.frames: list[bytes] = []
        self.publications: list[Publication] = []
        self.lost: list[str] = []

    @property
    def encoding(self) -> FrameEncoder:
        return self._encoding

    def deliver(self, publication: Publication, frame: bytes) -> bool:
        if self.user is not None and publication.owner not in (None, self.user):
            return False
        if not self.writable:
            return False
        self.frames.append(frame)
        self.publications.append(publication)
        return True

    def stream_lost(self, channel: str) -> None:
        self.lost.append(channel)

    @property
    def offsets(self) -> list[int]:
        return [p.offset for p in self.publications]


def message(frame: bytes) -> object:
    """The JSON message in a short unmasked text frame (two-byte header)."""
    assert frame[0] == 0x81 and frame[1] < 126
    return orjson.loads(frame[2:])


def job_event(
    offset: int, *, status: str = "RUNNING", owner: str | None = "alice", channel: str = "jobs"
) -> Publication:
    payload = orjson.dumps({"channel": channel, "type": "job_state_change", "data": {"n": offset}})
    return Publication(
        channel,
        payload,
        owner=owner,
        tags={"status": status, "user": owner or ""},
        position=StreamPosition(offset, "ep"),
    )


def connected(hub: Hub, *clients: Client, channel: str | None = "jobs") -> None:
    for client in clients:
        hub.connect(client)
        if channel is not None:
            assert hub.subscribe(client, Subscription(channel))


def test_a_publication_reaches_only_the_channels_subscribers() -> None:
    hub = Hub()
    jobs, nodes, idle = Client(), Client(), Client()
    connected(hub, jobs)
    connected(hub, nodes, channel="nodes")
    connected(hub, idle, channel=None)
    assert hub.handle_publication(job_event(1)) == 1
    assert jobs.offsets == [1]
    assert nodes.publications == [] and idle.publications == []
    assert message(jobs.frames[0]) == orjson.loads(job_event(1).wire())  # position spliced in


def test_nobody_subscribed_delivers_nothing() -> None:
    hub = Hub()
    connected(hub, Client(), channel="nodes")
    assert hub.handle_publication(job_event(1)) == 0


def test_one_frame_per_encoding_shared_by_every_client() -> None:
    hub = Hub()
    first, second = CountingEncoder(b"A"), CountingEncoder(b"B")
    clients = [Client(first if i % 2 else second) for i in range(10)]
    connected(hub, *clients)
    assert hub.handle_publication(job_event(1)) == 10
    assert (first.frames, second.frames) == (1, 1)
    a_frames = [c.frames[0] for c in clients if c.encoding is first]
    b_frames = [c.frames[0] for c in clients if c.encoding is second]
    assert all(f is a_frames[0] for f in a_frames) and a_frames[0].startswith(b"A{")
    assert all(f is b_frames[0] for f in b_frames) and b_frames[0].startswith(b"B{")


def test_real_encodings_json_and_msgpack_carry_the_same_message() -> None:
    hub = Hub()
    as_json, as_msgpack = Client(PLAIN_JSON), Client(encoding_for(WireFormat.MSGPACK, None))
    other_msgpack = Client(encoding_for(WireFormat.MSGPACK, None))
    connected(hub, as_json, as_msgpack, other_msgpack)
    publication = job_event(5)
    assert hub.handle_publication(publication) == 3
    expected = orjson.loads(publication.wire())
    # Short frames: a two-byte header (FIN + opcode, then the length).
    json_frame, msgpack_frame = as_json.frames[0], as_msgpack.frames[0]
    assert message(json_frame) == expected
    assert msgpack_frame[0] == 0x82 and msgpack.unpackb(msgpack_frame[2:]) == expected
    assert other_msgpack.frames[0] is msgpack_frame


def test_delivered_counts_only_clients_that_took_the_frame() -> None:
    hub = Hub()
    alice, bob, closing = Client(user="alice"), Client(user="bob"), Client(writable=False)
    connected(hub, alice, bob, closing)
    assert hub.handle_publication(job_event(1, owner="alice")) == 1
    assert hub.handle_publication(job_event(2, owner=None)) == 2  # about no one: both users
    assert alice.offsets == [1, 2]
    assert bob.offsets == [2]
    assert closing.publications == []


def test_filters_decide_per_subscription() -> None:
    hub = Hub()
    failed_only, everything = Client(), Client()
    hub.connect(failed_only)
    hub.connect(everything)
    hub.subscribe(
        failed_only, Subscription("jobs", filter=parse_filter("jobs", {"status": "FAILED"}))
    )
    hub.subscribe(everything, Subscription("jobs"))
    assert hub.handle_publication(job_event(1, status="RUNNING")) == 1
    assert hub.handle_publication(job_event(2, status="FAILED")) == 2
    assert failed_only.offsets == [2]
    assert everything.offsets == [1, 2]


def test_held_publications_are_kept_until_release_then_go_live() -> None:
    hub = Hub()
    recovering, live = Client(), Client()
    hub.connect(recovering)
    hub.connect(live)
    assert hub.subscribe(recovering, Subscription("jobs"), hold=True)
    hub.subscribe(live, Subscription("jobs"))
    first, second = job_event(1), job_event(2)
    assert hub.handle_publication(first) == 1
    assert hub.handle_publication(second) == 1
    assert recovering.publications == []
    assert hub.release(recovering, "jobs") == [first, second]
    assert hub.handle_publication(job_event(3)) == 2
    assert recovering.offsets == [3]
    assert live.offsets == [1, 2, 3]
    assert hub.release(recovering, "jobs") == []  # nothing held any more


def test_held_publications_are_kept_whatever_the_filter_and_release_of_nothing() -> None:
    hub = Hub()
    client = Client()
    hub.connect(client)
    hub.subscribe(
        client, Subscription("jobs", filter=parse_filter("jobs", {"status": "FAILED"})), hold=True
    )
    running = job_event(1, status="RUNNING")
    hub.handle_publication(running)
    # The filter is applied where held publications are merged, not by the hub.
    assert hub.release(client, "jobs") == [running]
    assert hub.release(client, "nodes") == []
    assert hub.release(Client(), "jobs") == []


def test_publications_at_or_below_the_floor_are_dropped() -> None:
    hub = Hub()
    client = Client()
    hub.connect(client)
    subscription = Subscription("jobs")
    hub.subscribe(client, subscription, hold=True)
    hub.release(client, "jobs")
    subscription.floor = 3  # the recovery covered offsets 1 to 3
    for offset in (2, 3, 4, 5):
        hub.handle_publication(job_event(offset))
    assert client.offsets == [4, 5]


def test_messages_to_everyone_reach_only_admitted_clients() -> None:
    hub = Hub()
    admitted, anonymous, waiting_for_token = Client(), Client(), Client()
    connected(hub, admitted, anonymous, waiting_for_token, channel=None)
    hub.admit(admitted, "alice")
    hub.admit(anonymous, None)
    hub.subscribe(waiting_for_token, Subscription("jobs"))
    broadcast = Publication(ALL_CLIENTS, b'{"channel":"all","type":"broadcast","data":{}}')
    assert hub.handle_publication(broadcast) == 2
    assert admitted.publications == [broadcast] and anonymous.publications == [broadcast]
    assert message(admitted.frames[0]) == {"channel": "all", "type": "broadcast", "data": {}}
    assert waiting_for_token.frames == []


def test_subscribe_twice_keeps_the_first_record() -> None:
    hub = Hub()
    client = Client()
    hub.connect(client)
    first = Subscription("jobs", filter=parse_filter("jobs", {"status": "FAILED"}))
    assert hub.subscribe(client, first)
    assert not hub.subscribe(client, Subscription("jobs"))
    hub.handle_publication(job_event(1, status="RUNNING"))
    assert client.publications == []


def test_unsubscribe_stops_delivery() -> None:
    hub = Hub()
    client = Client()
    connected(hub, client)
    assert hub.watched("jobs")
    assert hub.unsubscribe(client, "jobs")
    assert not hub.unsubscribe(client, "jobs")
    assert not hub.watched("jobs")
    assert hub.handle_publication(job_event(1)) == 0


def test_disconnect_forgets_everything_about_a_client() -> None:
    hub = Hub()
    client, other = Client(), Client()
    connected(hub, client, other, channel=None)
    for channel in ("nodes", "jobs", "user:alice"):
        hub.subscribe(client, Subscription(channel))
    hub.admit(client, "alice")
    hub.admit(other, "alice")
    assert hub.connections_of("alice") == 2
    assert hub.disconnect(client) == ["jobs", "nodes", "user:alice"]
    assert hub.client_count == 1
    assert hub.user_of(client) is None
    assert hub.connections_of("alice") == 1
    assert not hub.watched("jobs")
    assert hub.handle_publication(Publication(ALL_CLIENTS, b"{}")) == 1  # only the other one
    assert client.frames == []
    assert hub.disconnect(client) == []  # twice is harmless
    assert hub.connections_of("alice") == 1


def test_admit_counts_connections_per_user() -> None:
    hub = Hub()
    one, two = Client(), Client()
    connected(hub, one, two, channel=None)
    hub.admit(one, "alice")
    hub.admit(one, "alice")  # the same user again (a token refresh): still one
    hub.admit(two, "alice")
    assert hub.connections_of("alice") == 2
    hub.admit(one, "bob")  # re-authenticated as someone else
    assert (hub.connections_of("alice"), hub.connections_of("bob")) == (1, 1)
    assert hub.user_of(one) == "bob"
    hub.disconnect(two)
    assert hub.connections_of("alice") == 0
    assert hub.connections_of("nobody") == 0


def test_admit_without_a_user_counts_toward_no_one() -> None:
    hub = Hub()
    client = Client()
    connected(hub, client, channel=None)
    hub.admit(client, None)
    assert hub.user_of(client) is None
    hub.disconnect(client)
    assert hub.client_count == 0


def test_handle_stream_lost_tells_every_subscriber_of_that_channel() -> None:
    hub = Hub()
    a, b, other = Client(), Client(), Client()
    connected(hub, a, b)
    connected(hub, other, channel="nodes")
    hub.handle_stream_lost("jobs")
    assert a.lost == ["jobs"] and b.lost == ["jobs"]
    assert other.lost == []
    hub.handle_stream_lost("metrics")  # nobody there: nothing happens
    assert a.lost == ["jobs"]


def test_stream_lost_may_disconnect_clients_while_they_are_told() -> None:
    hub = Hub()

    class Leaving(Client):
        def stream_lost(self, channel: str) -> None:
            super().stream_lost(channel)
            hub.disconnect(self)

    clients = [Leaving() for _ in range(3)]
    connected(hub, *clients)
    hub.handle_stream_lost("jobs")
    assert all(c.lost == ["jobs"] for c in clients)
    assert not hub.watched("jobs") and hub.client_count == 0


def test_counts() -> None:
    hub = Hub()
    a, b = Client(), Client()
    assert hub.client_count == 0
    assert hub.subscription_counts() == {
        "alerts": 0,
        "jobs": 0,
        "metrics": 0,
        "notifications": 0,
        "nodes": 0,
        "user": 0,
    }
    connected(hub, a, b)
    hub.subscribe(a, Subscription("nodes"))
    hub.subscribe(a, Subscription("user:alice"))
    hub.subscribe(b, Subscription("user:bob"))
    assert hub.client_count == 2
    counts = hub.subscription_counts()
    assert counts == {
        "alerts": 0,
        "jobs": 2,
        "metrics": 0,
        "notifications": 0,
        "nodes": 1,
        "user": 2,
    }


@pytest.mark.parametrize("hold", [False, True])
def test_subscribe_reports_a_new_subscription(hold: bool) -> None:
    hub = Hub()
    client = Client()
    hub.connect(client)
    subscription = Subscription("alerts")
    assert hub.subscribe(client, subscription, hold=hold)
    assert (subscription.held is not None) is hold
    assert hub.watched("alerts")
