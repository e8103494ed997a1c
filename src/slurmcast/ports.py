"""The pluggable parts of slurmcast, as ``typing.Protocol`` classes.

Each port has one module per implementation under a folder named for the
part (``sources/``, ``brokers/``, ``instances/``, ``storage/``, ``transport/``);
only ``app.py`` picks the concrete class.
"""

from __future__ import annotations

import builtins
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from slurmcast.core.history import HistoryResult
from slurmcast.core.notifications import Notification
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.core.records import JobRecord, JobsListing, NodesListing
from slurmcast.core.views import Snapshot


class Source(Protocol):
    """Where cluster state comes from: the simulated cluster or real Slurm.

    Methods raise ``SourceError`` on failure; they never return a partial
    snapshot, so a failed poll can never look like jobs vanishing.
    """

    kind: str

    async def start(self) -> None:
        """Prepare the source (detect capabilities); may raise SourceError."""

    async def jobs(self) -> JobsListing:
        """Every job the source currently knows, finished ones included."""

    async def nodes(self) -> NodesListing:
        """Every node the source currently knows."""

    async def final_states(
        self, jobs: Mapping[str, JobRecord], since: datetime
    ) -> Mapping[str, JobRecord]:
        """Ask the authoritative record (Slurm accounting) how these jobs ended.

        Args:
            jobs: the last-seen records of jobs that left the queue unfinished,
                or were just seen finishing (terminal or COMPLETING).
            since: a lower bound on when they may have ended (bounds the lookup).

        Returns:
            Updated records for the jobs the source could resolve; ids it could
            not resolve are absent (the caller must not invent a state). A
            source whose accounting is down returns what it can (maybe
            nothing) and says so in ``describe()``; it does not raise.
        """

    @property
    def accounting_answers(self) -> bool:
        """Whether ``final_states`` can resolve jobs now (accounting set up and answering).

        While it can, a job listed as finished whose end accounting has not
        recorded yet is worth waiting a poll or two for: its record brings the
        exact exit code and what the job used.
        """

    def describe(self) -> dict[str, Any]:
        """Facts about the source for /health (kind, detected capabilities)."""

    async def close(self) -> None: ...


