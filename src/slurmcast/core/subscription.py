"""One client's subscription to one channel, and what it starts with.

A ``Subscription`` is the single record of a subscription: the session holds
it (what the client asked for), the hub's registry points at the same object
(whom a publication goes to), and the node fills in where its live stream
starts. Nothing about a subscription is kept anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slurmcast.core.filters import Filter
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.core.views import Snapshot


@dataclass(slots=True, eq=False)
class Subscription:
    """A client's subscription to ``channel``.

    Attributes:
        channel: the channel.
        filter: the client's server-side filter (None: everything).
        held: publications kept while the subscription's recovery or snapshot
            is prepared (None once it is live): none is missed meanwhile.
        floor: once live, publications at or below this offset are skipped:
            the recovery or snapshot the client got already covers them (a
            shared broker may still deliver them late).
    """

    channel: str
    filter: Filter | None = None
    held: list[Publication] | None = None
    floor: int = 0

    def wants(self, publication: Publication) -> bool:
        """Whether a live publication of this channel goes to the client (floor, filter)."""
        if self.floor:
            if publication.offset <= self.floor:
                return False
            self.floor = 0  # publications come in order: later ones are above too
        return self.filter is None or self.filter.matches(publication.tags)


@dataclass(frozen=True, slots=True)
class SubscriptionStart:
    """What a new subscription starts with, in the order it is sent.

    ``position`` goes in the ``subscribed`` reply; ``snapshot`` (if any)
    follows, then ``publications`` (replayed and held ones), then live ones.
    """

    position: StreamPosition
    recovered: bool | None = None
    snapshot: Snapshot | None = None
    publications: list[Publication] = field(default_factory=list)
