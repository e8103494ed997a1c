from collections.abc import Iterable
from typing import Any, cast

import orjson
import pytest

from slurmcast.core.channels import Channel
from slurmcast.core.history import HistoryResult
from slurmcast.core.policy import AccessPolicy, Principal
from slurmcast.core.position import StreamPosition
from slurmcast.core.protocol import MAX_HISTORY_LIMIT
from slurmcast.core.publication import Publication
from slurmcast.core.session import (
    Action,
    AddSubscription,
    MarkNotificationsRead,
    PublishBroadcast,
    RemoveSubscription,
    SendHistory,
    SendPublication,
    SendReply,
    Session,
)
from slurmcast.core.subscription import SubscriptionStart
from slurmcast.core.views import Snapshot
from slurmcast.errors import ErrorCode


def replies(actions: Iterable[Action]) -> list[dict[str, Any]]:
    return [a.reply for a in actions if isinstance(a, SendReply)]


def test_subscribe_many_gives_one_subscription_per_channel_with_the_id() -> None:
    session = Session()
    actions = cast(
        list[AddSubscription],
        session.receive('{"type":"subscribe","channels":["jobs","nodes"],"id":42}', 0.0),
    )
    # The transport replies `subscribed` for each, with the position it starts at.
    assert [(a.channel, a.request_id) for a in actions] == [("jobs", 42), ("nodes", 42)]
    assert all(isinstance(a, AddSubscription) for a in actions)
    assert session.channels == {Channel.JOBS, Channel.NODES}
    # The action carries the session's own record: the hub will point at it.
    assert [a.subscription for a in actions] == [
        session.subscriptions["jobs"],
        session.subscriptions["nodes"],
    ]


def test_subscribe_options_are_parsed() -> None:
    session = Session()
    frame = (
        '{"type":"subscribe","channel":"jobs","since":{"offset":7,"epoch":"ab"},'
        '"snapshot":true,"filter":{"user":"alice"}}'
    )
    (action,) = session.receive(frame, 0.0)
    assert isinstance(action, AddSubscription)
    assert action.since == StreamPosition(7, "ab") and action.snapshot
    wanted = action.subscription.filter
    assert wanted is not None and wanted.to_dict() == {"user": ["alice"]}


def test_subscribe_is_idempotent_and_new_options_resubscribe() -> None:
    session = Session()
    session.receive('{"type":"subscribe","channel":"jobs"}', 0.0)
    actions = session.receive('{"type":"subscribe","channel":"jobs"}', 0.0)
    assert not any(isinstance(a, AddSubscription) for a in actions)
    assert replies(actions)[0]["message"] == "Already subscribed to jobs"
    actions = session.receive('{"type":"subscribe","channel":"jobs","filter":{"user":"bob"}}', 0.0)
    assert isinstance(actions[0], RemoveSubscription) and isinstance(actions[1], AddSubscription)


def test_snapshot_only_where_there_is_one() -> None:
    (reply,) = replies(
        Session().receive('{"type":"subscribe","channel":"notifications","snapshot":true}', 0.0)
    )
    assert reply["code"] == "snapshot_not_available"


def test_history_and_mark_read_requests() -> None:
    session = Session()
    (action,) = session.receive('{"type":"history","channel":"jobs","limit":5}', 0.0)
    assert isinstance(action, SendHistory) and action.request.limit == 5
    (action,) = session.receive('{"type":"mark_read","ids":["a","b","a"]}', 0.0)
    assert isinstance(action, MarkNotificationsRead) and action.ids == ("a", "b")
    assert action.user is None


def test_unsubscribe_removes_and_acks_even_when_not_subscribed() -> None:
    session = Session()
    session.receive('{"type":"subscribe","channel":"jobs"}', 0.0)
    actions = session.receive('{"type":"unsubscribe","channels":["jobs","alerts"]}', 0.0)
    assert actions[0] == RemoveSubscription(Channel.JOBS)
    assert [r["type"] for r in replies(actions)] == ["unsubscribed", "unsubscribed"]
    assert session.channels == set()


