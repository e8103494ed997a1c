"""The pluggable parts of slurmcast, as ``typing.Protocol`` classes.

Each port has one module per implementation under a folder named for the
part (``sources/``, ``brokers/``); only ``app.py`` picks the concrete class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from slurmcast.core.history import HistoryResult
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.core.snapshot import JobRecord, JobsSnapshot, NodesSnapshot


class Source(Protocol):
    """Where cluster state comes from: the simulated cluster or real Slurm.

    Methods raise ``SourceError`` on failure; they never return a partial
    snapshot, so a failed poll can never look like jobs vanishing.
    """

    kind: str

    async def start(self) -> None:
        """Prepare the source (detect capabilities); may raise SourceError."""

    async def jobs(self) -> JobsSnapshot:
        """Every job the source currently knows, finished ones included."""

    async def nodes(self) -> NodesSnapshot:
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

    def describe(self) -> dict[str, Any]:
        """Facts about the source for /health (kind, detected capabilities)."""

    async def close(self) -> None: ...


class PublicationHandler(Protocol):
    """What a broker calls for every publication, on every instance."""

    def handle_publication(self, publication: Publication) -> int:
        """Deliver to local subscribers; return how many were written to."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The publication as positioned by the broker, and how many local clients took it."""

    publication: Publication
    delivered: int


class Broker(Protocol):
    """Positions publications in their channel's history and carries them to
    every instance's handler (even in memory: one delivery path)."""

    async def start(self, handler: PublicationHandler) -> None: ...

    async def publish(self, publication: Publication) -> PublishResult:
        """Assign the next position (none for ``all``), store, deliver.

        Raises:
            PublishError: the publication could not be stored or delivered.
        """

    async def history(self, channel: str, *, since: int | None, limit: int) -> HistoryResult:
        """Stored publications after offset ``since`` (the latest ``limit`` for None)."""

    async def position(self, channel: str) -> StreamPosition:
        """The channel's current position (offset 0 before its first publication)."""

    async def close(self) -> None: ...
