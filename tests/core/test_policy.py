from slurmcast.core.policy import ANONYMOUS, AccessPolicy, JobsVisibility, Principal, parse_roles

ALICE = Principal("alice", frozenset())
ROOT = Principal("root", frozenset({"admin"}))
SECURE = AccessPolicy(auth_enabled=True)


def test_without_auth_everyone_reads_everything_and_nobody_broadcasts() -> None:
    open_policy = AccessPolicy(auth_enabled=False)
    assert open_policy.subscribe_denial(ANONYMOUS, "user:bob") is None
    assert open_policy.may_see(ANONYMOUS, "jobs", "bob")
    assert not open_policy.may_broadcast(ANONYMOUS)


def test_private_channels_belong_to_their_user_and_admins() -> None:
    assert SECURE.subscribe_denial(ALICE, "user:alice") is None
    assert SECURE.subscribe_denial(ALICE, "user:bob") == "channel user:bob is private to user bob"
    assert SECURE.subscribe_denial(ROOT, "user:bob") is None


def test_channel_allow_list_claim() -> None:
    limited = Principal("alice", frozenset(), channels=frozenset({"nodes"}))
    assert SECURE.subscribe_denial(limited, "nodes") is None
    assert "does not allow channel jobs" in (SECURE.subscribe_denial(limited, "jobs") or "")
    # The user's own private channel stays reachable.
    assert SECURE.subscribe_denial(limited, "user:alice") is None


def test_jobs_visibility() -> None:
    assert SECURE.may_see(ALICE, "jobs", "alice")
    assert not SECURE.may_see(ALICE, "jobs", "bob")
    assert not SECURE.may_see(ALICE, "notifications", "bob")
    assert SECURE.may_see(ALICE, "nodes", "bob")  # cluster-wide channels are not filtered
    assert SECURE.may_see(ALICE, "jobs", None)  # operator broadcasts concern no one
    assert SECURE.may_see(ROOT, "jobs", "bob")
    everyone = AccessPolicy(auth_enabled=True, jobs_visibility=JobsVisibility.ALL)
    assert everyone.may_see(ALICE, "jobs", "bob")


def test_broadcast_is_for_admins() -> None:
    assert SECURE.may_broadcast(ROOT)
    assert not SECURE.may_broadcast(ALICE)


def test_parse_roles() -> None:
    assert parse_roles(["admin", 3, "ops"]) == frozenset({"admin", "ops"})
    assert parse_roles("admin") == frozenset({"admin"})
    assert parse_roles(None) == frozenset()


def test_the_channels_claim_restricts_admins_too() -> None:
    limited_root = Principal("root", frozenset({"admin"}), channels=frozenset({"nodes"}))
    assert SECURE.subscribe_denial(limited_root, "nodes") is None
    assert "does not allow channel jobs" in (SECURE.subscribe_denial(limited_root, "jobs") or "")
    assert "does not allow" in (SECURE.subscribe_denial(limited_root, "user:bob") or "")
    assert SECURE.subscribe_denial(limited_root, "user:root") is None, "one's own channel"
    assert SECURE.broadcast_denial(limited_root, "nodes") is None
    assert "does not allow" in (SECURE.broadcast_denial(limited_root, "jobs") or "")
    assert "does not allow" in (SECURE.broadcast_denial(limited_root, "all") or "")
    # Without the claim, an admin reads and broadcasts everywhere.
    assert SECURE.subscribe_denial(ROOT, "user:bob") is None
    assert SECURE.broadcast_denial(ROOT, "all") is None


def test_broadcast_denials_say_why() -> None:
    assert "reserved for admins" in (SECURE.broadcast_denial(ALICE, "alerts") or "")
    open_policy = AccessPolicy(auth_enabled=False)
    assert "POST /broadcast" in (open_policy.broadcast_denial(ANONYMOUS, "alerts") or "")
