"""Authentication, expiry, refresh and rate limits of the session state machine."""

import json
from collections.abc import Iterable
from typing import Any, cast

from slurmcast.core.policy import AccessPolicy, JobsVisibility, Principal
from slurmcast.core.session import (
    Action,
    AddSubscription,
    Authenticated,
    CloseConnection,
    PublishBroadcast,
    RemoveSubscription,
    SendReply,
    Session,
    SessionLimits,
    SessionState,
)
from slurmcast.errors import AuthError, CloseCode, ErrorCode

SECURE = AccessPolicy(auth_enabled=True)
T0 = 1_800_000_000.0
TOKENS = {
    "alice-token": Principal("alice", expires_at=T0 + 60),
    "alice-later": Principal("alice", expires_at=T0 + 3600),
    "alice-nodes-only": Principal("alice", channels=frozenset({"nodes"}), expires_at=T0 + 3600),
    "bob-token": Principal("bob", expires_at=T0 + 3600),
    "root-token": Principal("root", frozenset({"admin"}), expires_at=T0 + 3600),
}


def subscribing(actions: list[Action]) -> list[str]:
    """The channels ``actions`` subscribe to, if they are only subscriptions."""
    assert all(isinstance(a, AddSubscription) for a in actions), actions
    return [a.channel for a in cast(list[AddSubscription], actions)]


def verify(token: str) -> Principal:
    if token == "expired-token":
        raise AuthError("token expired", code=ErrorCode.TOKEN_EXPIRED)
    if token not in TOKENS:
        raise AuthError("token signature does not verify")
    return TOKENS[token]


def session(principal: Principal | None = None, **limits: Any) -> Session:
    return Session(SECURE, SessionLimits(**limits), verify, T0, principal)


def send(s: Session, message: dict[str, Any] | str, now: float = T0) -> list[Action]:
    return s.receive(message if isinstance(message, str) else json.dumps(message), now)


def replies(actions: Iterable[Action]) -> list[dict[str, Any]]:
    return [a.reply for a in actions if isinstance(a, SendReply)]


def closes(actions: Iterable[Action]) -> list[CloseConnection]:
    return [a for a in actions if isinstance(a, CloseConnection)]


def test_nothing_is_processed_before_auth() -> None:
    s = session()
    assert s.state is SessionState.AUTHENTICATING
    (reply,) = replies(send(s, {"type": "subscribe", "channel": "jobs", "id": 1}))
    assert reply["code"] == "unauthorized" and reply["id"] == 1
    (reply,) = replies(send(s, {"type": "ping"}))
    assert reply["code"] == "unauthorized"
    assert s.channels == set()


def test_first_message_auth_then_subscribe() -> None:
    s = session()
    actions = send(s, {"type": "auth", "token": "alice-token", "id": "a"})
    assert Authenticated(TOKENS["alice-token"]) in actions
    (reply,) = replies(actions)
    assert reply["type"] == "authenticated" and reply["user"] == "alice" and reply["id"] == "a"
    assert reply["expires_at"].endswith("Z")
    assert s.state is SessionState.OPEN and s.deadline == T0 + 60
    assert subscribing(send(s, {"type": "subscribe", "channel": "jobs"})) == ["jobs"]


def test_bad_token_closes_with_1008_and_a_reason() -> None:
    s = session()
    actions = send(s, {"type": "auth", "token": "forged"})
    (reply,) = replies(actions)
    assert reply["code"] == "invalid_token" and "signature" in reply["message"]
    (close,) = closes(actions)
    assert close.code is CloseCode.POLICY_VIOLATION
    assert close.reason.startswith("Authentication failed")
    assert send(s, {"type": "ping"}) == []


def test_expired_token_at_auth_says_so() -> None:
    actions = send(session(), {"type": "auth", "token": "expired-token"})
    assert replies(actions)[0]["code"] == "token_expired"
    assert closes(actions)[0].code is CloseCode.POLICY_VIOLATION


def test_auth_timeout() -> None:
    s = session(auth_timeout=5)
    assert s.deadline == T0 + 5
    assert s.on_timer(T0 + 4.9) == []
    (close,) = closes(s.on_timer(T0 + 5))
    assert close.code is CloseCode.POLICY_VIOLATION
    assert close.reason == "Authentication failed: no auth message within 5s"