def test_ping_pong() -> None:
    assert replies(Session().receive('{"type":"ping","id":"p1"}', 0.0)) == [
        {"type": "pong", "id": "p1"}
    ]


def test_bad_frames_become_error_replies() -> None:
    session = Session()
    cases = {
        "not json": "invalid_json",
        "[1]": "not_an_object",
        '{"type":"x"}': "unknown_type",
        '{"channel":"jobs"}': "missing_type",
    }
    for frame, code in cases.items():
        (reply,) = replies(session.receive(frame, 0.0))
        assert reply["type"] == "error" and reply["code"] == code


def test_binary_frame_is_rejected_clearly() -> None:
    (reply,) = replies(Session().receive(b'{"type":"ping"}', 0.0))
    assert reply["code"] == "binary_not_supported"


def test_client_broadcast_is_forbidden_without_auth() -> None:
    actions = Session().receive(
        '{"type":"broadcast","channel":"jobs","message":{"a":1},"id":5}', 0.0
    )
    (reply,) = replies(actions)
    assert reply["code"] == "forbidden" and reply["id"] == 5
    assert len(actions) == 1


# -- outcomes the transport hands back ------------------------------------------------


def stored(offset: int, user: str, status: str = "RUNNING") -> Publication:
    return Publication(
        channel="jobs",
        payload=b'{"type":"job_state_change","data":{}}',
        owner=user,
        tags={"user": user, "status": status},
        position=StreamPosition(offset, "e"),
    )


def jwt_session(principal: Principal) -> Session:
    return Session(AccessPolicy(auth_enabled=True), principal=principal)


def test_a_started_subscription_sends_reply_snapshot_then_the_visible_replay() -> None:
    alice = Principal(user="alice", roles=frozenset({"user"}))
    session = jwt_session(alice)
    (action,) = cast(
        list[AddSubscription],
        session.receive('{"type":"subscribe","channel":"jobs","snapshot":true,"id":1}', 0),
    )
    snapshot = Snapshot(
        "jobs",
        StreamPosition(2, "e"),
        [{"job_id": "1", "user": "alice"}, {"job_id": "2", "user": "bob"}],
    )
    start = SubscriptionStart(
        StreamPosition(2, "e"), None, snapshot, [stored(3, "alice"), stored(4, "bob")]
    )
    actions = session.subscription_started(action, start)
    assert [type(a).__name__ for a in actions] == ["SendReply", "SendReply", "SendPublication"]
    assert isinstance(actions[0], SendReply) and actions[0].reply["position"] == {
        "offset": 2,
        "epoch": "e",
    }
    assert isinstance(actions[1], SendReply)
    assert actions[1].reply["data"] == [{"job_id": "1", "user": "alice"}]  # not bob's job
    assert isinstance(actions[2], SendPublication) and actions[2].publication.offset == 3


def test_a_snapshot_is_sent_in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slurmcast.core.session.SNAPSHOT_CHUNK", 2)
    session = Session()
    (action,) = cast(
        list[AddSubscription],
        session.receive('{"type":"subscribe","channel":"nodes","snapshot":true}', 0),
    )
    items = [{"node": f"n{i}"} for i in range(5)]
    start = SubscriptionStart(
        StreamPosition(0, "e"), None, Snapshot("nodes", StreamPosition(0, "e"), items)
    )
    parts = [
        a.reply for a in cast(list[SendReply], session.subscription_started(action, start))[1:]
    ]
    assert [(p["part"], p["parts"], len(p["data"])) for p in parts] == [
        (1, 3, 2),
        (2, 3, 2),
        (3, 3, 1),
    ]


def test_a_failed_subscription_is_not_kept_and_the_client_is_told() -> None:
    session = Session()
    (action,) = cast(
        list[AddSubscription], session.receive('{"type":"subscribe","channel":"jobs","id":7}', 0)
    )
    (error,) = replies(session.request_failed(action, ErrorCode.BROKER_UNAVAILABLE, "down"))
    assert error == {"type": "error", "code": "broker_unavailable", "message": "down", "id": 7}
    assert session.channels == set()


