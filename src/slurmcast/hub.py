"""Local fan-out: deliver one publication to this instance's clients.

The hub encodes each publication's wire frame once and hands the same bytes
to every subscriber; subscribers write without awaiting, so one slow client
cannot delay the next (each enforces its own buffer bound).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Set
from typing import Protocol

from slurmcast.core.channels import CHANNEL_NAMES
from slurmcast.core.publication import Publication
from slurmcast.core.registry import SubscriptionRegistry


class Subscriber(Hashable, Protocol):
    """A connected client as the hub sees it."""

    def write_frame(self, frame: bytes) -> bool:
        """Queue a prepared frame without blocking; False if the client is gone."""

    def may_see(self, publication: Publication) -> bool:
        """Whether this client may receive a message about ``publication.owner``."""


class Hub:
    """This instance's connected clients and their subscriptions."""

    def __init__(self, encode_frame: Callable[[bytes], bytes]) -> None:
        self._encode_frame = encode_frame
        self._clients: set[Subscriber] = set()
        self._registry: SubscriptionRegistry[Subscriber] = SubscriptionRegistry()
        self._users: dict[Subscriber, str] = {}
        self._per_user: Counter[str] = Counter()

    def connect(self, client: Subscriber) -> None:
        self._clients.add(client)

    def disconnect(self, client: Subscriber) -> list[str]:
        """Forget a client; returns the channels it was subscribed to."""
        self._clients.discard(client)
        user = self._users.pop(client, None)
        if user is not None:
            self._per_user[user] -= 1
            if not self._per_user[user]:
                del self._per_user[user]
        return self._registry.remove_client(client)

    def set_user(self, client: Subscriber, user: str) -> None:
        """Record which user a client acts for (per-user connection limits)."""
        previous = self._users.get(client)
        if previous == user:
            return
        if previous is not None:
            self._per_user[previous] -= 1
        self._users[client] = user
        self._per_user[user] += 1

    def connections_of(self, user: str) -> int:
        return self._per_user.get(user, 0)

    def subscribe(self, client: Subscriber, channel: str) -> bool:
        return self._registry.add(client, channel)

    def unsubscribe(self, client: Subscriber, channel: str) -> bool:
        return self._registry.remove(client, channel)

    def handle_publication(self, publication: Publication) -> int:
        """Write a publication to every local recipient; returns how many took it."""
        targets: Set[Subscriber]
        if publication.to_all_clients:
            targets = self._clients
        else:
            targets = self._registry.subscribers(publication.channel)
        if not targets:
            return 0
        frame = self._encode_frame(publication.payload)
        delivered = 0
        owned = publication.owner is not None
        # Copy: a write may close a client, and closing must not disturb this loop.
        for client in tuple(targets):
            # Filtered here, before anything is written: a client never
            # receives a message it may not see.
            if owned and not client.may_see(publication):
                continue
            delivered += client.write_frame(frame)
        return delivered

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def subscription_counts(self) -> dict[str, int]:
        """Subscribers per public channel, and all private ``user:`` channels together."""
        counts = self._registry.counts(sorted(CHANNEL_NAMES))
        counts["user"] = self._registry.count_matching(lambda c: c not in CHANNEL_NAMES)
        return counts
