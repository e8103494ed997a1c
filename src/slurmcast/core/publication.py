"""A message on its way from a publisher to the subscribers of a channel."""

from __future__ import annotations

from dataclasses import dataclass

#: Pseudo-channel of ``POST /broadcast`` meaning "every connected client".
ALL_CLIENTS = "all"


@dataclass(frozen=True, slots=True)
class Publication:
    """An encoded envelope bound for one channel.

    ``payload`` is the envelope already serialised to UTF-8 JSON: it is
    encoded exactly once per publication, however many clients receive it.
    """

    channel: str
    payload: bytes
    #: The Slurm user a message is about (a job's owner), for visibility
    #: rules; None for messages about no one in particular.
    owner: str | None = None

    @property
    def to_all_clients(self) -> bool:
        return self.channel == ALL_CLIENTS