def test_a_failed_subscription_does_not_drop_the_one_that_replaced_it() -> None:
    session = Session()
    (first,) = cast(
        list[AddSubscription], session.receive('{"type":"subscribe","channel":"jobs"}', 0)
    )
    session.receive('{"type":"subscribe","channel":"jobs","filter":{"user":"bob"}}', 0)
    session.request_failed(first, ErrorCode.BROKER_UNAVAILABLE, "down")
    assert session.channels == {"jobs"}


def test_history_answer_hides_what_the_client_may_not_see_and_says_if_complete() -> None:
    session = jwt_session(Principal(user="alice", roles=frozenset({"user"})))
    (action,) = cast(
        list[SendHistory],
        session.receive(
            '{"type":"history","channel":"jobs","limit":10,"since":{"offset":2,"epoch":"e"},"id":"h"}',
            0,
        ),
    )
    found = HistoryResult([stored(3, "alice"), stored(4, "bob")], StreamPosition(4, "e"), 1)
    (reply,) = replies(session.history_found(action, found))
    assert orjson.loads(orjson.dumps(reply)) == {
        "type": "history",
        "channel": "jobs",
        "position": {"offset": 4, "epoch": "e"},
        "publications": [orjson.loads(stored(3, "alice").wire())],
        "complete": True,
        "id": "h",
    }


def test_history_limit_counts_what_the_client_sees() -> None:
    alice = jwt_session(Principal(user="alice", roles=frozenset({"user"})))
    (action,) = cast(
        list[SendHistory], alice.receive('{"type":"history","channel":"jobs","limit":2}', 0)
    )
    # Alice sees only her jobs: the transport reads as much as may be kept, not 2.
    assert action.read_limit == MAX_HISTORY_LIMIT
    owners = ["alice", "bob", "alice", "bob", "bob", "alice", "bob", "bob"]
    stored_jobs = [stored(offset, owner) for offset, owner in enumerate(owners, start=1)]
    found = HistoryResult(stored_jobs, StreamPosition(8, "e"), 1)
    (reply,) = replies(alice.history_found(action, found))
    assert [p["offset"] for p in orjson.loads(orjson.dumps(reply))["publications"]] == [3, 6]
    # Paging forward from `since`: the first two she sees after it, and not complete.
    (forward,) = cast(
        list[SendHistory],
        alice.receive(
            '{"type":"history","channel":"jobs","limit":2,"since":{"offset":0,"epoch":"e"}}', 0
        ),
    )
    (page,) = replies(alice.history_found(forward, found))
    page = orjson.loads(orjson.dumps(page))
    assert [p["offset"] for p in page["publications"]] == [1, 3] and page["complete"] is False
    # A client that sees everything unfiltered reads exactly its limit.
    (plain,) = cast(
        list[SendHistory], Session().receive('{"type":"history","channel":"jobs","limit":2}', 0)
    )
    assert plain.read_limit == 2
    (filtered,) = cast(
        list[SendHistory],
        Session().receive(
            '{"type":"history","channel":"jobs","limit":2,"filter":{"user":"bob"}}', 0
        ),
    )
    assert filtered.read_limit == MAX_HISTORY_LIMIT


def test_broadcast_and_mark_read_answers() -> None:
    root = Principal(user="root", roles=frozenset({"admin"}))
    session = jwt_session(root)
    (broadcast,) = cast(
        list[PublishBroadcast],
        session.receive('{"type":"broadcast","channel":"alerts","message":{},"id":3}', 0),
    )
    assert replies(session.broadcast_done(broadcast, 5)) == [
        {"type": "published", "channel": "alerts", "delivered": 5, "id": 3}
    ]
    (mark,) = cast(
        list[MarkNotificationsRead], session.receive('{"type":"mark_read","ids":["a"]}', 0)
    )
    assert replies(session.marked_read(mark, ["a"])) == [{"type": "marked_read", "ids": ["a"]}]
