"""Webhook signatures: round trip, tampering, the replay window, malformed headers."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurmcast.core.notify.signing import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify,
)

SECRET = b"s3cret-webhook-key"
NOW = datetime(2026, 11, 28, 4, 19, 6, tzinfo=UTC)
TS = int(NOW.timestamp())
BODY = b'{"event":"job_failed","job":{"job_id":"1251"}}'


def test_signature_is_documented_hmac_of_timestamp_dot_body() -> None:
    headers = sign(BODY, SECRET, TS, delivery_id="d-1")
    expected = hmac.new(SECRET, f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers == {
        TIMESTAMP_HEADER: str(TS),
        SIGNATURE_HEADER: f"v1={expected}",
        DELIVERY_HEADER: "d-1",
    }


def test_delivery_header_only_when_given() -> None:
    assert DELIVERY_HEADER not in sign(BODY, SECRET, TS)


@given(body=st.binary(max_size=512), secret=st.binary(min_size=1, max_size=64))
def test_sign_then_verify_round_trip(body: bytes, secret: bytes) -> None:
    assert verify(body, sign(body, secret, TS), secret, NOW)


@given(body=st.binary(max_size=256), flip=st.integers(min_value=0, max_value=255))
def test_any_tampered_body_fails(body: bytes, flip: int) -> None:
    headers = sign(body, SECRET, TS)
    tampered = body + bytes([flip]) if not body else bytes([body[0] ^ (flip or 1)]) + body[1:]
    assert not verify(tampered, headers, SECRET, NOW)


def test_tampered_timestamp_fails() -> None:
    headers = sign(BODY, SECRET, TS)
    headers[TIMESTAMP_HEADER] = str(TS + 1)
    assert not verify(BODY, headers, SECRET, NOW)


def test_other_secret_fails() -> None:
    assert not verify(BODY, sign(BODY, SECRET, TS), b"another", NOW)


@pytest.mark.parametrize(
    ("offset_s", "accepted"),
    [
        (0, True),
        (300, True),  # exactly at the edge, in the past
        (301, False),
        (-300, True),  # exactly at the edge, in the future
        (-301, False),
        (86400, False),
    ],
)
def test_replay_window_edges(offset_s: int, accepted: bool) -> None:
    headers = sign(BODY, SECRET, TS - offset_s)
    assert verify(BODY, headers, SECRET, NOW) is accepted


def test_tolerance_is_configurable() -> None:
    headers = sign(BODY, SECRET, TS - 30)
    assert verify(BODY, headers, SECRET, NOW, tolerance_s=30)
    assert not verify(BODY, headers, SECRET, NOW, tolerance_s=29)


def test_header_names_match_without_case() -> None:
    headers = {k.lower(): v for k, v in sign(BODY, SECRET, TS).items()}
    assert verify(BODY, headers, SECRET, NOW)


def test_several_signatures_any_may_match() -> None:
    good = sign(BODY, SECRET, TS)[SIGNATURE_HEADER]
    headers = {TIMESTAMP_HEADER: str(TS), SIGNATURE_HEADER: f"v1={'0' * 64}, {good}"}
    assert verify(BODY, headers, SECRET, NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {TIMESTAMP_HEADER: str(TS)},
        {SIGNATURE_HEADER: "v1=00"},
        {TIMESTAMP_HEADER: "-5", SIGNATURE_HEADER: "v1=00"},
        {TIMESTAMP_HEADER: "1e9", SIGNATURE_HEADER: "v1=00"},
        {TIMESTAMP_HEADER: "9" * 40, SIGNATURE_HEADER: "v1=00"},
    ],
)
def test_missing_or_malformed_headers_fail(headers: dict[str, str]) -> None:
    assert not verify(BODY, headers, SECRET, NOW)


def test_non_ascii_digits_are_not_a_timestamp() -> None:
    # int() reads full-width digits: the verifier must not, or the signed text differs.
    headers = sign(BODY, SECRET, TS)
    headers[TIMESTAMP_HEADER] = "".join(chr(0xFF10 + int(d)) for d in str(TS))
    assert int(headers[TIMESTAMP_HEADER]) == TS
    assert not verify(BODY, headers, SECRET, NOW)


def test_wrong_scheme_fails_even_with_the_right_digest() -> None:
    digest = sign(BODY, SECRET, TS)[SIGNATURE_HEADER].removeprefix("v1=")
    headers = {TIMESTAMP_HEADER: str(TS), SIGNATURE_HEADER: f"v0={digest}"}
    assert not verify(BODY, headers, SECRET, NOW)


def test_duplicate_header_is_refused() -> None:
    signed = sign(BODY, SECRET, TS)
    headers = {**signed, TIMESTAMP_HEADER.lower(): str(TS)}
    assert not verify(BODY, headers, SECRET, NOW)


def test_empty_secret_refused_both_ways() -> None:
    with pytest.raises(ValueError):
        sign(BODY, b"", TS)
    assert not verify(BODY, sign(BODY, SECRET, TS), b"", NOW)


def test_negative_timestamp_refused() -> None:
    with pytest.raises(ValueError):
        sign(BODY, SECRET, -1)


def test_now_may_be_in_any_time_zone() -> None:
    elsewhere = NOW.astimezone(timezone(timedelta(hours=5)))
    assert verify(BODY, sign(BODY, SECRET, TS), SECRET, elsewhere)
    assert not verify(BODY, sign(BODY, SECRET, TS - 3600), SECRET, elsewhere)
