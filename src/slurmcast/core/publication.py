"""A message on its way from a publisher to the subscribers of a channel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from slurmcast.core.position import StreamPosition
from slurmcast.core.views import StateChange

#: Pseudo-channel of ``POST /broadcast`` meaning "every connected client".
ALL_CLIENTS = "all"

#: What a filter can look at: a field's value, or several (a job's nodes).
TagValue = str | tuple[str, ...]
Tags = Mapping[str, TagValue]


@dataclass(frozen=True, slots=True)
class Publication:
    """An encoded envelope bound for one channel.

    ``payload`` is the envelope serialised to UTF-8 JSON *without* its
    position: it is encoded exactly once per publication, however many
    clients receive it, and the broker's position is spliced in once by
    ``wire()`` (also for history replays, where the same bytes are stored).

    Attributes:
        owner: the Slurm user the message is about (a job's owner), for
            visibility rules; None for messages about no one in particular.
        tags: the fields subscription filters match on (``core.filters``).
        position: assigned by the broker; None until published, and for
            messages to every client (``all``), which belong to no stream.
        state: what the message does to its channel's state (snapshots),
            applied by the broker atomically with assigning the position.
    """

    channel: str
    payload: bytes
    owner: str | None = None
    tags: Tags = field(default_factory=dict)
    position: StreamPosition | None = None
    state: StateChange | None = None

    @property
    def to_all_clients(self) -> bool:
        return self.channel == ALL_CLIENTS

    @property
    def offset(self) -> int:
        return self.position.offset if self.position is not None else 0

    def at(self, position: StreamPosition) -> Publication:
        return replace(self, position=position)

    def wire(self) -> bytes:
        """The envelope as sent: ``{..., "offset": N, "epoch": "e"}``."""
        if self.position is None:
            return self.payload
        # Epochs are strings we generate (hex digits, and '-' and digits for a
        # Redis channel born by a publication): no JSON escaping is needed.
        suffix = f',"offset":{self.position.offset},"epoch":"{self.position.epoch}"}}'
        return self.payload[:-1] + suffix.encode()