class PublicationHandler(Protocol):
    """What a broker calls for every publication, on every instance."""

    def handle_publication(self, publication: Publication) -> int:
        """Deliver to local subscribers; return how many were written to."""

    def handle_stream_lost(self, channel: str) -> None:
        """The channel's stream broke under this instance (a gap that history
        cannot fill, a new epoch): its local subscribers must recover."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The publication as positioned by the broker, and how many local clients took it."""

    publication: Publication
    delivered: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What one monitor step changes, committed all at once or not at all.

    Attributes:
        publications: positioned and delivered in order.
        seeds: channel -> its whole state (item key -> data), replacing the
            current one without a publication (a monitor's first poll). The
            channel starts a new epoch and its subscribers are told to
            resync (``handle_stream_lost``): deltas from before the seed do
            not lead to the seeded state.
        checkpoint: named parts of the monitor's diff baseline, stored with
            the publications so a poller taking over resumes exactly where
            the last committed step left off.
        fence: the polling lease token this step was computed under; a
            broker shared between instances refuses the batch (``Fenced``)
            when the lease has moved on. None: not fenced.
    """

    publications: Sequence[Publication] = ()
    seeds: Mapping[str, Mapping[str, dict[str, Any]]] = field(default_factory=dict)
    checkpoint: Mapping[str, bytes] = field(default_factory=dict)
    fence: str | None = None


class Broker(Protocol):
    """Positions publications in their channel's history, keeps each channel's
    state, and carries publications to every instance's handler (even in
    memory: one delivery path)."""

    kind: str

    async def start(self, handler: PublicationHandler) -> None: ...

    async def publish(self, publication: Publication, *, confirm: bool = True) -> PublishResult:
        """Assign the next position (none for ``all``), store, deliver.

        With ``confirm`` the call returns once this instance has delivered the
        publication locally (``delivered`` counts local clients); without it,
        as soon as it is stored (``delivered`` may be 0).

        Raises:
            PublishError: the publication could not be stored or delivered.
        """

    async def commit(self, batch: Batch) -> list[Publication]:
        """Apply a ``Batch`` atomically; returns its publications, positioned.

        Raises:
            PublishError: nothing of the batch was applied (``Fenced`` when
                the batch's lease is no longer held).
        """

    async def history(self, channel: str, *, since: int | None, limit: int) -> HistoryResult:
        """Stored publications after offset ``since`` (the latest ``limit`` for None)."""

    async def position(self, channel: str) -> StreamPosition:
        """The channel's current position (offset 0 before its first publication)."""

    async def snapshot(self, channel: str) -> Snapshot | None:
        """The channel's state and the position it is the state of (None: no state)."""

    async def checkpoint(self) -> dict[str, bytes]:
        """The monitor baseline parts last committed (empty when there are none)."""

    def track(self, channel: str, position: StreamPosition) -> None:
        """A local subscription continues from ``position``: check later deliveries
        on ``channel`` against it (gap detection)."""

    def untrack(self, channel: str) -> None:
        """The last local subscription of ``channel`` ended: stop checking it, and
        keep nothing for it."""

    def describe(self) -> dict[str, Any]:
        """Facts for /health: kind, connectivity."""

    async def close(self) -> None: ...


class Lease(Protocol):
    """The right to poll the cluster: held by exactly one instance at a time."""

    @property
    def token(self) -> str | None:
        """The fencing token while held (None when not fenced, or not held)."""

    async def acquire(self) -> bool:
        """Take the lease if it is free; True if this instance holds it now."""

    async def renew(self) -> bool:
        """Extend the lease; False if it was lost to another instance."""

    async def release(self) -> None: ...


class Presence(Protocol):
    """Client counts of every instance sharing the broker."""

    async def report(self, instance: str, counts: dict[str, Any]) -> None:
        """Publish this instance's counts (expiring unless reported again)."""

    async def instances(self) -> dict[str, dict[str, Any]]:
        """Every live instance's last report."""


# --------------------------------------------------------------------------- clients


class FrameEncoder(Hashable, Protocol):
    """Turns a publication's JSON wire form into a whole frame; equal encoders, equal frames."""

    def frame(self, envelope_json: bytes) -> bytes: ...


class Subscriber(Hashable, Protocol):
    """A connected client as the hub sees it."""

    @property
    def encoding(self) -> FrameEncoder: ...

    def deliver(self, publication: Publication, frame: bytes) -> bool:
        """Write the prepared ``frame`` of ``publication`` without blocking, if
        this client may see it (its subscription wanted it); True if written."""

    def stream_lost(self, channel: str) -> None:
        """The channel's stream broke: make the client reconnect and recover."""


# --------------------------------------------------------------------------- notifications


@dataclass(frozen=True, slots=True)
class NotificationPage:
    """One page of ``list``: items newest first; pass ``next_before`` for the next page."""

    items: list[dict[str, Any]]
    next_before: str | None


class NotificationStorePort(Protocol):
    """Where notifications are kept for people who were not connected."""

    async def start(self) -> None: ...

    def enqueue(self, notification: Notification) -> None: ...

    async def add(self, notifications: list[Notification]) -> None: ...

    async def list(
        self,
        user: str | None,
        *,
        unread_only: bool = False,
        limit: int = 50,
        before: str | None = None,
    ) -> NotificationPage: ...

    async def mark_read(self, ids: builtins.list[str], user: str | None) -> builtins.list[str]: ...

    async def mark_all_read(self, user: str | None) -> int: ...

    async def get(self, id: str) -> dict[str, Any] | None: ...

    def health(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class NotificationReader(Protocol):
    """What a connection needs of the notification store."""

    async def mark_read(self, ids: list[str], user: str | None) -> list[str]: ...
