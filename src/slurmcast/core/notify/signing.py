"""Signatures of generic webhook deliveries: HMAC-SHA256 over a timestamp and the body.

Each delivery carries three headers::

    X-Slurmcast-Timestamp: 1796531946
    X-Slurmcast-Signature: v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
    X-Slurmcast-Delivery: 0b6f2c1e-...     (the idempotency key: the same on every retry)

``X-Slurmcast-Timestamp`` is the sending time in Unix seconds. The signature is the lower-case
hex HMAC-SHA256, keyed with the webhook's secret, of the ASCII timestamp, a dot, then the raw
request body bytes exactly as received (``f"{timestamp}.".encode() + body``). A receiver:

1. recomputes it and compares in constant time (any ``v1=`` entry may match: while a secret
   is rotated, the header may hold several, comma-separated);
2. refuses a timestamp more than 5 minutes from its clock, either way, so a captured request
   cannot be replayed later;
3. keeps the delivery ids it handled and ignores repeats: a retry after a timeout may
   deliver the same notification twice, with the same id, up to an hour later (longer when
   a person retries a dead letter): keep them a day, or under a unique key.

The delivery id is not covered by the signature; the body carries it too
(``delivery_id``) where a receiver needs it authenticated.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime

TIMESTAMP_HEADER = "X-Slurmcast-Timestamp"
SIGNATURE_HEADER = "X-Slurmcast-Signature"
DELIVERY_HEADER = "X-Slurmcast-Delivery"
#: The scheme's version: a new construction would be ``v2=`` beside it, never a change of v1.
VERSION = "v1"
#: The default replay window: how far a timestamp may be from the receiver's clock.
TOLERANCE_S = 300
# A Unix time in seconds fits in 11 digits until the year 5138; longer is not a timestamp.
_MAX_TIMESTAMP_DIGITS = 11
_MAX_SIGNATURES = 8


def signature(body: bytes, secret: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``{timestamp}.{body}``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(
    body: bytes, secret: bytes, timestamp: int, *, delivery_id: str | None = None
) -> dict[str, str]:
    """The headers of a signed delivery (the delivery header when ``delivery_id`` is given).

    Raises:
        ValueError: an empty secret (a signature anyone can compute) or a negative timestamp.
    """
    if not secret:
        raise ValueError("the webhook secret is empty")
    if timestamp < 0:
        raise ValueError("the timestamp is negative")
    headers = {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{VERSION}={signature(body, secret, timestamp)}",
    }
    if delivery_id is not None:
        headers[DELIVERY_HEADER] = delivery_id
    return headers


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: bytes,
    now: datetime,
    tolerance_s: int = TOLERANCE_S,
) -> bool:
    """Whether a request is a fresh delivery signed with ``secret``.

    Header names match without case (HTTP's rule). False for a missing or malformed header,
    a timestamp further than ``tolerance_s`` seconds from ``now`` (past or future; exactly
    ``tolerance_s`` passes), or no matching ``v1`` signature.
    """
    if not secret:
        return False
    timestamp_text = _header(headers, TIMESTAMP_HEADER)
    signature_text = _header(headers, SIGNATURE_HEADER)
    if timestamp_text is None or signature_text is None:
        return False
    timestamp_text = timestamp_text.strip()
    if not (
        timestamp_text.isascii()
        and timestamp_text.isdigit()
        and len(timestamp_text) <= _MAX_TIMESTAMP_DIGITS
    ):
        return False
    timestamp = int(timestamp_text)
    if abs(now.timestamp() - timestamp) > tolerance_s:
        return False
    expected = signature(body, secret, timestamp).encode("ascii")
    entries = signature_text.split(",")
    if len(entries) > _MAX_SIGNATURES:
        return False
    matched = False
    for entry in entries:
        scheme, _, value = entry.strip().partition("=")
        if scheme != VERSION or not value.isascii():
            continue
        # Every entry is compared (no early exit), each in constant time.
        matched |= hmac.compare_digest(expected, value.encode("ascii"))
    return matched


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    found = [value for key, value in headers.items() if key.lower() == wanted]
    # Two copies of a header are ambiguous (which one did the signer mean?): refuse.
    return found[0] if len(found) == 1 else None
