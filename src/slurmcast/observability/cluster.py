"""The cluster's figures for Prometheus, from the latest listings (as prometheus-slurm-exporter
reports them): nodes by state, CPUs, memory and GPUs configured and allocated, jobs by state
and partition, and optionally by user.

Pure: listings in, counts out. ``ClusterFigures`` computes them once per listing (a scrape
every few seconds of an unchanged listing walks nothing); the poller replaces its listings
with new objects, so identity tells a new one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from slurmcast.core.metrics import capacity
from slurmcast.core.records import JobsListing, NodesListing, NodeState

#: Slurm's memory figures are MiB.
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class NodeFigures:
    """What one nodes listing adds up to."""

    taken_at: float
    by_state: dict[str, int]
    not_responding: int
    cpus: int
    cpus_allocated: int
    memory_bytes: int
    memory_allocated_bytes: int
    gpus: int
    gpus_allocated: int


@dataclass(frozen=True, slots=True)
class JobFigures:
    """What one jobs listing adds up to: jobs per (state, partition), and per (user, state)."""

    taken_at: float
    by_state_partition: dict[tuple[str, str], int]
    by_user_state: dict[tuple[str, str], int] = field(default_factory=dict)


def node_figures(listing: NodesListing) -> NodeFigures:
    """Every node state is present (0 when none is in it), so a series never vanishes."""
    states = Counter({state.value.lower(): 0 for state in NodeState})
    not_responding = 0
    for node in listing.nodes.values():
        states[node.state.value.lower()] += 1
        not_responding += node.not_responding
    total = capacity(listing.nodes.values())
    return NodeFigures(
        listing.taken_at.timestamp(),
        dict(states),
        not_responding,
        total.cpus,
        total.cpus_allocated,
        total.memory_mb * MIB,
        total.memory_allocated_mb * MIB,
        total.gpus,
        total.gpus_allocated,
    )


def job_figures(listing: JobsListing, *, per_user: bool) -> JobFigures:
    """Jobs the listing holds (finished ones linger in it for Slurm's MinJobAge)."""
    by_partition: Counter[tuple[str, str]] = Counter()
    by_user: Counter[tuple[str, str]] = Counter()
    for job in listing.jobs.values():
        state = job.state.value.lower()
        by_partition[state, job.partition] += 1
        if per_user:
            by_user[job.user, state] += 1
    return JobFigures(listing.taken_at.timestamp(), dict(by_partition), dict(by_user))


class ClusterFigures:
    """The figures of the latest listings, recomputed only when a listing changes."""

    def __init__(self, *, per_user: bool) -> None:
        self.per_user = per_user
        self._nodes: tuple[NodesListing, NodeFigures] | None = None
        self._jobs: tuple[JobsListing, JobFigures] | None = None

    def nodes(self, listing: NodesListing | None) -> NodeFigures | None:
        if listing is None:
            return None
        if self._nodes is None or self._nodes[0] is not listing:
            self._nodes = (listing, node_figures(listing))
        return self._nodes[1]

    def jobs(self, listing: JobsListing | None) -> JobFigures | None:
        if listing is None:
            return None
        if self._jobs is None or self._jobs[0] is not listing:
            self._jobs = (listing, job_figures(listing, per_user=self.per_user))
        return self._jobs[1]
