"""``POST /broadcast`` (admin): publish a message on a channel, or to every client.

A message with a ``type`` keeps it, as the seed's did (``core.broadcasts``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web

from slurmcast.core.broadcasts import broadcast_message
from slurmcast.core.channels import CHANNEL_NAMES
from slurmcast.core.publication import ALL_CLIENTS
from slurmcast.errors import ErrorCode, ProtocolError
from slurmcast.http.bodies import json_object
from slurmcast.http.context import GUARD_KEY, NODE_KEY
from slurmcast.http.errors import HttpError
from slurmcast.http.responses import json_response
from slurmcast.logs import context

log = logging.getLogger("slurmcast.http")


async def broadcast(request: web.Request) -> web.Response:
    """Publish ``message`` on ``channel`` (or to every client with ``"all"``)."""
    who, principal = request.app[GUARD_KEY].admin(request)
    body = await json_object(request)
    channel = body.get("channel", ALL_CLIENTS)
    if not isinstance(channel, str):
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'channel' must be a string")
    if channel != ALL_CLIENTS and channel not in CHANNEL_NAMES:
        known = ", ".join(sorted(CHANNEL_NAMES))
        raise HttpError(
            400,
            ErrorCode.UNKNOWN_CHANNEL,
            f"unknown channel {channel[:64]!r}; use one of {known}, or 'all'",
        )
    allowed = principal.channels if principal is not None else None
    if allowed is not None and channel not in allowed:
        # The token's channel allow-list binds admins too (as on the WebSocket).
        raise HttpError(403, ErrorCode.FORBIDDEN, f"your token does not allow channel {channel}")
    if "message" not in body or body["message"] is None:
        raise HttpError(400, ErrorCode.MISSING_MESSAGE, "body needs a 'message' object")
    message = body["message"]
    if not isinstance(message, dict):
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'message' must be a JSON object")
    try:
        event_type, data = broadcast_message(message)
    except ProtocolError as exc:
        raise HttpError(400, exc.code, exc.message) from None
    node = request.app[NODE_KEY]
    delivered = await node.publish(channel, event_type, data, datetime.now(UTC))
    log.info(
        "HTTP broadcast (%s) on %s by %s from %s delivered to %d",
        event_type,
        channel,
        who,
        request.remote,
        delivered,
        extra=context(
            channel=channel,
            remote=request.remote,
            user=principal.user if principal is not None else None,
        ),
    )
    return json_response({"success": True, "channel": channel, "delivered": delivered})
