"""The node: turns events into publications and routes them through the broker.

Every message, whether raised by a monitor or posted to the HTTP API, takes
the same path: envelope -> encode once -> broker.publish (which positions it
in its channel's history) -> handle_publication -> views and hub. With the
memory broker the last hop is a direct call; with a shared broker every
instance's handler receives it.

The node also answers what needs the history or the current state:
recovery on subscribe (``subscribe``), snapshots and history requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from slurmcast.core.channels import Channel, user_channel
from slurmcast.core.envelope import envelope
from slurmcast.core.events import Event
from slurmcast.core.filters import tags_for
from slurmcast.core.history import HistoryResult, recover
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.core.views import ChannelView, Snapshot, new_view
from slurmcast.hub import Hub, Subscriber
from slurmcast.ports import Broker


@dataclass(frozen=True, slots=True)
class Subscribed:
    """What a new subscription starts with, in the order it is sent.

    ``position`` goes in the ``subscribed`` reply; ``snapshot`` (if any)
    follows, then ``publications`` (replayed and held ones), then live ones.
    """

    position: StreamPosition
    recovered: bool | None = None
    snapshot: Snapshot | None = None
    publications: list[Publication] = field(default_factory=list)


class Node:
    def __init__(self, broker: Broker, hub: Hub, *, recovery_limit: int = 10_000) -> None:
        self.broker = broker
        self.hub = hub
        self.recovery_limit = recovery_limit
        self.published = 0
        self._views: dict[str, ChannelView] = {}

    async def start(self) -> None:
        await self.broker.start(self)

    # -- publishing ------------------------------------------------------------

    def handle_publication(self, publication: Publication) -> int:
        """Called by the broker for every publication, in each channel's offset order."""
        view = self._views.get(publication.channel)
        if view is None and publication.position is not None:
            view = self._view(publication.channel, publication.position.epoch)
        if view is not None and publication.position is not None:
            message = orjson.loads(publication.payload)
            view.apply(message.get("type", ""), message.get("data"), publication.position)
        return self.hub.handle_publication(publication)

    async def publish(
        self, channel: str, event_type: str, data: Any, now: datetime, owner: str | None = None
    ) -> int:
        """Publish one message; returns how many local clients it was written to.

        ``owner`` is the Slurm user the message is about; subscribers who may
        only see their own jobs receive it only if it is theirs.
        """
        payload = orjson.dumps(envelope(channel, event_type, data, now))
        self.published += 1
        result = await self.broker.publish(
            Publication(channel, payload, owner, tags_for(channel, data))
        )
        return result.delivered

    async def publish_events(self, events: Iterable[Event], now: datetime) -> int:
        """Publish events on their channels; a user's notifications also on ``user:<name>``."""
        delivered = 0
        for event in events:
            data = event.data()
            owner = event.owner
            delivered += await self.publish(event.channel.value, event.event_type, data, now, owner)
            if owner is not None and event.channel is Channel.NOTIFICATIONS:
                delivered += await self.publish(
                    user_channel(owner), event.event_type, data, now, owner
                )
        return delivered

    # -- state, history, recovery ----------------------------------------------

    def seed(self, channel: str, items: Iterable[dict[str, Any]]) -> None:
        """Set a channel's state without publishing (a monitor's first poll)."""
        view = self._views.get(channel) or self._view(channel, "")
        if view is not None:
            view.reset(items)

    async def snapshot(self, channel: str) -> Snapshot | None:
        """The channel's current state and the position it corresponds to."""
        view = self._views.get(channel)
        if view is None or view.position.offset == 0:
            # Nothing published yet: the state is as seeded, at the stream's start.
            position = await self.broker.position(channel)
            view = view or self._view(channel, position.epoch)
            if view is None:
                return None
            view.position = position
        return view.snapshot()

    async def history(self, channel: str, *, since: int | None, limit: int) -> HistoryResult:
        return await self.broker.history(channel, since=since, limit=limit)

    async def subscribe(
        self,
        client: Subscriber,
        channel: str,
        *,
        since: StreamPosition | None = None,
        snapshot: bool = False,
    ) -> Subscribed:
        """Subscribe ``client``, recovering from ``since`` and/or with a snapshot.

        Publications are held from the first instant, while history is read
        (an await) and merged: none is missed, duplicated or reordered. The
        caller must write what is returned before its next await.
        """
        self.hub.subscribe(client, channel, hold=True)
        try:
            history = None
            if since is not None:
                history = await self.broker.history(
                    channel, since=since.offset, limit=self.recovery_limit
                )
            recoverable = (
                since is not None and history is not None and recover(since, history, ()).recovered
            )
            state = await self.snapshot(channel) if snapshot and not recoverable else None
            top = None
            if history is None and state is None:
                top = await self.broker.position(channel)
        except BaseException:
            self.hub.unsubscribe(client, channel)
            raise
        held = self.hub.release(client, channel)  # live from here: no await below
        recovered = None
        start = state.position if state is not None else top
        if since is not None and history is not None:
            outcome = recover(since, history, held)
            if outcome.recovered:
                return Subscribed(outcome.position, True, None, outcome.publications)
            recovered = False
            start = start or outcome.position
        assert start is not None
        later = [p for p in held if p.offset > start.offset]
        return Subscribed(start, recovered, state, later)

    def _view(self, channel: str, epoch: str) -> ChannelView | None:
        view = new_view(channel, epoch)
        if view is not None:
            self._views[channel] = view
        return view

    async def close(self) -> None:
        await self.broker.close()
