"""Whose mailbox: address syntax, templates, the user's own address, and nobody else's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurmcast.core.notify.addresses import (
    DEFAULT_TARGET,
    address_from_template,
    check_email_target,
    own_address,
    recipient,
    same_address,
    validate_address,
    validate_template,
)
from slurmcast.core.notify.errors import ForbiddenDestination, InvalidAddress
from slurmcast.errors import ErrorCode

VALID = [
    "alice@example.edu",
    "a.b-c+tag@mail.example.co.uk",
    "x@a-b.io",
    "o'brien@example.org",
    "UPPER@EXAMPLE.EDU",
    ("l" * 64) + "@example.edu",
]
INVALID = [
    "",
    "alice",
    "alice@",
    "@example.edu",
    "alice@@example.edu",
    "a@b@example.edu",
    "alice@localhost",  # a single label: not a mail domain
    "alice@example..edu",
    "alice@-example.edu",
    "alice@example-.edu",
    "alice@exa_mple.edu",
    ".alice@example.edu",
    "alice.@example.edu",
    "al..ice@example.edu",
    "al ice@example.edu",
    "alice@example.edu\r\nBcc: victim@example.com",
    "alice@example.edu\nX: y",
    "alice\r@example.edu",
    "alice@example.edu\x00",
    "alice@example.edu\t",
    "alice,bob@example.edu",
    "alice;bob@example.edu",
    "<alice@example.edu>",
    "Alice <alice@example.edu>",
    '"alice"@example.edu',
    "alice(comment)@example.edu",
    "alice@[127.0.0.1]",
    "élise@example.edu",
    "alice@exämple.edu",
    ("l" * 65) + "@example.edu",
    "a@" + ".".join(["b" * 63] * 4) + ".edu",  # longer than 254
    "a@" + "b" * 64 + ".edu",  # a label longer than 63
]


@pytest.mark.parametrize("address", VALID)
def test_valid_addresses(address: str) -> None:
    assert validate_address(address) == address


@pytest.mark.parametrize("address", INVALID)
def test_invalid_addresses(address: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        validate_address(address, field="target")
    assert caught.value.code is ErrorCode.INVALID_FIELD
    assert caught.value.field == "target"


@pytest.mark.parametrize("value", [None, 3, ["a@b.cd"], b"a@b.cd"])
def test_non_strings_are_invalid(value: object) -> None:
    with pytest.raises(InvalidAddress):
        validate_address(value)


@given(st.text(max_size=80))
def test_nothing_with_a_line_break_is_ever_accepted(text: str) -> None:
    candidate = f"a{text}@example.edu"
    try:
        accepted = validate_address(candidate)
    except InvalidAddress:
        return
    assert "\r" not in accepted and "\n" not in accepted
    assert accepted.count("@") == 1
    assert len(accepted) <= 254


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("alice@example.edu", "alice@example.edu", True),
        ("alice@example.edu", "alice@EXAMPLE.edu", True),
        ("alice@example.edu", "Alice@example.edu", False),
        ("alice@example.edu", "alice@example.org", False),
        ("alice@example.edu", "alicia@example.edu", False),
    ],
)
def test_same_address(a: str, b: str, same: bool) -> None:
    assert same_address(a, b) is same


# --- templates


@pytest.mark.parametrize(
    ("template", "user", "address"),
    [
        ("{user}@example.edu", "alice", "alice@example.edu"),
        ("{user}@cluster.example.edu", "bob.smith", "bob.smith@cluster.example.edu"),
        ("hpc-{user}@example.edu", "carol_1", "hpc-carol_1@example.edu"),
    ],
)
def test_template_gives_the_users_address(template: str, user: str, address: str) -> None:
    assert address_from_template(template, user) == address


@pytest.mark.parametrize(
    "template",
    [
        "@example.edu",
        "alice@example.edu",
        "{user}{user}@example.edu",
        "{user}@{user}.edu",
        "{username}@example.edu",
        "{user}@example.edu{0}",
        "{USER}@example.edu",
        "{user}",
        "{user}@localhost",
        "{user}@example.edu\nBcc: x@y.zz",
        42,
    ],
)
def test_invalid_templates(template: object) -> None:
    with pytest.raises(InvalidAddress) as caught:
        validate_template(template)
    assert caught.value.field == "template"


@pytest.mark.parametrize("user", ["", "a b", "../x", "a@b", "x" * 65, ".", ".hidden", "-x"])
def test_template_refuses_user_names_that_are_not_slurm_names_or_not_addresses(
    user: str,
) -> None:
    with pytest.raises(InvalidAddress):
        address_from_template("{user}@example.edu", user)


# --- the user's own address


def test_own_address_prefers_the_claim() -> None:
    assert (
        own_address("alice", claim="a.liddell@example.org", template="{user}@example.edu")
        == "a.liddell@example.org"
    )


def test_own_address_falls_back_to_the_template() -> None:
    assert own_address("alice", template="{user}@example.edu") == "alice@example.edu"


@pytest.mark.parametrize("claim", ["not an address", "x@y\r\nBcc: z@w.com", 7, ["a@b.cd"]])
def test_a_malformed_claim_is_not_trusted(claim: object) -> None:
    assert own_address("alice", claim=claim, template="{user}@example.edu") == ("alice@example.edu")
    assert own_address("alice", claim=claim) is None


def test_no_source_no_address() -> None:
    assert own_address("alice") is None
    assert own_address(".x", template="{user}@example.edu") is None


# --- a rule's target


def test_default_target_needs_a_known_address() -> None:
    assert check_email_target(DEFAULT_TARGET, own="alice@example.edu", is_admin=False) == (
        DEFAULT_TARGET
    )
    with pytest.raises(InvalidAddress):
        check_email_target(DEFAULT_TARGET, own=None, is_admin=False)
    with pytest.raises(InvalidAddress):
        check_email_target(DEFAULT_TARGET, own=None, is_admin=True)


def test_a_user_may_name_their_own_address() -> None:
    assert (
        check_email_target("alice@EXAMPLE.edu", own="alice@example.edu", is_admin=False)
        == "alice@EXAMPLE.edu"
    )


@pytest.mark.parametrize(
    ("target", "own"),
    [
        ("bob@example.edu", "alice@example.edu"),
        ("Alice@example.edu", "alice@example.edu"),
        ("alice@example.org", "alice@example.edu"),
        ("alice@example.edu", None),
    ],
)
def test_a_user_may_not_mail_anyone_else(target: str, own: str | None) -> None:
    with pytest.raises(ForbiddenDestination) as caught:
        check_email_target(target, own=own, is_admin=False)
    assert caught.value.code is ErrorCode.FORBIDDEN


def test_admins_may_name_any_valid_address() -> None:
    assert check_email_target("oncall@example.org", own=None, is_admin=True) == (
        "oncall@example.org"
    )
    with pytest.raises(InvalidAddress):
        check_email_target("oncall@example.org\r\nBcc: x@y.zz", own=None, is_admin=True)


def test_recipient_resolves_default_at_sending_time() -> None:
    assert recipient(DEFAULT_TARGET, "alice@example.edu") == "alice@example.edu"
    assert recipient(DEFAULT_TARGET, None) is None
    assert recipient("oncall@example.org", "alice@example.edu") == "oncall@example.org"
