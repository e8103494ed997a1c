from slurmcast.core.channels import Channel
from slurmcast.core.session import AddSubscription, RemoveSubscription, SendReply, Session


def replies(actions):
    return [a.reply for a in actions if isinstance(a, SendReply)]


def test_subscribe_many_gives_one_ack_per_channel_and_echoes_id():
    session = Session()
    actions = session.receive('{"type":"subscribe","channels":["jobs","nodes"],"id":42}', 0.0)
    assert AddSubscription(Channel.JOBS) in actions and AddSubscription(Channel.NODES) in actions
    acks = replies(actions)
    assert [r["channel"] for r in acks] == ["jobs", "nodes"]
    assert all(r["type"] == "subscribed" and r["id"] == 42 for r in acks)
    assert session.channels == {Channel.JOBS, Channel.NODES}


def test_subscribe_is_idempotent():
    session = Session()
    session.receive('{"type":"subscribe","channel":"jobs"}', 0.0)
    actions = session.receive('{"type":"subscribe","channel":"jobs"}', 0.0)
    assert not any(isinstance(a, AddSubscription) for a in actions)
    assert replies(actions)[0]["message"] == "Already subscribed to jobs"


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
