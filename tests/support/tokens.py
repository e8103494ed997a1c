"""Real signing keys and tokens for the security tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRET = "test-secret-0123456789abcdef0123456789abcdef"


def hs256(sub: str = "alice", *, ttl: float = 3600, secret: str = SECRET, **claims: Any) -> str:
    now = time.time()
    body: dict[str, Any] = {"sub": sub, "iat": int(now), "exp": int(now + ttl)}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")


def admin(sub: str = "root", **claims: Any) -> str:
    return hs256(sub, roles=["admin"], **claims)


@dataclass
class KeyPair:
    private: Any
    public_pem_file: Path
    algorithm: str
    kid: str

    def token(self, sub: str = "alice", *, ttl: float = 3600, **claims: Any) -> str:
        now = time.time()
        body: dict[str, Any] = {"sub": sub, "iat": int(now), "exp": int(now + ttl), **claims}
        return jwt.encode(body, self.private, algorithm=self.algorithm, headers={"kid": self.kid})


def make_keys(directory: Path) -> tuple[KeyPair, KeyPair, Path]:
    """An RSA and an EC key pair (PEM public keys on disk) and a JWKS holding both."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pairs = []
    for key, algorithm, kid in ((rsa_key, "RS256", "rsa-1"), (ec_key, "ES256", "ec-1")):
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        path = directory / f"{kid}.pem"
        path.write_bytes(pem)
        pairs.append(KeyPair(key, path, algorithm, kid))
    keys = []
    for pair in pairs:
        algo = (
            jwt.algorithms.RSAAlgorithm if pair.algorithm == "RS256" else jwt.algorithms.ECAlgorithm
        )
        jwk = json.loads(algo.to_jwk(pair.private.public_key()))
        jwk.update(kid=pair.kid, alg=pair.algorithm, use="sig")
        keys.append(jwk)
    jwks = directory / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    return pairs[0], pairs[1], jwks
