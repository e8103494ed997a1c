"""Token verification with real keys: what is accepted and why the rest is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from slurmcast.auth.jwt import JwtSettings, JwtVerifier, mint_token, parse_bearer
from slurmcast.errors import AuthError, ConfigError, ErrorCode

from support.tokens import SECRET, KeyPair, hs256, make_keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair, Path]:
    return make_keys(tmp_path_factory.mktemp("keys"))


def refused(verifier: JwtVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier(token)
    assert "eyJ" not in info.value.message  # never echo the token
    return info.value


def test_valid_hs256_token_gives_principal() -> None:
    verifier = JwtVerifier(JwtSettings(secret=SECRET))
    principal = verifier(hs256("alice", roles=["admin"], channels=["jobs", "user:alice"]))
    assert principal.user == "alice" and principal.is_admin
    assert principal.channels == frozenset({"jobs", "user:alice"})
    assert principal.expires_at is not None and principal.expires_at > time.time()


def test_rs256_es256_from_public_key_and_jwks(keys: tuple[KeyPair, KeyPair, Path]) -> None:
    rsa_pair, ec_pair, jwks = keys
    for pair in (rsa_pair, ec_pair):
        verifier = JwtVerifier(JwtSettings(public_key_file=str(pair.public_pem_file)))
        assert verifier(pair.token("bob")).user == "bob"
    by_kid = JwtVerifier(JwtSettings(jwks_file=str(jwks)))
    assert by_kid(rsa_pair.token("carol")).user == "carol"
    assert by_kid(ec_pair.token("dave")).user == "dave"


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda: hs256(ttl=-120), ErrorCode.TOKEN_EXPIRED, "expired"),
        (lambda: hs256(nbf=int(time.time()) + 600), ErrorCode.INVALID_TOKEN, "not valid yet"),
        (
            lambda: hs256(secret="another-secret-0123456789abcdef0123"),
            ErrorCode.INVALID_TOKEN,
            "signature",
        ),
        (lambda: "not-a-jwt", ErrorCode.INVALID_TOKEN, "malformed"),
        (lambda: "a.b.c", ErrorCode.INVALID_TOKEN, "malformed"),
        (
            lambda: jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
            ErrorCode.INVALID_TOKEN,
            "'exp'",
        ),
        (lambda: hs256(sub="not a user!"), ErrorCode.INVALID_TOKEN, "sub"),
        (lambda: hs256(channels="jobs"), ErrorCode.INVALID_TOKEN, "channels"),
        (lambda: hs256(channels=["weather"]), ErrorCode.INVALID_TOKEN, "channels"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(
    make: Callable[[], str], code: ErrorCode, words: str
) -> None:
    error = refused(JwtVerifier(JwtSettings(secret=SECRET)), make())
    assert error.code is code
    assert words in error.message


def _part(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(claims)}."


def test_alg_none_is_refused() -> None:
    token = _unsigned({"sub": "root", "roles": ["admin"], "exp": int(time.time()) + 60})
    error = refused(JwtVerifier(JwtSettings(secret=SECRET)), token)
    assert "algorithm" in error.message


def test_algorithm_confusion_is_refused(keys: tuple[KeyPair, KeyPair, Path]) -> None:
    rsa_pair, _, _ = keys
    # An HS256 token signed with the RSA *public* key must not pass an RS256 verifier.
    public_pem = rsa_pair.public_pem_file.read_bytes()
    claims = {"sub": "root", "roles": ["admin"], "exp": int(time.time()) + 60}
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT'})}.{_part(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{_part(mac)}"
    error = refused(JwtVerifier(JwtSettings(public_key_file=str(rsa_pair.public_pem_file))), forged)
    assert "algorithm" in error.message


def test_audience_and_issuer(keys: tuple[KeyPair, KeyPair, Path]) -> None:
    verifier = JwtVerifier(JwtSettings(secret=SECRET, audience="slurmcast", issuer="hpc-sso"))
    assert verifier(hs256(aud="slurmcast", iss="hpc-sso")).user == "alice"
    assert "audience" in refused(verifier, hs256(aud="other", iss="hpc-sso")).message
    assert "issuer" in refused(verifier, hs256(aud="slurmcast", iss="evil")).message
    assert "'aud'" in refused(verifier, hs256(iss="hpc-sso")).message


def test_small_clock_skew_is_tolerated() -> None:
    verifier = JwtVerifier(JwtSettings(secret=SECRET, leeway=10))
    assert verifier(hs256(ttl=-3)).user == "alice"
    assert verifier(hs256(nbf=int(time.time()) + 3)).user == "alice"


def test_unknown_kid_in_jwks(keys: tuple[KeyPair, KeyPair, Path]) -> None:
    rsa_pair, _, jwks = keys
    rsa_pair_other = KeyPair(rsa_pair.private, rsa_pair.public_pem_file, "RS256", "missing")
    error = refused(JwtVerifier(JwtSettings(jwks_file=str(jwks))), rsa_pair_other.token())
    assert "not in the JWKS" in error.message


def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a key"):
        JwtVerifier(JwtSettings())
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        JwtVerifier(JwtSettings(secret="short"))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="cannot load a PEM public key"):
        JwtVerifier(JwtSettings(public_key_file=str(bad)))
    with pytest.raises(ConfigError, match="cannot load a JWKS"):
        JwtVerifier(JwtSettings(jwks_file=str(bad)))


def test_mint_round_trip() -> None:
    token = mint_token(SECRET, "erin", roles=["admin"], ttl_s=60, now=time.time())
    principal = JwtVerifier(JwtSettings(secret=SECRET))(token)
    assert principal.user == "erin" and principal.is_admin


def test_parse_bearer() -> None:
    assert parse_bearer("Bearer abc") == "abc"
    assert parse_bearer("bearer   abc ") == "abc"
    assert parse_bearer("Basic abc") is None
    assert parse_bearer("Bearer ") is None
    assert parse_bearer(None) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "99999999999"},
        {"exp": 1e300},
        {"exp": True},
        {"exp": 253402300800},
        {"exp": -1},
        {"nbf": "0"},
        {"iat": [1]},
        {"sub": "bob\n"},
        {"sub": "bob\r\n"},
        {"roles": ["\ud800"]},
        {"roles": ["admin\x00"]},
    ],
    ids=repr,
)
def test_claims_rfc_7519_does_not_allow_are_refused(claims: dict[str, Any]) -> None:
    error = refused(JwtVerifier(JwtSettings(secret=SECRET)), hs256(**claims))
    assert error.code is ErrorCode.INVALID_TOKEN


def test_a_numeric_date_may_be_a_float_and_far_away() -> None:
    verifier = JwtVerifier(JwtSettings(secret=SECRET))
    principal = verifier(hs256(exp=253402300799.5 - 0.5, iat=time.time() - 0.25))
    assert principal.expires_at == 253402300799.0


def test_times_are_still_checked_with_the_leeway() -> None:
    verifier = JwtVerifier(JwtSettings(secret=SECRET, leeway=10))
    assert verifier(hs256(ttl=-5)).user == "alice", "within the leeway"
    assert refused(verifier, hs256(ttl=-60)).code is ErrorCode.TOKEN_EXPIRED
    assert "not valid yet" in refused(verifier, hs256(iat=int(time.time()) + 600)).message


@pytest.mark.parametrize("token", ["\ud800.e30.x", "é.é.é", "a\x00b.c.d", "x" * 3 + "\n"])
def test_tokens_that_are_not_printable_ascii_are_malformed(token: str) -> None:
    error = refused(JwtVerifier(JwtSettings(secret=SECRET)), token)
    assert error.message == "token is malformed"
