"""Tests of the simulated cluster (the pure model behind the simulator source)."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from slurmcast.core.records import (
    NOT_RESPONDING,
    TERMINAL_JOB_STATES,
    UNAVAILABLE_NODE_STATES,
    JobRecord,
    JobsListing,
    JobState,
    NodesListing,
    NodeState,
)
from slurmcast.sources.simulator.cluster import SimulatedCluster

START = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def busy_admin(seed: int, nodes: int = 16) -> SimulatedCluster:
    """A cluster whose node event rates make a few hours see drains and failures."""
    return SimulatedCluster(seed, START, nodes, drains_per_node_day=3.0, downs_per_node_day=1.5)


def sample(
    cluster: SimulatedCluster, until: datetime, every: timedelta
) -> Iterator[tuple[JobsListing, NodesListing]]:
    """Advance in ``every`` steps up to ``until``, yielding both snapshots each time."""
    t = cluster.now
    while t < until:
        t = min(t + every, until)
        cluster.advance_to(t)
        yield cluster.jobs_snapshot(), cluster.nodes_snapshot()


def check_invariants(
    jobs: JobsListing, nodes: NodesListing, *, min_job_age: timedelta = timedelta(seconds=300)
) -> None:
    """Everything that must hold in any pair of snapshots taken at the same time."""
    assert jobs.taken_at == nodes.taken_at
    now = jobs.taken_at
    used: dict[str, Counter[str]] = {name: Counter() for name in nodes.nodes}
    resources_heads: Counter[str] = Counter()
    for job_id, job in jobs.jobs.items():
        assert job_id == job.job_id
        assert job.submit_time is not None and job.submit_time <= now
        assert job.cpus >= 1 and job.memory_mb is not None and job.memory_mb > 0
        assert (job.gpus > 0) == (job.partition == "gpu")
        assert job.time_limit_min is not None and job.time_limit_min > 0
        if job.state is JobState.PENDING:
            assert job.nodes == () and job.start_time is None and job.end_time is None
            assert job.reason in {"Resources", "Priority"}
            resources_heads[job.partition] += job.reason == "Resources"
        elif job.state is JobState.RUNNING:
            assert len(job.nodes) == 1, job
            assert job.start_time is not None and job.submit_time < job.start_time <= now
            assert job.end_time is None and job.exit_code is None
            assert now - job.start_time <= timedelta(minutes=job.time_limit_min)
            node = nodes.nodes[job.nodes[0]]
            assert node.partitions == (job.partition,)
            used[node.name].update(cpus=job.cpus, mem=job.memory_mb, gpus=job.gpus)
        else:
            assert job.state in TERMINAL_JOB_STATES, job
            assert job.end_time is not None and job.end_time <= now
            assert now - job.end_time < min_job_age, "finished jobs vanish after min_job_age"
            assert job.exit_code is not None
            if job.start_time is None:
                assert job.state is JobState.CANCELLED and job.nodes == ()
                assert job.exit_signal is None
                continue
            assert job.submit_time < job.start_time <= job.end_time
            if job.state is JobState.TIMEOUT:
                assert job.end_time - job.start_time == timedelta(minutes=job.time_limit_min)
                assert job.exit_signal == 15
            if job.state is JobState.CANCELLED:
                assert job.exit_signal == 15
            if job.state is JobState.FAILED:
                assert job.exit_code != 0
            if job.state is JobState.COMPLETED:
                assert (job.exit_code, job.exit_signal) == (0, None)
    pending_partitions = {j.partition for j in jobs.jobs.values() if j.state is JobState.PENDING}
    assert resources_heads == Counter(pending_partitions), "one Resources head per partition"

    unavailable: Counter[str] = Counter()
    for name, node in nodes.nodes.items():
        assert name == node.name
        assert 0 <= node.cpus_allocated <= node.cpus_total
        assert 0 <= node.memory_allocated_mb <= node.memory_total_mb
        assert 0 <= node.gpus_allocated <= node.gpus_total
        # The node's allocation is exactly the sum of its running jobs.
        assert (node.cpus_allocated, node.memory_allocated_mb, node.gpus_allocated) == (
            used[name]["cpus"],
            used[name]["mem"],
            used[name]["gpus"],
        )
        assert (node.state is NodeState.DOWN) == (NOT_RESPONDING in node.flags)
        if node.state in UNAVAILABLE_NODE_STATES:
            unavailable[node.partitions[0]] += 1
            assert node.reason
        else:
            assert node.reason is None
        expected = {
            NodeState.IDLE: node.cpus_allocated == 0,
            NodeState.MIXED: 0 < node.cpus_allocated < node.cpus_total,
            NodeState.ALLOCATED: node.cpus_allocated == node.cpus_total,
            NodeState.DRAINING: node.cpus_allocated > 0,
            NodeState.DRAINED: node.cpus_allocated == 0,
            NodeState.DOWN: node.cpus_allocated == 0 and node.cpu_load is None,
        }
        assert expected.get(node.state, False), node
        if node.memory_free_mb is not None:
            assert 0 <= node.memory_free_mb <= node.memory_total_mb
            assert node.cpu_load is not None and 0 < node.cpu_load <= node.cpus_total + 1
    for partition, out in unavailable.items():
        size = sum(n.partitions == (partition,) for n in nodes.nodes.values())
        assert out <= max(1, size // 4)

    # The scheduler wastes nothing: a job waiting since before this tick fits
    # at most one in-service node (the one reserved for its partition's head),
    # never an idle one, and the head itself fits none.
    for job in jobs.jobs.values():
        if job.state is not JobState.PENDING or job.submit_time == now:
            continue
        fits = [
            n
            for n in nodes.nodes.values()
            if n.partitions == (job.partition,)
            and n.state in {NodeState.IDLE, NodeState.MIXED}
            and n.cpus_total - n.cpus_allocated >= job.cpus
            and n.memory_total_mb - n.memory_allocated_mb >= (job.memory_mb or 0)
            and n.gpus_total - n.gpus_allocated >= job.gpus
        ]
        assert len(fits) <= 1 and all(n.state is NodeState.MIXED for n in fits), job
        assert not (fits and job.reason == "Resources"), job


# -- construction ----------------------------------------------------------------


@pytest.mark.parametrize("count", [-1, 0, 7, 33, 64])
def test_node_count_out_of_range_is_rejected(count: int) -> None:
    with pytest.raises(ValueError, match="nodes"):
        SimulatedCluster(1, START, count)


@pytest.mark.parametrize(("count", "gpu_nodes"), [(8, 2), (16, 4), (31, 7), (32, 8)])
def test_node_layout(count: int, gpu_nodes: int) -> None:
    nodes = SimulatedCluster(1, START, count).nodes_snapshot().nodes
    assert list(nodes) == [f"node{i:03d}" for i in range(1, count + 1)]
    gpu = [n for n in nodes.values() if n.partitions == ("gpu",)]
    cpu = [n for n in nodes.values() if n.partitions == ("cpu",)]
    assert len(gpu) == gpu_nodes and len(cpu) == count - gpu_nodes
    assert all((n.cpus_total, n.memory_total_mb, n.gpus_total) == (64, 262144, 0) for n in cpu)
    assert all((n.cpus_total, n.memory_total_mb, n.gpus_total) == (64, 524288, 4) for n in gpu)
    assert all(n.state is NodeState.IDLE for n in nodes.values())


def test_start_and_targets_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedCluster(1, datetime(2024, 1, 1))
    cluster = SimulatedCluster(1, START)
    with pytest.raises(ValueError, match="timezone-aware"):
        cluster.advance_to(datetime(2024, 3, 4, 9, 0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mean_interarrival_s": 0},
        {"min_job_age_s": -1},
        {"drains_per_node_day": -0.1},
        {"max_pending": 0},
        {"archive_size": 0},
        {"warmup_s": -5},
    ],
)
def test_bad_tunables_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulatedCluster(1, START, **kwargs)


def test_start_in_another_timezone_is_normalised_to_utc() -> None:
    cluster = SimulatedCluster(1, START.astimezone(timezone(timedelta(hours=2))))
    assert cluster.now == START and cluster.now.tzinfo is UTC


# -- determinism -----------------------------------------------------------------


def full_state(cluster: SimulatedCluster) -> tuple[JobsListing, NodesListing, list[Any]]:
    finals = [cluster.final_record(str(i)) for i in range(1000, 1000 + 5000)]
    return cluster.jobs_snapshot(), cluster.nodes_snapshot(), finals


def test_same_seed_gives_the_same_state_whatever_the_steps() -> None:
    end = START + 3 * HOUR
    one_shot = busy_admin(7)
    one_shot.advance_to(end)

    every_second = busy_admin(7)
    t = START
    while t < START + 20 * timedelta(minutes=1):
        t += timedelta(seconds=1)
        every_second.advance_to(t)
    every_second.advance_to(end)

    irregular = busy_admin(7)
    steps = random.Random(99)
    t = START
    while t < end:
        # Fractions of a second, repeats and trips to the past included.
        t = min(end, t + timedelta(seconds=steps.choice([0.3, 1, 1.7, 59, 600, 1234.5])))
        irregular.advance_to(t)
        irregular.advance_to(t - timedelta(seconds=steps.randint(0, 900)))
        irregular.advance_to(t)

    reference = full_state(one_shot)
    assert len(reference[0].jobs) > 50, "the comparison must cover a busy cluster"
    assert full_state(every_second) == reference
    assert full_state(irregular) == reference


def test_intermediate_states_match_between_step_patterns() -> None:
    coarse = SimulatedCluster(3, START, 8)
    fine = SimulatedCluster(3, START, 8)
    for minutes in range(10, 121, 10):
        t = START + timedelta(minutes=minutes)
        coarse.advance_to(t)
        for second in range(600):
            fine.advance_to(t - timedelta(seconds=599 - second))
        assert coarse.jobs_snapshot() == fine.jobs_snapshot()
        assert coarse.nodes_snapshot() == fine.nodes_snapshot()


_DIGEST_SCRIPT = textwrap.dedent(
    """
    import hashlib
    from datetime import UTC, datetime, timedelta
    from slurmcast.sources.simulator.cluster import SimulatedCluster
    start = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
    c = SimulatedCluster(11, start, 12, drains_per_node_day=3.0, downs_per_node_day=1.5)
    parts = []
    for hour in range(1, 5):
        c.advance_to(start + timedelta(hours=hour))
        parts.append(repr(sorted(c.jobs_snapshot().jobs.items())))
        parts.append(repr(sorted(c.nodes_snapshot().nodes.items())))
    print(hashlib.sha256("".join(parts).encode()).hexdigest())
    """
)


def test_state_does_not_depend_on_hash_randomisation() -> None:
    """Iterating a set of strings would make runs differ between processes."""
    digests = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_different_seeds_give_different_clusters() -> None:
    a, b = SimulatedCluster(1, START), SimulatedCluster(2, START)
    a.advance_to(START + HOUR)
    b.advance_to(START + HOUR)
    assert a.jobs_snapshot().jobs != b.jobs_snapshot().jobs


def test_advancing_to_the_past_is_a_no_op() -> None:
    cluster = SimulatedCluster(5, START)
    cluster.advance_to(START + HOUR)
    jobs, nodes = cluster.jobs_snapshot(), cluster.nodes_snapshot()
    cluster.advance_to(START)
    cluster.advance_to(START + HOUR - timedelta(seconds=1))
    assert cluster.now == START + HOUR
    assert cluster.jobs_snapshot() == jobs and cluster.nodes_snapshot() == nodes


def test_time_moves_in_whole_seconds() -> None:
    cluster = SimulatedCluster(5, START)
    cluster.advance_to(START + timedelta(seconds=10.9))
    assert cluster.now == START + timedelta(seconds=10)
    assert cluster.ticks_until(START + timedelta(seconds=12.5)) == 2
    assert cluster.ticks_until(START) == 0


def test_warmup_makes_the_cluster_busy_at_start() -> None:
    cold = SimulatedCluster(5, START)
    warm = SimulatedCluster(5, START, warmup_s=3600)
    assert warm.now == cold.now == START
    assert cold.jobs_snapshot().jobs == {}
    running = [j for j in warm.jobs_snapshot().jobs.values() if j.state is JobState.RUNNING]
    assert len(running) > 20
    assert min(j.submit_time for j in running if j.submit_time) < START


# -- realism ---------------------------------------------------------------------


def test_six_hours_show_every_common_job_state_and_keep_invariants() -> None:
    cluster = SimulatedCluster(42, START, 16)
    seen: Counter[JobState] = Counter()
    node_states: Counter[NodeState] = Counter()
    for jobs, nodes in sample(cluster, START + 6 * HOUR, timedelta(seconds=30)):
        check_invariants(jobs, nodes)
        seen.update(j.state for j in jobs.jobs.values())
        node_states.update(n.state for n in nodes.nodes.values())
    for state in ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
        assert seen[JobState(state)] > 0, state
    assert node_states[NodeState.MIXED] > 0 and node_states[NodeState.ALLOCATED] > 0


def test_nodes_drain_fail_and_come_back() -> None:
    cluster = busy_admin(8)
    history: dict[str, list[NodeState]] = {}
    node_fail_jobs: list[tuple[JobRecord, NodesListing]] = []
    for jobs, nodes in sample(cluster, START + 6 * HOUR, timedelta(seconds=20)):
        check_invariants(jobs, nodes)
        for name, node in nodes.nodes.items():
            history.setdefault(name, []).append(node.state)
        node_fail_jobs += [(j, nodes) for j in jobs.jobs.values() if j.state is JobState.NODE_FAIL]
    states = {s for hist in history.values() for s in hist}
    assert {NodeState.DRAINING, NodeState.DRAINED, NodeState.DOWN} <= states

    def came_back(bad: set[NodeState]) -> bool:
        return any(
            any(a in bad and b not in UNAVAILABLE_NODE_STATES for a, b in itertools.pairwise(h))
            for h in history.values()
        )

    assert came_back({NodeState.DRAINED}), "a drained node was resumed"
    assert not came_back({NodeState.DRAINING}), "the admin waits until the node is empty"
    assert came_back({NodeState.DOWN}), "a down node came back"
    assert node_fail_jobs, "jobs on a failing node end NODE_FAIL"
    for job, nodes in node_fail_jobs:
        # A node stays down at least as long as a finished job stays listed.
        assert job.start_time is not None
        assert nodes.nodes[job.nodes[0]].state is NodeState.DOWN


def test_heavy_load_keeps_invariants() -> None:
    """A long queue, frequent drains and many reservations, checked every 10 s."""
    cluster = SimulatedCluster(1, START, 8, mean_interarrival_s=4.0, drains_per_node_day=2.0)
    most_pending = 0
    for jobs, nodes in sample(cluster, START + 3 * HOUR, timedelta(seconds=10)):
        check_invariants(jobs, nodes)
        pending = sum(j.state is JobState.PENDING for j in jobs.jobs.values())
        most_pending = max(most_pending, pending)
    assert most_pending > 100


def test_default_rates_give_node_events_within_a_day() -> None:
    cluster = SimulatedCluster(42, START, 16)
    unavailable_samples = 0
    for minute in range(1, 24 * 60 + 1):
        cluster.advance_to(START + timedelta(minutes=minute))
        nodes = cluster.nodes_snapshot().nodes.values()
        unavailable_samples += any(n.state in UNAVAILABLE_NODE_STATES for n in nodes)
    assert unavailable_samples > 0
    # ...but only now and then: most of the day every node is in service.
    assert unavailable_samples < 24 * 60 / 2


def test_outcomes_over_a_day_are_realistic() -> None:
    cluster = SimulatedCluster(42, START, 16, downs_per_node_day=1.0)
    cluster.advance_to(START + DAY)
    finals = [r for i in range(1000, 30_000) if (r := cluster.final_record(str(i)))]
    assert len(finals) > 2000
    states = Counter(r.state for r in finals)
    share = {state: count / len(finals) for state, count in states.items()}
    assert 0.6 < share[JobState.COMPLETED] < 0.9
    assert 0.04 < share[JobState.FAILED] < 0.2
    for state in (JobState.TIMEOUT, JobState.CANCELLED, JobState.OUT_OF_MEMORY):
        assert 0.005 < share[state] < 0.12, state
    assert states[JobState.NODE_FAIL] > 0
    cancelled = [r for r in finals if r.state is JobState.CANCELLED]
    assert any(r.start_time is None for r in cancelled), "some cancelled while pending"
    assert any(r.start_time is not None for r in cancelled), "some cancelled while running"
    assert {r.exit_code for r in finals if r.state is JobState.FAILED} <= {1, 2, 127, 137, 139}
    oom = next(r for r in finals if r.state is JobState.OUT_OF_MEMORY)
    assert (oom.exit_code, oom.exit_signal) == (0, 9)
    assert {r.user for r in finals} >= {"alice", "bob", "carol", "dave", "erin"}
    assert len({r.name for r in finals}) > 10
    assert any(r.gpus == 4 and r.start_time is not None for r in finals)
    # Whole-node jobs are not starved by the stream of small ones that
    # keep filling the holes: none submitted 4 h before the end still waits.
    listed = cluster.jobs_snapshot().jobs.values()
    wide = [j for j in [*finals, *listed] if j.cpus == 64 and j.partition == "cpu"]
    assert len(wide) > 20
    assert any(j.start_time is not None for j in wide)
    stuck = [j for j in wide if j.state is JobState.PENDING]
    assert all(j.submit_time and j.submit_time > START + 20 * HOUR for j in stuck)
    runtimes = [r.end_time - r.start_time for r in finals if r.end_time and r.start_time]
    assert min(runtimes) < timedelta(minutes=1) and max(runtimes) > 2 * HOUR


def test_every_job_is_first_seen_pending_with_increasing_ids() -> None:
    cluster = SimulatedCluster(4, START, 8)
    first_seen: dict[str, JobState] = {}
    for jobs, _ in sample(cluster, START + timedelta(minutes=40), timedelta(seconds=1)):
        for job_id, job in jobs.jobs.items():
            first_seen.setdefault(job_id, job.state)
    assert len(first_seen) > 100
    assert set(first_seen.values()) == {JobState.PENDING}
    ids = sorted(int(i) for i in first_seen)
    assert ids == list(range(1000, 1000 + len(ids)))


def test_pending_queue_is_bounded() -> None:
    cluster = SimulatedCluster(4, START, 8, mean_interarrival_s=1.0, max_pending=20)
    most = 0
    for jobs, nodes in sample(cluster, START + 2 * HOUR, timedelta(minutes=1)):
        check_invariants(jobs, nodes)
        pending = sum(j.state is JobState.PENDING for j in jobs.jobs.values())
        assert pending <= 20
        most = max(most, pending)
    assert most >= 18, "the bound was actually reached"


# -- finished jobs ---------------------------------------------------------------


def test_finished_jobs_vanish_after_min_job_age_and_stay_resolvable() -> None:
    age = timedelta(seconds=120)
    cluster = SimulatedCluster(6, START, 16, min_job_age_s=120)
    cluster.advance_to(START + 2 * HOUR)
    finished = [j for j in cluster.jobs_snapshot().jobs.values() if j.state.is_terminal]
    assert finished
    job = max(finished, key=lambda j: (j.end_time or START, j.job_id))
    assert job.end_time is not None

    cluster.advance_to(job.end_time + age - timedelta(seconds=1))
    assert cluster.jobs_snapshot().jobs[job.job_id] == job
    cluster.advance_to(job.end_time + age)
    assert job.job_id not in cluster.jobs_snapshot().jobs
    assert cluster.final_record(job.job_id) == job
    assert job.exit_code is not None


def test_jobs_that_vanish_unfinished_resolve_through_final_record() -> None:
    cluster = SimulatedCluster(6, START, 16, min_job_age_s=60)
    previous: JobsListing | None = None
    resolved = 0
    for jobs, _ in sample(cluster, START + 4 * HOUR, timedelta(minutes=10)):
        if previous is not None:
            for job_id, job in previous.jobs.items():
                if job.state.is_terminal or job_id in jobs.jobs:
                    continue
                final = cluster.final_record(job_id)
                assert final is not None, job_id
                assert final.state.is_terminal and final.exit_code is not None
                assert final.end_time is not None
                assert previous.taken_at < final.end_time <= jobs.taken_at
                resolved += 1
        previous = jobs
    assert resolved > 20


def test_final_record_is_none_for_unknown_and_unfinished_jobs() -> None:
    cluster = SimulatedCluster(6, START, 16)
    cluster.advance_to(START + HOUR)
    live = [j for j in cluster.jobs_snapshot().jobs.values() if not j.state.is_terminal]
    assert live
    assert all(cluster.final_record(j.job_id) is None for j in live)
    assert cluster.final_record("999999") is None
    assert cluster.final_record("not-a-job") is None


def test_archive_is_bounded() -> None:
    cluster = SimulatedCluster(6, START, 16, archive_size=50)
    cluster.advance_to(START + 3 * HOUR)
    archived = [r for i in range(1000, 5000) if (r := cluster.final_record(str(i)))]
    assert len(archived) == 50
    assert cluster.final_record("1000") is None
