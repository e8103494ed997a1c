"""The node: turns events into publications and routes them through the broker.

Every message, whether raised by a monitor or posted to the HTTP API, takes
the same path: envelope -> encode once -> broker.publish -> handle_publication
-> hub. With the memory broker the last hop is a direct call; with a shared
broker every instance's handler receives it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from slurmcast.core.channels import Channel, user_channel
from slurmcast.core.envelope import envelope
from slurmcast.core.events import Event
from slurmcast.core.publication import Publication
from slurmcast.hub import Hub
from slurmcast.ports import Broker


class Node:
    def __init__(self, broker: Broker, hub: Hub) -> None:
        self.broker = broker
        self.hub = hub
        self.published = 0

    async def start(self) -> None:
        await self.broker.start(self)

    def handle_publication(self, publication: Publication) -> int:
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
        return await self.broker.publish(Publication(channel, payload, owner))

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

    async def close(self) -> None:
        await self.broker.close()
