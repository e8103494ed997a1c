"""Cluster and per-node usage computed from the latest job and node snapshots.

Metrics cost no extra Slurm calls: they are derived from what the job and
node monitors already fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def cluster_metrics(
    jobs: Mapping[str, JobRecord], nodes: Mapping[str, NodeRecord]
) -> MetricsSample:
    """Compute one sample.

    Usage percentages are allocated over configured capacity of every node,
    as ``sinfo``'s CPUS(A/I/O/T) counts them. ``total_jobs`` counts jobs
    still in the queue (not finished ones lingering for MinJobAge).
    """
    cpus = cpus_alloc = mem = mem_alloc = gpus = gpus_alloc = 0
    idle = unavailable = 0
    per_node: list[dict[str, Any]] = []
    for node in nodes.values():
        cpus += node.cpus_total
        cpus_alloc += node.cpus_allocated
        mem += node.memory_total_mb
        mem_alloc += node.memory_allocated_mb
        gpus += node.gpus_total
        gpus_alloc += node.gpus_allocated
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
        "cpu_usage": percent(cpus_alloc, cpus),
        "memory_usage": percent(mem_alloc, mem),
        "gpu_usage": percent(gpus_alloc, gpus),
        "total_jobs": active,
        "running_jobs": running,
        "pending_jobs": pending,
        "total_nodes": len(nodes),
        "idle_nodes": idle,
        "unavailable_nodes": unavailable,
        "cpus": {"total": cpus, "allocated": cpus_alloc},
        "gpus": {"total": gpus, "allocated": gpus_alloc},
        "memory_mb": {"total": mem, "allocated": mem_alloc},
    }
    return MetricsSample(cluster=cluster, nodes=per_node)
