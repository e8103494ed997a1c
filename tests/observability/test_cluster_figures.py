"""The cluster's figures for /metrics, from listings (pure)."""

from __future__ import annotations

from slurmcast.core.records import JobsListing, JobState, NodesListing, NodeState
from slurmcast.observability.cluster import MIB, ClusterFigures, job_figures, node_figures

from support.builders import T0, by_id, by_name, job, node


def test_nodes_add_up_by_state_with_every_state_present() -> None:
    listing = NodesListing(
        T0,
        by_name(
            node("a", NodeState.IDLE),
            node("b", NodeState.MIXED, cpus_allocated=16, memory_allocated_mb=1024),
            node("c", NodeState.DOWN, gpus_total=4, gpus_allocated=2),
        ),
    )
    figures = node_figures(listing)
    assert figures.by_state["idle"] == figures.by_state["mixed"] == figures.by_state["down"] == 1
    assert figures.by_state["drained"] == 0
    assert set(figures.by_state) == {state.value.lower() for state in NodeState}
    assert (figures.cpus, figures.cpus_allocated) == (192, 16)
    assert (figures.memory_bytes, figures.memory_allocated_bytes) == (3 * 262144 * MIB, 1024 * MIB)
    assert (figures.gpus, figures.gpus_allocated) == (4, 2)
    assert figures.taken_at == T0.timestamp()


def test_jobs_by_state_and_partition_and_by_user_only_when_asked() -> None:
    listing = JobsListing(
        T0,
        by_id(
            job("1", JobState.RUNNING),
            job("2", JobState.RUNNING, partition="gpu", user="bob"),
            job("3", JobState.PENDING),
            job("4", JobState.RUNNING),
        ),
    )
    figures = job_figures(listing, per_user=False)
    assert figures.by_state_partition == {
        ("running", "cpu"): 2,
        ("running", "gpu"): 1,
        ("pending", "cpu"): 1,
    }
    assert figures.by_user_state == {}
    per_user = job_figures(listing, per_user=True)
    assert per_user.by_user_state == {
        ("alice", "running"): 2,
        ("bob", "running"): 1,
        ("alice", "pending"): 1,
    }


def test_figures_are_computed_once_per_listing() -> None:
    cluster = ClusterFigures(per_user=False)
    assert cluster.jobs(None) is None and cluster.nodes(None) is None
    first = JobsListing(T0, by_id(job("1")))
    assert cluster.jobs(first) is cluster.jobs(first)
    second = JobsListing(T0, by_id(job("1"), job("2")))
    assert cluster.jobs(second) is not cluster.jobs(first)
    assert sum(cluster.jobs(second).by_state_partition.values()) == 2  # type: ignore[union-attr]
