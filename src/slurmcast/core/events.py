"""Events the diff engine emits, and the payload shapes clients receive.

Each event knows its channel, its envelope type (``event_type``) and its
``data`` object;
the field names in ``data`` are the public contract (docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from slurmcast.core.channels import Channel
from slurmcast.core.efficiency import job_efficiency
from slurmcast.core.reasons import explain_reason
from slurmcast.core.records import JobRecord, JobState, NodeRecord, NodeState
from slurmcast.core.timefmt import iso_z
from slurmcast.core.units import format_memory


class Event(Protocol):
    """Anything that becomes one envelope on one channel."""

    @property
    def channel(self) -> Channel: ...

    @property
    def event_type(self) -> str: ...

    @property
    def owner(self) -> str | None:
        """The Slurm user the event is about, if any (visibility rules use it)."""

    def data(self) -> dict[str, Any]: ...


def job_payload(job: JobRecord, previous: JobState | None = None) -> dict[str, Any]:
    """The ``data`` of ``job_submitted`` / ``job_update`` messages.

    A finished job also carries ``efficiency`` (see ``core.efficiency``).
    """
    payload = {
        "job_id": job.job_id,
        "name": job.name,
        "status": job.state.value,
        "previous_status": previous.value if previous is not None else None,
        "user": job.user,
        "account": job.account,
        "partition": job.partition,
        "qos": job.qos,
        "nodes": list(job.nodes),
        "submit_time": iso_z(job.submit_time),
        "start_time": iso_z(job.start_time),
        "end_time": iso_z(job.end_time),
        "expected_start_time": iso_z(job.expected_start_time),
        "exit_code": job.exit_code,
        "exit_signal": job.exit_signal,
        "reason": job.reason,
        "reason_text": explain_reason(job),
        "resources": {
            "cpus": job.cpus,
            "memory": format_memory(job.memory_mb),
            "memory_mb": job.memory_mb,
            "gpus": job.gpus,
        },
    }
    if job.state.is_terminal:
        payload["efficiency"] = job_efficiency(job).as_dict()
    return payload


def node_payload(node: NodeRecord, previous: NodeState | None = None) -> dict[str, Any]:
    """The ``data`` of node messages: state plus CPU, memory and GPU accounting."""
    memory_free = max(node.memory_total_mb - node.memory_allocated_mb, 0)
    return {
        "node": node.name,
        "state": node.state.value,
        "previous_state": previous.value if previous is not None else None,
        "flags": sorted(node.flags),
        "reason": node.reason,
        "partitions": list(node.partitions),
        "cpus": {
            "total": node.cpus_total,
            "allocated": node.cpus_allocated,
            "idle": max(node.cpus_total - node.cpus_allocated, 0),
        },
        "memory": {
            "total": format_memory(node.memory_total_mb),
            "allocated": format_memory(node.memory_allocated_mb),
            "free": format_memory(memory_free),
            "total_mb": node.memory_total_mb,
            "allocated_mb": node.memory_allocated_mb,
            "free_mb": memory_free,
        },
        "gpus": {
            "total": node.gpus_total,
            "allocated": node.gpus_allocated,
            "idle": max(node.gpus_total - node.gpus_allocated, 0),
        },
        "cpu_usage": node.cpu_usage,
        "cpu_load": node.cpu_load,
    }


@dataclass(frozen=True, slots=True)
class JobSubmitted:
    job: JobRecord
    channel: ClassVar[Channel] = Channel.JOBS
    event_type: ClassVar[str] = "job_submitted"

    @property
    def owner(self) -> str | None:
        return self.job.user

    def data(self) -> dict[str, Any]:
        return job_payload(self.job)


@dataclass(frozen=True, slots=True)
class JobStateChanged:
    """A job's state moved from ``previous`` to ``job.state``.

    ``confirmed`` is False when the new state is a guess the source could not
    verify (accounting unavailable for a job that left the queue).
    """

    job: JobRecord
    previous: JobState
    confirmed: bool = True
    channel: ClassVar[Channel] = Channel.JOBS
    event_type: ClassVar[str] = "job_update"

    @property
    def owner(self) -> str | None:
        return self.job.user

    def data(self) -> dict[str, Any]:
        payload = job_payload(self.job, self.previous)
        if not self.confirmed:
            payload["final_state_confirmed"] = False
        return payload


@dataclass(frozen=True, slots=True)
class JobReasonChanged:
    """A pending job now waits for another reason (``Priority`` -> ``Resources``).

    Sent as a ``job_update`` whose status did not change, with
    ``previous_reason``: a user watching a queued job learns why it still waits.
    """

    job: JobRecord
    previous_reason: str | None
    channel: ClassVar[Channel] = Channel.JOBS
    event_type: ClassVar[str] = "job_update"

    @property
    def owner(self) -> str | None:
        return self.job.user

    def data(self) -> dict[str, Any]:
        payload = job_payload(self.job, self.job.state)
        payload["previous_reason"] = self.previous_reason
        return payload


@dataclass(frozen=True, slots=True)
class NodeStateChanged:
    node: NodeRecord
    previous: NodeState
    channel: ClassVar[Channel] = Channel.NODES
    event_type: ClassVar[str] = "node_update"
    owner: ClassVar[str | None] = None

    def data(self) -> dict[str, Any]:
        return node_payload(self.node, self.previous)


@dataclass(frozen=True, slots=True)
class NodeResourceChanged:
    """A node's CPU usage moved by more than the configured threshold."""

    node: NodeRecord
    previous_cpu_usage: float
    channel: ClassVar[Channel] = Channel.NODES
    event_type: ClassVar[str] = "node_resource_change"
    owner: ClassVar[str | None] = None

    def data(self) -> dict[str, Any]:
        payload = node_payload(self.node)
        payload["previous_cpu_usage"] = self.previous_cpu_usage
        return payload


@dataclass(frozen=True, slots=True)
class NodeAdded:
    node: NodeRecord
    channel: ClassVar[Channel] = Channel.NODES
    event_type: ClassVar[str] = "node_added"
    owner: ClassVar[str | None] = None

    def data(self) -> dict[str, Any]:
        return node_payload(self.node)


@dataclass(frozen=True, slots=True)
class NodeRemoved:
    node: NodeRecord
    channel: ClassVar[Channel] = Channel.NODES
    event_type: ClassVar[str] = "node_removed"
    owner: ClassVar[str | None] = None

    def data(self) -> dict[str, Any]:
        return node_payload(self.node, self.node.state)


JobEvent = JobSubmitted | JobStateChanged | JobReasonChanged
NodeEvent = NodeStateChanged | NodeResourceChanged | NodeAdded | NodeRemoved