def test_expiry_grace_and_refresh_before_the_end() -> None:
    s = session(TOKENS["alice-token"], refresh_grace=30)
    (warning,) = replies(s.on_timer(T0 + 60))
    assert warning["code"] == "token_expired"
    assert s.state is SessionState.EXPIRING and s.deadline == T0 + 90
    # Still served during the grace period.
    assert replies(send(s, {"type": "ping"}, T0 + 61)) == [{"type": "pong"}]
    actions = send(s, {"type": "refresh", "token": "alice-later", "id": 7}, T0 + 70)
    (reply,) = replies(actions)
    assert reply["type"] == "refreshed" and reply["id"] == 7
    assert cast(SessionState, s.state) is SessionState.OPEN and s.deadline == T0 + 3600


def test_refresh_before_expiry_moves_the_deadline() -> None:
    s = session(TOKENS["alice-token"])
    send(s, {"type": "refresh", "token": "alice-later"}, T0 + 10)
    assert s.deadline == T0 + 3600 and s.on_timer(T0 + 61) == []


def test_no_refresh_closes_with_4001() -> None:
    s = session(TOKENS["alice-token"], refresh_grace=30)
    s.on_timer(T0 + 60)
    (close,) = closes(s.on_timer(T0 + 90))
    assert close.code is CloseCode.TOKEN_EXPIRED


def test_refresh_for_another_user_or_with_a_bad_token_is_refused() -> None:
    s = session(TOKENS["alice-token"])
    (reply,) = replies(send(s, {"type": "refresh", "token": "bob-token"}))
    assert reply["code"] == "forbidden"
    (reply,) = replies(send(s, {"type": "refresh", "token": "forged"}))
    assert reply["code"] == "invalid_token"
    assert s.principal.user == "alice" and s.deadline == T0 + 60


def test_refresh_to_a_narrower_token_drops_channels() -> None:
    s = session(TOKENS["alice-later"])
    send(s, {"type": "subscribe", "channels": ["jobs", "nodes"]})
    actions = send(s, {"type": "refresh", "token": "alice-nodes-only"})
    assert RemoveSubscription("jobs") in actions and s.channels == {"nodes"}


def test_private_channels_and_broadcast_permissions() -> None:
    alice = session(TOKENS["alice-later"])
    (reply,) = replies(send(alice, {"type": "subscribe", "channel": "user:bob"}))
    assert reply["code"] == "forbidden" and "private" in reply["message"]
    assert subscribing(send(alice, {"type": "subscribe", "channel": "user:alice"})) == [
        "user:alice"
    ]
    message = {"type": "broadcast", "channel": "jobs", "message": {"t": 1}, "id": 2}
    (reply,) = replies(send(alice, message))
    assert reply["code"] == "forbidden"
    root = session(TOKENS["root-token"])
    assert send(root, message) == [PublishBroadcast("jobs", "broadcast", {"t": 1}, 2)]
    assert subscribing(send(root, {"type": "subscribe", "channel": "user:bob"})) == ["user:bob"]


def test_channel_limit() -> None:
    s = session(TOKENS["root-token"], max_channels=2)
    send(s, {"type": "subscribe", "channels": ["jobs", "nodes"]})
    (reply,) = replies(send(s, {"type": "subscribe", "channel": "alerts"}))
    assert reply["code"] == "too_many_channels"
    assert replies(send(s, {"type": "subscribe", "channel": "jobs"}))[0]["message"] == (
        "Already subscribed to jobs"
    )


def test_rate_limit_answers_then_closes_a_flooder() -> None:
    s = session(TOKENS["root-token"], rate=1.0, burst=3, flood_warnings=2)
    for _ in range(3):
        assert replies(send(s, {"type": "ping"}))[0] == {"type": "pong"}
    (limited,) = replies(send(s, {"type": "ping"}))
    assert limited["code"] == "rate_limited" and limited["retry_after"] == 1.0
    assert "retry in 1.0s" in limited["message"]
    # Waiting as told works again.
    assert replies(send(s, {"type": "ping"}, T0 + 1))[0] == {"type": "pong"}
    send(s, {"type": "ping"}, T0 + 1)
    send(s, {"type": "ping"}, T0 + 1)
    (close,) = closes(send(s, {"type": "ping"}, T0 + 1))
    assert close.code is CloseCode.POLICY_VIOLATION and "rate limit" in close.reason


def test_auth_disabled_accepts_auth_messages_harmlessly() -> None:
    s = Session(AccessPolicy(auth_enabled=False), now=T0)
    (reply,) = replies(send(s, {"type": "auth", "token": "anything"}))
    assert reply["type"] == "authenticated" and reply["user"] is None


