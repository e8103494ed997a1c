"""Local fan-out: deliver one publication to this instance's clients.

The hub encodes each publication's wire frame once per *encoding* (JSON or
msgpack, deflated or not: see ``transport.encoding``) and hands the same bytes
to every subscriber that uses it; subscribers queue without awaiting, so one
slow client cannot delay the next (each enforces its own buffer bound).
"""

from __future__ import annotations

from collections import Counter

from slurmcast.core.channels import CHANNEL_NAMES
from slurmcast.core.publication import ALL_CLIENTS, Publication
from slurmcast.core.registry import SubscriptionRegistry
from slurmcast.core.subscription import Subscription
from slurmcast.ports import FrameEncoder, Subscriber

#: The channels counted apart in ``received`` and ``delivered``; every private
#: ``user:<name>`` channel is counted under ``user`` (a bounded set of labels).
COUNTED_CHANNELS = frozenset({*CHANNEL_NAMES, ALL_CLIENTS})
PRIVATE_CHANNELS = "user"


class Hub:
    """This instance's connected clients and their subscriptions."""

    def __init__(self) -> None:
        self._clients: set[Subscriber] = set()
        # Who receives messages to everyone (``all``): clients that may read,
        # i.e. authenticated ones (or every one when authentication is off).
        # A socket still to send its token is connected but hears nothing.
        self._admitted: set[Subscriber] = set()
        self._registry: SubscriptionRegistry[Subscriber] = SubscriptionRegistry()
        self._users: dict[Subscriber, str] = {}
        self._per_user: Counter[str] = Counter()
        #: Publications handed to this hub, and the frames it queued for its
        #: clients, per channel (``user:`` channels under ``user``): plain
        #: integers, read by ``GET /metrics``.
        self.received: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
        #: Clients connected since start.
        self.connections_opened = 0

    def connect(self, client: Subscriber) -> None:
        self._clients.add(client)
        self.connections_opened += 1

    def disconnect(self, client: Subscriber) -> list[str]:
        """Forget a client; returns the channels it was subscribed to."""
        self._clients.discard(client)
        self._admitted.discard(client)
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

    def subscribe(
        self, client: Subscriber, subscription: Subscription, *, hold: bool = False
    ) -> bool:
        """Subscribe; with ``hold``, publications are kept for ``release`` instead of written.

        Holding lets a subscription start receiving at once while its
        recovery or snapshot is still being prepared: nothing published in
        between is lost, and ``release`` hands it over to be merged.
        """
        if hold:
            subscription.held = []
        return self._registry.add(client, subscription)

    def release(self, client: Subscriber, channel: str) -> list[Publication]:
        """Stop holding: return what was held; later publications go live.

        The caller sets the subscription's ``floor`` to what the client's
        start (recovery or snapshot) covers: a shared broker delivers
        asynchronously, and publications it covers may still be on their way.
        """
        subscription = self._registry.get(client, channel)
        if subscription is None:
            return []
        held, subscription.held = subscription.held or [], None
        return held

    def unsubscribe(self, client: Subscriber, channel: str) -> bool:
        return self._registry.remove(client, channel)

    def handle_stream_lost(self, channel: str) -> None:
        """Every local subscriber of ``channel`` must reconnect and recover."""
        for client in tuple(self._registry.subscribers(channel)):
            client.stream_lost(channel)

    def handle_publication(self, publication: Publication) -> int:
        """Write a publication to every local recipient; returns how many took it."""
        channel = publication.channel
        label = channel if channel in COUNTED_CHANNELS else PRIVATE_CHANNELS
        self.received[label] = self.received.get(label, 0) + 1
        delivered = self._fan_out(publication)
        if delivered:
            self.delivered[label] = self.delivered.get(label, 0) + delivered
        return delivered

    def _fan_out(self, publication: Publication) -> int:
        if publication.to_all_clients:
            recipients: list[Subscriber] = list(self._admitted)
        else:
            subscriptions = self._registry.subscribers(publication.channel)
            if not subscriptions:
                return 0
            recipients = []
            append = recipients.append
            for client, subscription in subscriptions.items():
                if (
                    subscription.held is None
                    and not subscription.floor
                    and subscription.filter is None
                ):
                    append(client)  # the common case (live, unfiltered), decided without a call
                elif subscription.held is not None:
                    subscription.held.append(publication)
                elif subscription.wants(publication):
                    append(client)
        if not recipients:
            return 0
        wire = publication.wire()
        # Few distinct encodings (format x compression), many clients: one
        # frame per encoding, and the last one used checked first (by identity).
        frames: dict[FrameEncoder, bytes] = {}
        last_encoding: FrameEncoder | None = None
        frame = b""
        delivered = 0
        # A list, not the live mapping: a write may close a client, and
        # closing must not disturb this loop.
        for client in recipients:
            encoding = client.encoding
            if encoding is not last_encoding:
                cached = frames.get(encoding)
                if cached is None:
                    cached = frames[encoding] = encoding.frame(wire)
                frame, last_encoding = cached, encoding
            if client.deliver(publication, frame):
                delivered += 1
        return delivered

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def subscription_counts(self) -> dict[str, int]:
        """Subscribers per public channel, and all private ``user:`` channels together."""
        counts = self._registry.counts(sorted(CHANNEL_NAMES))
        counts["user"] = self._registry.count_matching(lambda c: c not in CHANNEL_NAMES)
        return counts
