"""Who is subscribed to what: channel -> clients and their subscription records."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Set
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from slurmcast.core.subscription import Subscription

C = TypeVar("C", bound=Hashable)

_NONE: Mapping[Any, Subscription] = MappingProxyType({})


class SubscriptionRegistry(Generic[C]):
    """Both directions of the subscription relation, kept consistent.

    Lookups by channel are what every publication needs, so they return the
    live mapping without copying; callers that may mutate while iterating copy.
    """

    def __init__(self) -> None:
        self._by_channel: dict[str, dict[C, Subscription]] = {}
        self._by_client: dict[C, set[str]] = {}

    def add(self, client: C, subscription: Subscription) -> bool:
        """Subscribe; returns False (and keeps the old record) if the client already was."""
        channel = subscription.channel
        channels = self._by_client.setdefault(client, set())
        if channel in channels:
            return False
        channels.add(channel)
        self._by_channel.setdefault(channel, {})[client] = subscription
        return True

    def get(self, client: C, channel: str) -> Subscription | None:
        return self._by_channel.get(channel, {}).get(client)

    def remove(self, client: C, channel: str) -> bool:
        """Unsubscribe; returns False if the client was not subscribed."""
        channels = self._by_client.get(client)
        if channels is None or channel not in channels:
            return False
        channels.discard(channel)
        if not channels:
            del self._by_client[client]
        subscribers = self._by_channel[channel]
        del subscribers[client]
        if not subscribers:
            del self._by_channel[channel]
        return True

    def remove_client(self, client: C) -> list[str]:
        """Drop every subscription of a client; returns the channels it had."""
        channels = self._by_client.pop(client, set())
        for channel in channels:
            subscribers = self._by_channel[channel]
            del subscribers[client]
            if not subscribers:
                del self._by_channel[channel]
        return sorted(channels)

    def subscribers(self, channel: str) -> Mapping[C, Subscription]:
        subscriptions = self._by_channel.get(channel)
        return subscriptions if subscriptions is not None else _NONE

    def channels_of(self, client: C) -> Set[str]:
        return self._by_client.get(client, frozenset())

    def count_matching(self, accept: Callable[[str], bool]) -> int:
        """Subscriptions, summed over every channel whose name ``accept`` accepts."""
        return sum(len(subs) for channel, subs in self._by_channel.items() if accept(channel))

    def counts(self, channels: Iterable[str]) -> dict[str, int]:
        """Subscriber count of each named channel (0 for channels nobody watches)."""
        return {channel: len(self._by_channel.get(channel, ())) for channel in channels}
