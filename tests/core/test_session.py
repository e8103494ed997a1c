from slurmcast.core.channels import Channel
from slurmcast.core.position import StreamPosition
from slurmcast.core.session import (
    AddSubscription,
    MarkNotificationsRead,
    RemoveSubscription,
    SendHistory,
    SendReply,
    Session,
)


def replies(actions):
    return [a.reply for a in actions if isinstance(a, SendReply)]


def test_subscribe_many_gives_one_subscription_per_channel_with_the_id():
    session = Session()
    actions = session.receive('{"type":"subscribe","channels":["jobs","nodes"],"id":42}', 0.0)
    # The transport replies `subscribed` for each, with the position it starts at.
    assert actions == [AddSubscription("jobs", 42), AddSubscription("nodes", 42)]
    assert session.channels == {Channel.JOBS, Channel.NODES}


def test_subscribe_options_are_parsed():
    session = Session()
    frame = (
        '{"type":"subscribe","channel":"jobs","since":{"offset":7,"epoch":"ab"},'
        '"snapshot":true,"filter":{"user":"alice"}}'
    )
    (action,) = session.receive(frame, 0.0)
    assert isinstance(action, AddSubscription)
    assert action.since == StreamPosition(7, "ab") and action.snapshot
    assert action.filter is not None and action.filter.to_dict() == {"user": ["alice"]}


def test_subscribe_is_idempotent_and_new_options_resubscribe():
    session = Session()
    session.receive('{"type":"subscribe","channel":"jobs"}', 0.0)
    actions = session.receive('{"type":"subscribe","channel":"jobs"}', 0.0)
    assert not any(isinstance(a, AddSubscription) for a in actions)
    assert replies(actions)[0]["message"] == "Already subscribed to jobs"
    actions = session.receive('{"type":"subscribe","channel":"jobs","filter":{"user":"bob"}}', 0.0)
    assert isinstance(actions[0], RemoveSubscription) and isinstance(actions[1], AddSubscription)


def test_snapshot_only_where_there_is_one():
    (reply,) = replies(
        Session().receive('{"type":"subscribe","channel":"notifications","snapshot":true}', 0.0)
    )
    assert reply["code"] == "snapshot_not_available"


def test_history_and_mark_read_requests():
    session = Session()
    (action,) = session.receive('{"type":"history","channel":"jobs","limit":5}', 0.0)
    assert isinstance(action, SendHistory) and action.request.limit == 5
    (action,) = session.receive('{"type":"mark_read","ids":["a","b","a"]}', 0.0)
    assert isinstance(action, MarkNotificationsRead) and action.ids == ("a", "b")
    assert action.user is None


def test_unsubscribe_removes_and_acks_even_when_not_subscribed():
    session = Session()
    session.receive('{"type":"subscribe","channel":"jobs"}', 0.0)
    actions = session.receive('{"type":"unsubscribe","channels":["jobs","alerts"]}', 0.0)
    assert actions[0] == RemoveSubscription(Channel.JOBS)
    assert [r["type"] for r in replies(actions)] == ["unsubscribed", "unsubscribed"]
    assert session.channels == set()


def test_ping_pong():
    assert replies(Session().receive('{"type":"ping","id":"p1"}', 0.0)) == [
        {"type": "pong", "id": "p1"}
    ]


def test_bad_frames_become_error_replies():
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


def test_binary_frame_is_rejected_clearly():
    (reply,) = replies(Session().receive(b'{"type":"ping"}', 0.0))
    assert reply["code"] == "binary_not_supported"


def test_client_broadcast_is_forbidden_without_auth():
    actions = Session().receive(
        '{"type":"broadcast","channel":"jobs","message":{"a":1},"id":5}', 0.0
    )
    (reply,) = replies(actions)
    assert reply["code"] == "forbidden" and reply["id"] == 5
    assert len(actions) == 1
