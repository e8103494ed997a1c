"""Requests waiting for their reply, matched by ``id``.

The server answers a connection's requests in the order they were sent, and
copies each request's ``id`` into its reply. A ``rate_limited`` refusal of a
frame the server could not read has no ``id``; since replies are ordered it
answers the oldest request still waiting.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any

from slurmcast.client.errors import ClientError
from slurmcast.client.stream import Message


def error_from_reply(reply: Mapping[str, Any]) -> ClientError:
    """The typed error for a ``{"type": "error", "code", "message"}`` reply."""
    retry_after = reply.get("retry_after")
    return ClientError(
        str(reply.get("code", "unknown")),
        str(reply.get("message", "")),
        temporary=retry_after is not None,
        retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
    )


class PendingRequests:
    """Futures of the requests sent on the current connection, oldest first."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Message]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def new(self) -> tuple[int, asyncio.Future[Message]]:
        """A fresh request id and the future its reply will complete."""
        request_id = next(self._ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return request_id, future

    def discard(self, request_id: int) -> None:
        """Stop waiting (the caller gave up); a late reply is ignored."""
        self._waiting.pop(request_id, None)

    def resolve(self, reply: Message) -> bool:
        """Complete the request ``reply`` answers; False if nobody waits for it."""
        request_id = reply.get("id")
        if not isinstance(request_id, int):
            return False
        future = self._waiting.pop(request_id, None)
        if future is None or future.done():
            return False
        if reply.get("type") == "error":
            future.set_exception(error_from_reply(reply))
        else:
            future.set_result(reply)
        return True

    def fail_oldest(self, error: ClientError) -> bool:
        """Fail the oldest waiting request (an error reply without ``id``)."""
        while self._waiting:
            request_id = next(iter(self._waiting))
            future = self._waiting.pop(request_id)
            if not future.done():
                future.set_exception(error)
                return True
        return False

    def fail_all(self, error: ClientError) -> None:
        """The connection is gone: no reply will come for any of them."""
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(error)
