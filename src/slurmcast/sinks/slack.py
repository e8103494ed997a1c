"""Slack-compatible incoming webhooks: Slack and Mattermost take the same JSON.

The body is ``Rendered.slack_payload`` (``{"text": ..., "attachments": [...]}``), already
escaped so that it mentions nobody and links nowhere. The URL is the user's (checked by
``core.notify.ssrf``) or the operator's default; it is a credential in itself (whoever knows
it can post), so it never appears in a failure's message: only its host does.
"""

from __future__ import annotations

from typing import Final

import orjson

from slurmcast.sinks.base import Outgoing, SendResult
from slurmcast.sinks.posting import (
    Clock,
    HttpPoster,
    HttpSinkSettings,
    Resolve,
    system_resolve,
    utc_now,
)


class SlackSink:
    """POSTs a delivery's Slack payload to its incoming-webhook URL."""

    kind: Final = "slack"

    def __init__(
        self,
        settings: HttpSinkSettings,
        *,
        resolve: Resolve = system_resolve,
        clock: Clock = utc_now,
    ) -> None:
        self._poster = HttpPoster(settings, resolve=resolve, clock=clock)

    async def send(self, outgoing: Outgoing) -> SendResult:
        """Post it.

        Raises:
            PermanentFailure: refused URL or address, 3xx, 4xx but 408/429.
            TemporaryFailure: timeouts, connection failures, 408, 429, 5xx.
        """
        url = self._poster.target_url(outgoing.target)
        body = orjson.dumps(outgoing.message.slack_payload)
        return await self._poster.post(url, body, {})
