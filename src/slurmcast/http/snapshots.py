"""``GET /snapshot/<channel>``: a channel's current state, for scripts.

The same state a WebSocket client gets with ``"snapshot": true``, with the
position it corresponds to, filtered the same way (visibility, then the
query string as a filter: ``?user=alice&status=RUNNING&status=PENDING``).
"""

from __future__ import annotations

from aiohttp import web

from slurmcast.core.channels import parse_channel
from slurmcast.core.filters import parse_filter, visible_items
from slurmcast.core.views import SNAPSHOT_CHANNELS
from slurmcast.errors import ErrorCode, ProtocolError
from slurmcast.http.context import GUARD_KEY, NODE_KEY, POLICY_KEY
from slurmcast.http.errors import HttpError
from slurmcast.http.responses import json_response


async def snapshot(request: web.Request) -> web.Response:
    principal = request.app[GUARD_KEY].reader(request)
    policy = request.app[POLICY_KEY]
    try:
        channel = parse_channel(request.match_info["channel"])
        wanted = {key: request.query.getall(key) for key in request.query}
        state_filter = parse_filter(channel, wanted)
    except ProtocolError as exc:
        raise HttpError(400, exc.code, exc.message) from None
    if channel not in SNAPSHOT_CHANNELS:
        raise HttpError(
            404,
            ErrorCode.SNAPSHOT_NOT_AVAILABLE,
            f"channel {channel} has no snapshot (channels with one: "
            f"{', '.join(sorted(SNAPSHOT_CHANNELS))})",
        )
    denial = policy.subscribe_denial(principal, channel)
    if denial is not None:
        raise HttpError(403, ErrorCode.FORBIDDEN, denial)
    state = await request.app[NODE_KEY].snapshot(channel)
    assert state is not None
    items = visible_items(state, principal, policy, state_filter)
    return json_response({"channel": channel, "position": state.position.to_dict(), "data": items})
