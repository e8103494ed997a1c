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

    def deliver(self, publication: Publication, frame: bytes) -> bool:
        """Write the prepared ``frame`` of ``publication`` without blocking, if
        this client may see it and its filter accepts it; True if written."""

    def stream_lost(self, channel: str) -> None:
        """The channel's stream broke: make the client reconnect and recover."""


class Hub:
    """This instance's connected clients and their subscriptions."""

    def __init__(self, encode_frame: Callable[[bytes], bytes]) -> None:
        self._encode_frame = encode_frame
        self._clients: set[Subscriber] = set()
        # Who receives messages to everyone (``all``): clients that may read,
        # i.e. authenticated ones (or every one when authentication is off).
        # A socket still to send its token is connected but hears nothing.
        self._admitted: set[Subscriber] = set()
        self._registry: SubscriptionRegistry[Subscriber] = SubscriptionRegistry()
        self._users: dict[Subscriber, str] = {}
        self._per_user: Counter[str] = Counter()
        # (client, channel) -> publications held while the client recovers.
        self._held: dict[tuple[Subscriber, str], list[Publication]] = {}
        # (client, channel) -> offset a subscription starts after. A shared
        # broker delivers asynchronously: publications already covered by the
        # snapshot or recovery the client got may still be on their way.
        self._floors: dict[tuple[Subscriber, str], int] = {}

    def connect(self, client: Subscriber) -> None:
        self._clients.add(client)

    def disconnect(self, client: Subscriber) -> list[str]:
        """Forget a client; returns the channels it was subscribed to."""
        self._clients.discard(client)
        self._admitted.discard(client)
        for key in [key for key in self._held if key[0] is client]:
            del self._held[key]
        for key in [key for key in self._floors if key[0] is client]:
            del self._floors[key]
        user = self._users.pop(client, None)
        if user is not None:
            self._per_user[user] -= 1
            if not self._per_user[user]:
                del self._per_user[user]
        return self._registry.remove_client(client)

    def admit(self, client: Subscriber, user: str | None) -> None:
        """The client may read from now on, acting for ``user`` (None: auth is off).

        It starts receiving messages to everyone, and counts toward ``user``'s
        connections (per-user limits).
        """
        self._admitted.add(client)
        if user is None:
            return
        previous = self._users.get(client)
        if previous == user:
            return
        if previous is not None:
            self._per_user[previous] -= 1
            if not self._per_user[previous]:
                del self._per_user[previous]
        self._users[client] = user
        self._per_user[user] += 1

    def user_of(self, client: Subscriber) -> str | None:
        """The user a client was admitted for (None: not admitted, or auth is off)."""
        return self._users.get(client)

    def connections_of(self, user: str) -> int:
        return self._per_user.get(user, 0)

    def watched(self, channel: str) -> bool:
        """Whether any local client is subscribed to ``channel``."""
        return bool(self._registry.subscribers(channel))

    def subscribe(self, client: Subscriber, channel: str, *, hold: bool = False) -> bool:
        """Subscribe; with ``hold``, publications are kept for ``release`` instead of written.

        Holding lets a subscription start receiving at once while its
        recovery or snapshot is still being prepared: nothing published in
        between is lost, and ``release`` hands it over to be merged.
        """
        if hold:
            self._held[(client, channel)] = []
        return self._registry.add(client, channel)

    def release(self, client: Subscriber, channel: str) -> list[Publication]:
        """Stop holding: return what was held; later publications are written live."""
        return self._held.pop((client, channel), [])

    def start_after(self, client: Subscriber, channel: str, offset: int) -> None:
        """Write the client only publications of ``channel`` above ``offset`` from now on."""
        if offset > 0:
            self._floors[(client, channel)] = offset

    def unsubscribe(self, client: Subscriber, channel: str) -> bool:
        self._held.pop((client, channel), None)
        self._floors.pop((client, channel), None)
        return self._registry.remove(client, channel)

    def handle_stream_lost(self, channel: str) -> None:
        """Every local subscriber of ``channel`` must reconnect and recover."""
        for client in tuple(self._registry.subscribers(channel)):
            client.stream_lost(channel)

    def handle_publication(self, publication: Publication) -> int:
        """Write a publication to every local recipient; returns how many took it."""
        targets: Set[Subscriber]
        if publication.to_all_clients:
            targets = self._admitted
        else:
            targets = self._registry.subscribers(publication.channel)
        if not targets:
            return 0
        frame = self._encode_frame(publication.wire())
        delivered = 0
        held = self._held
        floors = self._floors
        channel = publication.channel
        # Copy: a write may close a client, and closing must not disturb this loop.
        for client in tuple(targets):
            if held:
                waiting = held.get((client, channel))
                if waiting is not None:
                    waiting.append(publication)
                    continue
            if floors:
                floor = floors.get((client, channel))
                if floor is not None:
                    if publication.offset <= floor:
                        continue
                    del floors[(client, channel)]  # in order: later ones are above too
            delivered += client.deliver(publication, frame)
        return delivered

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def subscription_counts(self) -> dict[str, int]:
        """Subscribers per public channel, and all private ``user:`` channels together."""
        counts = self._registry.counts(sorted(CHANNEL_NAMES))
        counts["user"] = self._registry.count_matching(lambda c: c not in CHANNEL_NAMES)
        return counts
