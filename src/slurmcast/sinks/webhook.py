"""Generic JSON webhooks, signed (``core.notify.signing``).

The body is ``Rendered.webhook_payload`` with ``delivery_id`` set to the delivery's
idempotency key, serialised once; the headers sign exactly those bytes:

    X-Slurmcast-Timestamp: <Unix seconds, from the injected clock>
    X-Slurmcast-Signature: v1=<hex HMAC-SHA256 of "<timestamp>." + body>
    X-Slurmcast-Delivery: <idempotency key: the same on every retry>

Each attempt is signed anew (a retry an hour later carries a fresh timestamp, inside the
receiver's replay window), and the receiver drops a second delivery by its key.
"""

from __future__ import annotations

from typing import Final

import orjson

from slurmcast.core.notify.signing import sign
from slurmcast.sinks.base import Outgoing, Secret, SendResult
from slurmcast.sinks.posting import (
    Clock,
    HttpPoster,
    HttpSinkSettings,
    Resolve,
    system_resolve,
    utc_now,
)


class WebhookSink:
    """POSTs a delivery's webhook payload, signed with the operator's secret."""

    kind: Final = "webhook"

    def __init__(
        self,
        settings: HttpSinkSettings,
        secret: Secret,
        *,
        resolve: Resolve = system_resolve,
        clock: Clock = utc_now,
    ) -> None:
        if not secret:
            raise ValueError("the webhook secret is empty")
        self._poster = HttpPoster(settings, resolve=resolve, clock=clock)
        self._secret = secret.reveal().encode("utf-8")
        self._clock = clock

    def body(self, outgoing: Outgoing) -> bytes:
        """The exact bytes sent (and signed)."""
        payload = {**outgoing.message.webhook_payload, "delivery_id": outgoing.idempotency_key}
        return orjson.dumps(payload)

    async def send(self, outgoing: Outgoing) -> SendResult:
        """Sign and post it.

        Raises:
            PermanentFailure: refused URL or address, 3xx, 4xx but 408/429.
            TemporaryFailure: timeouts, connection failures, 408, 429, 5xx.
        """
        url = self._poster.target_url(outgoing.target)
        body = self.body(outgoing)
        timestamp = int(self._clock().timestamp())
        headers = sign(body, self._secret, timestamp, delivery_id=outgoing.idempotency_key)
        return await self._poster.post(url, body, headers)
