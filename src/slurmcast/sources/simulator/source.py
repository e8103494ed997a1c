"""``SimulatorSource``: the ``Source`` that serves a ``SimulatedCluster``.

It maps wall-clock time onto simulated time (``speed`` simulated seconds per
wall second) and implements ``slurmcast.ports.Source``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final

from slurmcast.core.records import JobRecord, JobsListing, NodesListing
from slurmcast.errors import SourceError
from slurmcast.sources.simulator.cluster import SimulatedCluster

#: Above this many pending ticks, ``SimulatorSource`` advances in a worker thread.
INLINE_TICKS: Final = 5000


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _timestamp(wall_clock: Callable[[], datetime]) -> float:
    return wall_clock().timestamp()


class SimulatorSource:
    """A ``Source`` backed by a ``SimulatedCluster`` running ``speed`` times wall time.

    Simulated time is the wall time at construction plus the ``clock()``
    seconds elapsed since then, times ``speed``. ``jobs()`` and ``nodes()``
    first advance the cluster to that time; a catch-up longer than
    ``INLINE_TICKS`` runs in a worker thread so the event loop stays free.
    ``warmup_s`` simulated seconds run before the start so the first
    snapshot already shows a busy cluster.
    """

    kind = "simulator"

    def __init__(
        self,
        seed: int,
        speed: float = 1.0,
        nodes: int = 16,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
        warmup_s: int = 3600,
        min_job_age_s: int = 300,
        node_events_per_day: float = 0.3,
        start: datetime | None = None,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be a finite number > 0, got {speed}")
        self._seed = seed
        self._speed = float(speed)
        self._clock: Callable[[], float]
        if start is not None:
            # A fixed start: simulated time follows the wall clock from it, so
            # every process given the same seed and start sees the same cluster
            # at the same moment (instances taking over each other's polling).
            self._wall0 = start.astimezone(UTC)
            self._clock = partial(_timestamp, wall_clock)
            self._clock0 = self._wall0.timestamp()
        else:
            self._clock = clock
            self._clock0 = clock()
            self._wall0 = wall_clock().astimezone(UTC)
        # Two drains for every failure: admins drain nodes more often than nodes die.
        self._cluster = SimulatedCluster(
            seed,
            self._wall0,
            nodes,
            min_job_age_s=min_job_age_s,
            warmup_s=warmup_s,
            drains_per_node_day=node_events_per_day * 2 / 3,
            downs_per_node_day=node_events_per_day / 3,
        )
        self._lock = asyncio.Lock()
        self._catch_up: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def cluster(self) -> SimulatedCluster:
        """The simulated cluster (for tests and tooling)."""
        return self._cluster

    def sim_now(self) -> datetime:
        """The simulated time for the current ``clock()`` reading."""
        return self._wall0 + timedelta(seconds=(self._clock() - self._clock0) * self._speed)

    async def start(self) -> None:
        """Nothing to detect: the simulator is always ready."""
        self._check_open()

    async def jobs(self) -> JobsListing:
        """Advance to the current simulated time, then list the jobs."""
        async with self._lock:
            await self._advance()
            return self._cluster.jobs_snapshot()

    async def nodes(self) -> NodesListing:
        """Advance to the current simulated time, then list the nodes."""
        async with self._lock:
            await self._advance()
            return self._cluster.nodes_snapshot()

    async def final_states(
        self, jobs: Mapping[str, JobRecord], since: datetime
    ) -> Mapping[str, JobRecord]:
        """The archived final records of those jobs (the archive needs no ``since``)."""
        async with self._lock:
            self._check_open()
            await self._wait_catch_up()
            records = {job_id: self._cluster.final_record(job_id) for job_id in jobs}
            return {job_id: r for job_id, r in records.items() if r is not None}

    @property
    def accounting_answers(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        """Kind, seed, speed, node count and the cluster's simulated time."""
        return {
            "kind": self.kind,
            "seed": self._seed,
            "speed": self._speed,
            "nodes": self._cluster.node_count,
            "sim_time": self._cluster.now.isoformat(),
        }

    async def close(self) -> None:
        """Refuse further calls (they raise ``SourceError``)."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise SourceError("simulator source is closed")

    async def _wait_catch_up(self) -> None:
        # A caller cancelled (say by a poll timeout) while a thread advanced
        # releases the lock, but the thread runs on: never touch the cluster
        # before it is done.
        if self._catch_up is not None:
            try:
                await asyncio.shield(self._catch_up)
            finally:
                if self._catch_up.done():
                    self._catch_up = None

    async def _advance(self) -> None:
        self._check_open()
        try:
            await self._wait_catch_up()
            target = self.sim_now()
            if self._cluster.ticks_until(target) > INLINE_TICKS:
                self._catch_up = asyncio.ensure_future(
                    asyncio.to_thread(self._cluster.advance_to, target)
                )
                await self._wait_catch_up()
            else:
                self._cluster.advance_to(target)
        except Exception as exc:  # the Source contract: only SourceError escapes
            raise SourceError(f"simulator failed to advance: {exc}") from exc
