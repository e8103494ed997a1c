"""A subscription as the application sees it: an async iterator, or a callback.

Messages are queued by the connection's reader, which never runs application
code. Without a callback the application iterates (``async for message in
sub``); with one, a task of the subscription calls it for each message in
order, awaiting it when it is a coroutine function. A callback that raises is
logged and the next message is still delivered: one bad message must not end
a dashboard's stream.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from slurmcast.client.errors import ClientClosed, ClientError
from slurmcast.client.stream import ChannelStream, Message, Position

log = logging.getLogger("slurmcast.client")

#: Called with each message; may be a plain function or a coroutine function.
Callback = Callable[[Message], Awaitable[Any] | Any]


class _Unsubscriber(Protocol):
    async def _unsubscribe(self, subscription: Subscription) -> None: ...


class _End:
    """Queued after the last message."""


_END = _End()


class Subscription:
    """One channel's messages, in order, each once, across reconnections.

    Created by ``SlurmcastClient.subscribe``. Besides the channel's messages
    it yields two synthetic ones: ``{"type": "snapshot", "channel", "position",
    "data": [...]}`` (the channel's state, when asked for, before any delta)
    and ``{"type": "resync", "channel", "position"}`` (the server could not
    replay what was missed: reset your state; a fresh snapshot follows if the
    subscription asked for snapshots).

    Iteration ends after ``unsubscribe()`` or the client's ``close()``, and
    raises the client's error if it gave up (``AuthenticationFailed``).
    """

    def __init__(
        self, owner: _Unsubscriber, stream: ChannelStream, callback: Callback | None = None
    ) -> None:
        self._owner = owner
        self.stream = stream
        self.callback = callback
        self._queue: asyncio.Queue[Message | _End] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._refusal: ClientError | None = None
        self._ended = False
        self._error: ClientError | None = None
        self._pump: asyncio.Task[None] | None = None
        if callback is not None:
            self._pump = asyncio.get_running_loop().create_task(
                self._call_back(callback), name=f"slurmcast-callback-{stream.channel}"
            )

    @property
    def channel(self) -> str:
        return self.stream.channel

    @property
    def position(self) -> Position | None:
        """The last ``(offset, epoch)`` seen: where a reconnection resumes."""
        return self.stream.position

    @property
    def resyncs(self) -> int:
        """Times the server could not recover the stream (each delivered a ``resync``)."""
        return self.stream.resyncs

    @property
    def duplicates(self) -> int:
        """Messages dropped because their offset had already been delivered."""
        return self.stream.duplicates

    @property
    def active(self) -> bool:
        return not self._ended

    async def unsubscribe(self) -> None:
        """Stop receiving; iteration ends after the messages already queued."""
        await self._owner._unsubscribe(self)

    # -- iteration --------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self.callback is not None:
            raise TypeError("this subscription delivers its messages to its callback")
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # every later call ends too
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        return item

    # -- what the client calls --------------------------------------------------

    def _deliver(self, messages: list[Message]) -> None:
        if self._ended:
            return
        for message in messages:
            self._queue.put_nowait(message)

    def _mark_ready(self) -> None:
        self._ready.set()

    def _refuse(self, error: ClientError) -> None:
        """The server refused the subscription: ``subscribe()`` raises, iteration ends."""
        self._refusal = error
        self._ready.set()
        self._end(error)

    async def _wait_ready(self) -> None:
        await self._ready.wait()
        if self._refusal is not None:
            raise self._refusal

    def _end(self, error: ClientError | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._error = error
        if not self._ready.is_set():
            # Nobody has the subscription yet: ``subscribe()`` raises instead.
            self._refusal = error or ClientClosed()
            self._ready.set()
        self._queue.put_nowait(_END)

    async def _call_back(self, callback: Callback) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                return
            try:
                result = callback(item)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception(
                    "subscription callback for %s raised on a %s message; "
                    "delivery continues with the next message",
                    self.channel,
                    item.get("type"),
                )

    def __repr__(self) -> str:
        state = "active" if self.active else "ended"
        return f"<Subscription {self.channel} {state} position={self.position}>"
