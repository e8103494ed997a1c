"""The client's subscriptions, and where each frame from the server belongs.

At most one subscription per channel (the server holds one per connection).
The registry remembers on which connection (its *generation*) each was last
sent, so a new connection resends every one exactly once, and which
subscribe requests wait for their reply. No I/O: the connection sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from slurmcast.client.errors import ClientError
from slurmcast.client.stream import ALL_CHANNEL, Message, is_publication
from slurmcast.client.subscription import Subscription


class ClientSubscriptions:
    def __init__(self) -> None:
        self._by_channel: dict[str, Subscription] = {}
        self._sent_on: dict[str, int] = {}
        self._awaiting: dict[int, Subscription] = {}

    def __contains__(self, channel: str) -> bool:
        return channel in self._by_channel

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._by_channel.values()))

    def by_channel(self) -> dict[str, Subscription]:
        return dict(self._by_channel)

    def holds(self, sub: Subscription) -> bool:
        """Whether ``sub`` is the live subscription of its channel."""
        return self._by_channel.get(sub.channel) is sub

    def add(self, sub: Subscription) -> None:
        if sub.channel in self._by_channel:
            raise ValueError(f"already subscribed to {sub.channel}; unsubscribe first")
        self._by_channel[sub.channel] = sub

    def remove(self, sub: Subscription) -> bool:
        """Forget ``sub``; False if it was not held (already removed or replaced)."""
        if not self.holds(sub):
            return False
        del self._by_channel[sub.channel]
        self._sent_on.pop(sub.channel, None)
        return True

    def due(self, generation: int) -> list[Subscription]:
        """Subscriptions not yet sent on connection ``generation`` (``all`` is never sent)."""
        return [
            sub
            for channel, sub in self._by_channel.items()
            if channel != ALL_CHANNEL and self._sent_on.get(channel) != generation
        ]

    def sending(self, sub: Subscription, generation: int, request_id: int) -> None:
        self._sent_on[sub.channel] = generation
        self._awaiting[request_id] = sub

    def connection_lost(self) -> None:
        """Replies to the requests in flight will never come."""
        self._awaiting.clear()

    def route(self, message: Message) -> bool:
        """Deliver a channel message or snapshot part; False for any other frame."""
        if is_publication(message):
            sub = self._get(message.get("channel"))
            if sub is not None:
                sub._deliver(sub.stream.on_publication(message))
            return True
        if message.get("type") == "snapshot":
            sub = self._get(message.get("channel"))
            if sub is not None:
                sub._deliver(sub.stream.on_snapshot(message))
            return True
        return False

    def reply(self, message: Message) -> None:
        """A reply: a ``subscribed`` one sets its subscription's position first.

        It must be handled before the next frame is read: the replayed
        messages come right behind it.
        """
        request_id = message.get("id")
        if not isinstance(request_id, int):
            return
        sub = self._awaiting.pop(request_id, None)
        if sub is not None and message.get("type") == "subscribed" and self.holds(sub):
            sub._deliver(sub.stream.on_subscribed(message))

    def end_all(self, error: ClientError | None) -> None:
        """The client closed (None) or gave up (``error``): end every subscription."""
        subscriptions = list(self._by_channel.values())
        self._by_channel.clear()
        self._sent_on.clear()
        self._awaiting.clear()
        for sub in subscriptions:
            sub._end(error)

    def _get(self, channel: Any) -> Subscription | None:
        return self._by_channel.get(channel) if isinstance(channel, str) else None
