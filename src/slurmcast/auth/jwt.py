"""JWT verification with PyJWT: HS256 with a shared secret, RS256/ES256 with a public key or JWKS.

A token must carry ``exp`` and ``sub`` (the Slurm user name); ``nbf`` and
``iat`` are honoured with a small leeway; ``aud`` and ``iss`` are checked when
configured. The algorithm list is fixed by the configured key, never taken
from the token, so ``alg: none`` and HS/RS confusion are refused.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from slurmcast.core.channels import is_valid_user_name, parse_channel
from slurmcast.core.policy import Principal, parse_roles
from slurmcast.errors import AuthError, ConfigError, ErrorCode, ProtocolError

log = logging.getLogger("slurmcast.auth")

#: Seconds of clock skew tolerated on exp, nbf and iat.
DEFAULT_LEEWAY = 10.0
#: RFC 7518 3.2: an HS256 key must be at least as long as the hash (32 bytes).
MIN_SECRET_BYTES = 32
#: The latest NumericDate accepted (9999-12-31T23:59:59Z): every later one is a
#: forged or broken token, and datetime cannot represent it anyway.
MAX_NUMERIC_DATE = 253402300799
#: The claims RFC 7519 defines as NumericDate (seconds since the epoch).
TIME_CLAIMS = ("exp", "nbf", "iat")


@dataclass(frozen=True, slots=True)
class JwtSettings:
    secret: str = ""
    public_key_file: str = ""
    jwks_file: str = ""
    audience: str = ""
    issuer: str = ""
    leeway: float = DEFAULT_LEEWAY
    #: The claim holding the user's e-mail address (``Principal.email``); None: not read.
    email_claim: str | None = "email"


class JwtVerifier:
    """Turns a token into a ``Principal`` or raises ``AuthError`` saying why."""

    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        check_secret(settings.secret)
        self._secret: str | None = settings.secret or None
        self._public_key: Any = None
        self._public_algorithm = ""
        self._jwks: jwt.PyJWKSet | None = None
        if settings.public_key_file:
            self._public_key, self._public_algorithm = _load_public_key(settings.public_key_file)
        if settings.jwks_file:
            self._jwks = _load_jwks(settings.jwks_file)
        if not (self._secret or self._public_key or self._jwks):
            raise ConfigError(
                "--auth jwt needs a key: --jwt-secret (HS256), --jwt-public-key FILE or --jwks FILE"
            )

    def __call__(self, token: str) -> Principal:
        # A JWT is printable ASCII; other text (a header decoded as Latin-1, a
        # lone surrogate) would only make PyJWT fail in ways it does not name.
        if not (token.isascii() and token.isprintable()):
            raise AuthError("token is malformed")
        key, algorithms = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.settings.audience or None,
                issuer=self.settings.issuer or None,
                # The times are checked below, once their types are: PyJWT reads
                # them with int(), which takes "99999999999" and True for dates.
                options={
                    "require": ["exp", "sub"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise AuthError("token is for another audience (aud)") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token is from another issuer (iss)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the required {exc.claim!r} claim") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(
                f"token algorithm is not allowed (allowed: {', '.join(algorithms)})"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature does not verify") from None
        except jwt.DecodeError:
            raise AuthError("token is malformed") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"token is invalid: {exc}") from None
        except (ValueError, TypeError, OverflowError, RecursionError):
            # PyJWT converts claims with int() and decodes JSON of any depth:
            # whatever escapes it is a malformed token, never a server error.
            raise AuthError("token is malformed") from None
        principal = principal_from_claims(claims, email_claim=self.settings.email_claim)
        check_times(claims, time.time(), self.settings.leeway)
        return principal

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthError("token is malformed") from None
        algorithm = header.get("alg")
        if self._jwks is not None and header.get("kid") is not None:
            try:
                found = self._jwks[str(header["kid"])]
            except KeyError:
                raise AuthError(f"token key id {header['kid']!r} is not in the JWKS") from None
            return found.key, [found.algorithm_name]
        if algorithm == "HS256" and self._secret:
            return self._secret, ["HS256"]
        if self._public_key is not None:
            return self._public_key, [self._public_algorithm]
        if self._jwks is not None:
            keys = self._jwks.keys
            if len(keys) == 1:
                return keys[0].key, [keys[0].algorithm_name]
            raise AuthError("token has no key id (kid) and the JWKS holds several keys")
        if self._secret:
            return self._secret, ["HS256"]
        raise AuthError("no key to verify this token")  # pragma: no cover - config forbids it


def check_secret(secret: str) -> None:
    """Refuse an HS256 secret short enough to brute-force."""
    if secret and len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes (RFC 7518 3.2); "
            "generate one with: openssl rand -hex 32"
        )


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def principal_from_claims(claims: dict[str, Any], *, email_claim: str | None = None) -> Principal:
    """The identity a verified token's claims describe.

    ``email_claim`` names the claim holding the user's address; its value is kept as given
    when it is a short string (``core.notify.addresses.own_address`` decides whether to trust
    it), dropped otherwise: a bad address never refuses a token.

    Raises:
        AuthError: a claim is not what RFC 7519 (or slurmcast) says it must be.
    """
    sub = claims.get("sub")
    if not isinstance(sub, str) or not is_valid_user_name(sub):
        raise AuthError("token 'sub' must be a Slurm user name")
    for name in TIME_CLAIMS:
        if name in claims and not is_numeric_date(claims[name]):
            # PyJWT takes int("99999999999") for a date; RFC 7519 2 does not.
            raise AuthError(
                f"token {name!r} must be a NumericDate (seconds since 1970, "
                f"at most {MAX_NUMERIC_DATE})"
            )
    roles_claim = claims.get("roles", [])
    roles = parse_roles(roles_claim)
    if not all(_is_clean_text(role) for role in roles):
        raise AuthError("token 'roles' claim must be a list of role names")
    channels_claim = claims.get("channels")
    channels: frozenset[str] | None = None
    if channels_claim is not None:
        if not isinstance(channels_claim, list):
            raise AuthError("token 'channels' claim must be a list of channel names")
        try:
            channels = frozenset(parse_channel(name) for name in channels_claim)
        except ProtocolError as exc:
            raise AuthError(f"token 'channels' claim: {exc.message}") from None
    exp = claims.get("exp")
    return Principal(
        user=sub,
        roles=roles,
        channels=channels,
        expires_at=float(exp) if exp is not None else None,
        email=_email_claim(claims, email_claim),
    )


def _email_claim(claims: dict[str, Any], name: str | None) -> str | None:
    value = claims.get(name) if name else None
    return value if isinstance(value, str) and 0 < len(value) <= 254 else None


def check_times(claims: dict[str, Any], now: float, leeway: float) -> None:
    """Refuse a token outside its validity window (``exp``, ``nbf``, ``iat``), as
    PyJWT would; the claims are NumericDates already (``principal_from_claims``).

    Raises:
        AuthError: ``token_expired``, or ``invalid_token`` when not valid yet.
    """
    exp = claims.get("exp")
    if exp is not None and exp <= now - leeway:
        raise AuthError("token expired", code=ErrorCode.TOKEN_EXPIRED)
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and value > now + leeway:
            raise AuthError("token is not valid yet (nbf or iat in the future)")


def is_numeric_date(value: object) -> bool:
    """RFC 7519's NumericDate: a JSON number of seconds (not a string, not a boolean),
    finite and within what a date can be."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and 0 <= value <= MAX_NUMERIC_DATE


def _is_clean_text(value: str) -> bool:
    # A lone surrogate decodes from JSON but cannot be encoded back into a reply.
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return value.isprintable()


def _load_public_key(path: str) -> tuple[Any, str]:
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--jwt-public-key {path}: cannot load a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key, "ES256"
    raise ConfigError(f"--jwt-public-key {path}: only RSA (RS256) and EC P-256 (ES256) keys")


def _load_jwks(path: str) -> jwt.PyJWKSet:
    try:
        return jwt.PyJWKSet.from_json(Path(path).read_text())
    except (OSError, ValueError, jwt.PyJWKSetError, jwt.PyJWKError) as exc:
        raise ConfigError(f"--jwks {path}: cannot load a JWKS: {exc}") from None


def mint_token(
    secret: str,
    sub: str,
    *,
    roles: list[str],
    ttl_s: float,
    now: float,
    channels: list[str] | None = None,
    audience: str = "",
    issuer: str = "",
) -> str:
    """An HS256 token for testing and scripting (``slurmcast token``)."""
    check_secret(secret)
    claims: dict[str, Any] = {"sub": sub, "roles": roles, "iat": int(now), "exp": int(now + ttl_s)}
    if channels is not None:
        claims["channels"] = channels
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
