"""The node: turns events into publications and routes them through the broker.

Every message, whether raised by a monitor or posted to the HTTP API, takes
the same path: envelope -> encode once -> broker.publish (which positions it
in its channel's history and applies its state change) -> hub.handle_publication. With the
memory broker the last hop is a direct call; with a shared broker every
instance's handler receives it.

The node also answers what needs the history or the current state:
recovery on subscribe (``subscribe``), snapshots and history requests.
Channel state (what snapshots hold) lives in the broker, changed in the
same atomic step as the history, so every instance answers the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
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
from slurmcast.core.subscription import Subscription, SubscriptionStart
from slurmcast.core.views import Snapshot, state_change, state_items
from slurmcast.errors import PublishError
from slurmcast.hub import COUNTED_CHANNELS, PRIVATE_CHANNELS, Hub
from slurmcast.observability.histogram import PUBLISH_BUCKETS, Histogram
from slurmcast.ports import Batch, Broker, Subscriber


class Node:
    def __init__(self, broker: Broker, hub: Hub, *, recovery_limit: int = 10_000) -> None:
        self.broker = broker
        self.hub = hub
        self.recovery_limit = recovery_limit
        self.published = 0
        #: Publications this instance committed, per channel (``user:`` ones under
        #: ``user``), the time each broker call took and the calls that failed:
        #: plain figures, read by ``GET /metrics``.
        self.published_per_channel: dict[str, int] = {}
        self.publish_seconds = Histogram(PUBLISH_BUCKETS)
        self.publish_failures = 0

    async def start(self) -> None:
        # The broker hands every publication, in each channel's offset order,
        # straight to this instance's clients.
        await self.broker.start(self.hub)

    # -- publishing ------------------------------------------------------------

    def publication(
        self, channel: str, event_type: str, data: Any, now: datetime, owner: str | None = None
    ) -> Publication:
        """One message, encoded once, with what it does to its channel's state."""
        payload = orjson.dumps(envelope(channel, event_type, data, now))
        return Publication(
            channel,
            payload,
            owner,
            tags_for(channel, data),
            state=state_change(channel, event_type, data),
        )

    async def publish(
        self, channel: str, event_type: str, data: Any, now: datetime, owner: str | None = None
    ) -> int:
        """Publish one message; returns how many local clients it was written to.

        ``owner`` is the Slurm user the message is about; subscribers who may
        only see their own jobs receive it only if it is theirs.
        """
        publication = self.publication(channel, event_type, data, now, owner)
        started = time.perf_counter()
        try:
            result = await self.broker.publish(publication)
        except PublishError:
            self.publish_failures += 1
            raise
        finally:
            self.publish_seconds.observe(time.perf_counter() - started)
        self.published += 1
        self._count((publication,))
        return result.delivered

    def publications_of(self, events: Iterable[Event], now: datetime) -> list[Publication]:
        """Events as publications; a user's notifications also on ``user:<name>``."""
        publications = []
        for event in events:
            data = event.data()
            owner = event.owner
            channel = event.channel.value
            publications.append(self.publication(channel, event.event_type, data, now, owner))
            if owner is not None and event.channel is Channel.NOTIFICATIONS:
                publications.append(
                    self.publication(user_channel(owner), event.event_type, data, now, owner)
                )
        return publications

    def publish_locally(self, events: Iterable[Event], now: datetime) -> int:
        """Events for this instance's clients only, without a position: for an
        instance's own conditions when the broker itself cannot be reached."""
        return sum(self.hub.handle_publication(p) for p in self.publications_of(events, now))

    async def publish_events(self, events: Iterable[Event], now: datetime) -> int:
        """Publish events at once (see ``commit``); returns how many there were."""
        return len(await self.commit(events, now))

    async def commit(
        self,
        events: Iterable[Event],
        now: datetime,
        *,
        seeds: Mapping[str, Iterable[dict[str, Any]]] | None = None,
        checkpoint: Mapping[str, bytes] | None = None,
        fence: str | None = None,
    ) -> list[Publication]:
        """Publish events, replace channel states (``seeds``) and store the
        monitor's ``checkpoint``, all or nothing (``Broker.commit``)."""
        batch = Batch(
            self.publications_of(events, now),
            {channel: state_items(channel, items) for channel, items in (seeds or {}).items()},
            checkpoint or {},
            fence,
        )
        if not (batch.publications or batch.seeds or batch.checkpoint):
            return []
        started = time.perf_counter()
        try:
            positioned = await self.broker.commit(batch)
        except PublishError:
            self.publish_failures += 1
            raise
        finally:
            self.publish_seconds.observe(time.perf_counter() - started)
        self.published += len(positioned)
        self._count(positioned)
        return positioned

    def _count(self, publications: Iterable[Publication]) -> None:
        counts = self.published_per_channel
        for publication in publications:
            channel = publication.channel
            label = channel if channel in COUNTED_CHANNELS else PRIVATE_CHANNELS
            counts[label] = counts.get(label, 0) + 1

    async def checkpoint(self) -> dict[str, bytes]:
        """The checkpoint stored by the last ``commit`` (empty if none): where a
        new poller resumes."""
        return await self.broker.checkpoint()

    # -- state, history, recovery ----------------------------------------------

    async def snapshot(self, channel: str) -> Snapshot | None:
        """The channel's current state and the position it corresponds to."""
        return await self.broker.snapshot(channel)

    async def history(self, channel: str, *, since: int | None, limit: int) -> HistoryResult:
        return await self.broker.history(channel, since=since, limit=limit)

    async def subscribe(
        self,
        client: Subscriber,
        subscription: Subscription,
        *,
        since: StreamPosition | None = None,
        snapshot: bool = False,
    ) -> SubscriptionStart:
        """Subscribe ``client``, recovering from ``since`` and/or with a snapshot.

        Publications are held from the first instant, while history is read
        (an await) and merged: none is missed, duplicated or reordered. The
        caller must write what is returned before its next await. With a
        shared broker, publications the history or snapshot already covers
        may still be on their way to this instance: the hub drops them.
        """
        channel = subscription.channel
        self.hub.subscribe(client, subscription, hold=True)
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
            self.unsubscribe(client, channel)
            raise
        # Live from here: nothing below awaits, so nothing comes in between.
        held = self.hub.release(client, channel)
        start = self._start(since, history, held, state, top)
        last = start.publications[-1].position if start.publications else None
        position = last if last is not None and last.offset > start.position.offset else None
        position = position or start.position
        subscription.floor = position.offset
        self.broker.track(channel, position)
        return start

    @staticmethod
    def _start(
        since: StreamPosition | None,
        history: HistoryResult | None,
        held: list[Publication],
        state: Snapshot | None,
        top: StreamPosition | None,
    ) -> SubscriptionStart:
        recovered = None
        start = state.position if state is not None else top
        if since is not None and history is not None:
            outcome = recover(since, history, held)
            if outcome.recovered:
                return SubscriptionStart(outcome.position, True, None, outcome.publications)
            recovered = False
            start = start or outcome.position
        assert start is not None
        later = [p for p in held if p.offset > start.offset]
        return SubscriptionStart(start, recovered, state, later)

    def unsubscribe(self, client: Subscriber, channel: str) -> None:
        self.hub.unsubscribe(client, channel)
        self._forget_unwatched([channel])

    def disconnect(self, client: Subscriber) -> list[str]:
        """Forget a client; returns the channels it was subscribed to."""
        channels = self.hub.disconnect(client)
        self._forget_unwatched(channels)
        return channels

    def _forget_unwatched(self, channels: Iterable[str]) -> None:
        # A channel nobody here follows any more costs the broker nothing.
        for channel in channels:
            if not self.hub.watched(channel):
                self.broker.untrack(channel)

    async def close(self) -> None:
        await self.broker.close()