def test_visibility_all_is_a_policy_matter_not_a_session_one() -> None:
    s = Session(AccessPolicy(True, JobsVisibility.ALL), now=T0, principal=TOKENS["bob-token"])
    assert s.policy.may_see(s.principal, "jobs", "alice")


def test_a_rate_limited_request_is_named_by_its_id() -> None:
    s = session(TOKENS["root-token"], rate=1.0, burst=1, flood_warnings=10)
    assert replies(send(s, {"type": "ping", "id": 1}))[0] == {"type": "pong", "id": 1}
    (limited,) = replies(send(s, {"type": "subscribe", "channel": "jobs", "id": "sub-7"}))
    assert limited["code"] == "rate_limited" and limited["id"] == "sub-7"
    (no_id,) = replies(send(s, {"type": "ping"}))
    assert no_id["code"] == "rate_limited" and "id" not in no_id
    # What cannot be read has no id to echo, and is refused all the same.
    for frame in ("{not json", '["a list"]', '{"type": "ping", "id": true}'):
        (refused,) = replies(s.receive(frame, T0))
        assert refused["code"] == "rate_limited" and "id" not in refused


def test_ping_frames_cost_a_message_and_a_flood_of_them_is_closed() -> None:
    s = session(TOKENS["root-token"], rate=1.0, burst=3, flood_warnings=2)
    assert [s.receive_control(T0) for _ in range(3)] == [[], [], []]
    # Over the limit: nothing to answer (websockets pongs), but counted...
    assert s.receive_control(T0) == [] and s.receive_control(T0) == []
    (close,) = closes(s.receive_control(T0))
    assert close.code is CloseCode.POLICY_VIOLATION and "ping" in close.reason
    assert s.state is SessionState.CLOSED


def test_ping_frames_and_messages_share_one_budget() -> None:
    s = session(TOKENS["root-token"], rate=1.0, burst=2)
    s.receive_control(T0)
    s.receive_control(T0)
    (limited,) = replies(send(s, {"type": "ping"}))
    assert limited["code"] == "rate_limited"


def test_answers_are_charged_by_their_size() -> None:
    s = session(TOKENS["root-token"], rate=1.0, burst=10, reply_bytes_per_token=1000)
    assert replies(send(s, {"type": "ping"}))  # 9 tokens left
    s.charge_reply(500, T0)  # small answers cost nothing more than their request
    s.charge_reply(8000, T0)  # 8 tokens' worth, one paid with the request
    assert s.bucket.tokens == 2.0
    s.charge_reply(1_000_000, T0)
    (limited,) = replies(send(s, {"type": "ping"}))
    assert limited["code"] == "rate_limited" and limited["retry_after"] == 11.0


def test_refresh_keeps_the_principal_for_the_transport_to_count_once() -> None:
    s = session(TOKENS["alice-token"])
    actions = send(s, {"type": "refresh", "token": "alice-later"})
    assert Authenticated(TOKENS["alice-later"]) in actions


def test_broadcast_respects_the_channels_claim_of_an_admin() -> None:
    limited = Principal("root", frozenset({"admin"}), channels=frozenset({"alerts"}))
    s = session(limited)
    (reply,) = replies(send(s, {"type": "broadcast", "channel": "jobs", "message": {"x": 1}}))
    assert reply["code"] == "forbidden" and "does not allow channel jobs" in reply["message"]
    (action,) = send(s, {"type": "broadcast", "channel": "alerts", "message": {"x": 1}})
    assert isinstance(action, PublishBroadcast)


def test_an_admin_kept_from_notifications_marks_only_its_own_read() -> None:
    from slurmcast.core.session import MarkNotificationsRead

    everything = session(TOKENS["root-token"])
    (action,) = send(everything, {"type": "mark_read", "ids": ["n1"]})
    assert isinstance(action, MarkNotificationsRead) and action.user is None
    limited = Principal("root", frozenset({"admin"}), channels=frozenset({"nodes"}))
    (action,) = send(session(limited), {"type": "mark_read", "ids": ["n1"]})
    assert isinstance(action, MarkNotificationsRead) and action.user == "root"
    allowed = Principal("root", frozenset({"admin"}), channels=frozenset({"notifications"}))
    (action,) = cast(
        list[MarkNotificationsRead],
        send(session(allowed), {"type": "mark_read", "ids": ["n1"]}),
    )
    assert action.user is None
