"""JWT verification with PyJWT: HS256 with a shared secret, RS256/ES256 with a public key or JWKS.

A token must carry ``exp`` and ``sub`` (the Slurm user name); ``nbf`` and
``iat`` are honoured with a small leeway; ``aud`` and ``iss`` are checked when
configured. The algorithm list is fixed by the configured key, never taken
from the token, so ``alg: none`` and HS/RS confusion are refused.
"""

from __future__ import annotations

import logging
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


@dataclass(frozen=True, slots=True)
class JwtSettings:
    secret: str = ""
    public_key_file: str = ""
    jwks_file: str = ""
    audience: str = ""
    issuer: str = ""
    leeway: float = DEFAULT_LEEWAY


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
        key, algorithms = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.settings.audience or None,
                issuer=self.settings.issuer or None,
                leeway=self.settings.leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", code=ErrorCode.TOKEN_EXPIRED) from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token is not valid yet (nbf or iat in the future)") from None
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
        return principal_from_claims(claims)

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


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not is_valid_user_name(sub):
        raise AuthError("token 'sub' must be a Slurm user name")
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
        roles=parse_roles(claims.get("roles", [])),
        channels=channels,
        expires_at=float(exp) if isinstance(exp, int | float) else None,
    )


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
