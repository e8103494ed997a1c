from slurmcast.core.metrics import cluster_metrics
from slurmcast.core.records import NOT_RESPONDING, JobState, NodeState

from support.builders import by_id, by_name, finished, job, node


def test_cluster_and_node_usage() -> None:
    nodes = by_name(
        node("a", NodeState.MIXED, cpus_allocated=32, memory_allocated_mb=65536),
        node("b", NodeState.IDLE, gpus_total=4),
        node("c", NodeState.IDLE, flags=frozenset({NOT_RESPONDING})),
        node("d", NodeState.ALLOCATED, cpus_allocated=64, gpus_total=4, gpus_allocated=2),
    )
    jobs = by_id(
        job("1", JobState.RUNNING),
        job("2"),
        job("3"),
        finished("4", JobState.COMPLETED),
    )
    sample = cluster_metrics(jobs, nodes)
    cluster = sample.data()["cluster"]
    assert cluster["cpu_usage"] == 37.5
    assert cluster["memory_usage"] == 6.2
    assert cluster["gpu_usage"] == 25.0
    assert (cluster["total_jobs"], cluster["running_jobs"], cluster["pending_jobs"]) == (3, 1, 2)
    assert (cluster["total_nodes"], cluster["idle_nodes"]) == (4, 1)
    assert cluster["unavailable_nodes"] == 1
    per_node = {n["node"]: n for n in sample.data()["nodes"]}
    assert per_node["a"] == {
        "node": "a",
        "state": "MIXED",
        "cpu_usage": 50.0,
        "memory_usage": 25.0,
        "gpu_usage": 0.0,
    }
    assert sample.event_type == "metrics_update"


def test_empty_cluster_is_zero_not_an_error() -> None:
    cluster = cluster_metrics({}, {}).data()["cluster"]
    assert cluster["cpu_usage"] == 0.0 and cluster["total_nodes"] == 0
