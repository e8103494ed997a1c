"""Record every message a client receives, and wait for ones that match."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from support.server import WAIT, Client

Message = dict[str, Any]


class Recorder:
    """Reads a client's messages in the background into ``messages``.

    ``expect`` searches everything received so far, then waits for more, so
    tests can wait for interleaved events in any order.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.messages: list[Message] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        while True:
            message = await self.client.recv(timeout=None)
            async with self._changed:
                self.messages.append(message)
                self._changed.notify_all()

    async def expect(self, predicate: Callable[[Message], bool], timeout: float = WAIT) -> Message:
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                await self._changed.wait()

    def matching(self, predicate: Callable[[Message], bool]) -> list[Message]:
        return [m for m in self.messages if predicate(m)]

    @classmethod
    @contextlib.asynccontextmanager
    async def on(cls, client: Client) -> AsyncIterator[Recorder]:
        recorder = cls(client)
        recorder._task = asyncio.create_task(recorder._read())
        try:
            yield recorder
        finally:
            recorder._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await recorder._task


def job_event(kind: str, job_id: str, status: str | None = None) -> Callable[[Message], bool]:
    def match(m: Message) -> bool:
        return (
            m.get("type") == kind
            and m["data"].get("job_id") == job_id
            and (status is None or m["data"].get("status") == status)
        )

    return match


def notification(kind: str, job_id: str) -> Callable[[Message], bool]:
    def match(m: Message) -> bool:
        return (
            m.get("type") == "notification"
            and m["data"]["type"] == kind
            and m["data"]["data"].get("job_id") == job_id
        )

    return match
