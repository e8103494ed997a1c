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

    async def publish(self, channel: str, event_type: str, data: Any, now: datetime) -> int:
        """Publish one message; returns how many local clients it was written to."""
        payload = orjson.dumps(envelope(channel, event_type, data, now))
        self.published += 1
        return await self.broker.publish(Publication(channel, payload))

    async def publish_events(self, events: Iterable[Event], now: datetime) -> int:
        delivered = 0
        for event in events:
            delivered += await self.publish(
                event.channel.value, event.event_type, event.data(), now
            )
        return delivered

    async def close(self) -> None:
        await self.broker.close()
