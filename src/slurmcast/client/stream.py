"""One subscription's view of its channel's stream, without I/O.

``ChannelStream`` builds the subscribe request (with ``since`` = the last
position seen, once there is one) and turns what the server sends for the
channel into what the application receives:

- the ``subscribed`` reply: a ``resync`` marker when the server could not
  recover (``recovered: false``), since the application's state has a gap;
- ``snapshot`` parts: one synthetic ``snapshot`` message with every item;
- channel messages: in order, each offset once. A message whose offset is not
  above the last one seen (same epoch) is dropped.

The connection feeds it; nothing here awaits or touches a socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

#: A decoded JSON object from the server, or a synthetic one from the client.
Message = dict[str, Any]

#: Pseudo-channel of messages published to every client (``POST /broadcast`` without channel).
ALL_CHANNEL = "all"

#: The synthetic message types the client adds to a subscription's stream.
SNAPSHOT = "snapshot"
RESYNC = "resync"


class Position(NamedTuple):
    """Where a message sits in its channel: ``offset`` counts, ``epoch`` names the history."""

    offset: int
    epoch: str

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}

    @classmethod
    def from_dict(cls, value: Any) -> Position | None:
        """A position from a reply's ``{"offset", "epoch"}``; None if absent or malformed."""
        if not isinstance(value, Mapping):
            return None
        offset, epoch = value.get("offset"), value.get("epoch")
        if isinstance(offset, bool) or not isinstance(offset, int) or not isinstance(epoch, str):
            return None
        return cls(offset, epoch)


def is_publication(message: Mapping[str, Any]) -> bool:
    """Channel messages carry a ``timestamp``; replies (and snapshot parts) never do."""
    return "timestamp" in message and "channel" in message


class ChannelStream:
    """Positions, de-duplication, snapshot assembly and resync markers for one channel.

    Args:
        channel: the channel name.
        snapshot: whether the application wants the channel's state first (and again
            after every resync).
        filter: the server-side filter, sent with every (re)subscription.
        since: where to start: messages after this position are replayed, if the
            server still has them.

    Attributes:
        position: the last position seen (None before the first reply).
        resyncs: how many times the server could not recover the stream.
        duplicates: messages dropped because their offset was already seen.
    """

    def __init__(
        self,
        channel: str,
        *,
        snapshot: bool = False,
        filter: Mapping[str, Any] | None = None,
        since: Position | None = None,
    ) -> None:
        self.channel = channel
        self.wants_snapshot = snapshot
        self.filter = dict(filter) if filter else None
        self.position = since
        self.resyncs = 0
        self.duplicates = 0
        self._snapshot_due = False
        self._parts: list[Any] = []

    def subscribe_request(self, request_id: int) -> Message:
        """The subscribe request for a new connection; resets any half-received snapshot."""
        self._snapshot_due = False
        self._parts = []
        request: Message = {"type": "subscribe", "channel": self.channel, "id": request_id}
        if self.position is not None:
            request["since"] = self.position.to_dict()
        if self.wants_snapshot:
            # With since, the server sends a snapshot only when it cannot recover.
            request["snapshot"] = True
        if self.filter:
            request["filter"] = self.filter
        return request

    def on_subscribed(self, reply: Mapping[str, Any]) -> list[Message]:
        """The ``subscribed`` reply; returns the messages to deliver (a resync marker or none)."""
        recovered = reply.get("recovered")
        position = Position.from_dict(reply.get("position"))
        delivered: list[Message] = []
        if recovered is True:
            # The missed messages follow, each above the position we already hold:
            # moving it to the reply's position now would drop them as duplicates.
            self._snapshot_due = False
            return delivered
        if recovered is False:
            self.resyncs += 1
            marker: Message = {"type": RESYNC, "channel": self.channel}
            if position is not None:
                marker["position"] = position.to_dict()
            delivered.append(marker)
        if position is not None:
            self.position = position
        self._snapshot_due = self.wants_snapshot
        return delivered

    def on_snapshot(self, part: Mapping[str, Any]) -> list[Message]:
        """One ``snapshot`` part; the last one yields the whole snapshot as one message."""
        if not self._snapshot_due:
            return []
        items = part.get("data")
        if isinstance(items, list):
            self._parts.extend(items)
        number, parts = part.get("part", 1), part.get("parts", 1)
        if isinstance(number, int) and isinstance(parts, int) and number < parts:
            return []
        items, self._parts = self._parts, []
        self._snapshot_due = False
        position = Position.from_dict(part.get("position"))
        if position is not None:
            self.position = position
        return [
            {
                "type": SNAPSHOT,
                "channel": self.channel,
                "position": part.get("position"),
                "data": items,
            }
        ]

    def on_publication(self, message: Message) -> list[Message]:
        """A channel message: delivered unless its offset was already seen."""
        offset, epoch = message.get("offset"), message.get("epoch")
        if isinstance(offset, bool) or not isinstance(offset, int) or not isinstance(epoch, str):
            return [message]  # a message without a position cannot be a duplicate
        last = self.position
        if last is not None and epoch == last.epoch and offset <= last.offset:
            self.duplicates += 1
            return []
        self.position = Position(offset, epoch)
        return [message]
