"""Cluster and per-node usage computed from the latest job and node snapshots.

Metrics cost no extra Slurm calls: they are derived from what the job and
node monitors already fetched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from slurmcast.core.channels import Channel
from slurmcast.core.records import (
    UNAVAILABLE_NODE_STATES,
    JobRecord,
    JobState,
    NodeRecord,
    NodeState,
    percent,
)


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """One ``metrics_update``: cluster totals and per-node usage percentages."""

    cluster: dict[str, Any]
    nodes: list[dict[str, Any]]
    channel: ClassVar[Channel] = Channel.METRICS
    event_type: ClassVar[str] = "metrics_update"
    owner: ClassVar[str | None] = None

    def data(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "nodes": self.nodes}

    @property
    def cpu_usage(self) -> float:
        return float(self.cluster["cpu_usage"])

    @property
    def memory_usage(self) -> float:
        return float(self.cluster["memory_usage"])


@dataclass(frozen=True, slots=True)
class Capacity:
    """Configured and allocated CPUs, memory (MiB) and GPUs of some nodes, added up."""

    cpus: int = 0
    cpus_allocated: int = 0
    memory_mb: int = 0
    memory_allocated_mb: int = 0
    gpus: int = 0
    gpus_allocated: int = 0


def capacity(nodes: Iterable[NodeRecord]) -> Capacity:
    cpus = cpus_alloc = mem = mem_alloc = gpus = gpus_alloc = 0
    for node in nodes:
        cpus += node.cpus_total
        cpus_alloc += node.cpus_allocated
        mem += node.memory_total_mb
        mem_alloc += node.memory_allocated_mb
        gpus += node.gpus_total
        gpus_alloc += node.gpus_allocated
    return Capacity(cpus, cpus_alloc, mem, mem_alloc, gpus, gpus_alloc)


def cluster_metrics(
    jobs: Mapping[str, JobRecord], nodes: Mapping[str, NodeRecord]
) -> MetricsSample:
    """Compute one sample.

    Usage percentages are allocated over configured capacity of every node,
    as ``sinfo``'s CPUS(A/I/O/T) counts them. ``total_jobs`` counts jobs
    still in the queue (not finished ones lingering for MinJobAge).
    """
    total = capacity(nodes.values())
    idle = unavailable = 0
    per_node: list[dict[str, Any]] = []
    for node in nodes.values():
        idle += node.state is NodeState.IDLE and not node.not_responding
        unavailable += node.state in UNAVAILABLE_NODE_STATES or node.not_responding
        per_node.append(
            {
                "node": node.name,
                "state": node.state.value,
                "cpu_usage": node.cpu_usage,
                "memory_usage": node.memory_usage,
                "gpu_usage": node.gpu_usage,
            }
        )
    running = pending = active = 0
    for job in jobs.values():
        if job.state.is_terminal:
            continue
        active += 1
        running += job.state is JobState.RUNNING
        pending += job.state is JobState.PENDING
    cluster = {
        "cpu_usage": percent(total.cpus_allocated, total.cpus),
        "memory_usage": percent(total.memory_allocated_mb, total.memory_mb),
        "gpu_usage": percent(total.gpus_allocated, total.gpus),
        "total_jobs": active,
        "running_jobs": running,
        "pending_jobs": pending,
        "total_nodes": len(nodes),
        "idle_nodes": idle,
        "unavailable_nodes": unavailable,
        "cpus": {"total": total.cpus, "allocated": total.cpus_allocated},
        "gpus": {"total": total.gpus, "allocated": total.gpus_allocated},
        "memory_mb": {"total": total.memory_mb, "allocated": total.memory_allocated_mb},
    }
    return MetricsSample(cluster=cluster, nodes=per_node)
