"""Job and node states, and the usage percentages of a node record."""

import pytest

from slurmcast.core.records import (
    FAILED_JOB_STATES,
    NOT_RESPONDING,
    TERMINAL_JOB_STATES,
    JobState,
    NodeRecord,
    NodeState,
    percent,
)


@pytest.mark.parametrize(
    "state",
    [
        JobState.COMPLETED,
        JobState.CANCELLED,
        JobState.FAILED,
        JobState.TIMEOUT,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
        JobState.OUT_OF_MEMORY,
        JobState.REVOKED,
        JobState.SPECIAL_EXIT,
    ],
)
def test_finished_states_are_terminal(state: JobState) -> None:
    assert state.is_terminal


@pytest.mark.parametrize(
    "state",
    [
        JobState.PENDING,
        JobState.RUNNING,
        JobState.SUSPENDED,
        JobState.COMPLETING,  # still cleaning up: it may yet end in any final state
        JobState.CONFIGURING,
        JobState.REQUEUED,
        JobState.REQUEUE_HOLD,
        JobState.RESIZING,
        JobState.STOPPED,
        JobState.UNKNOWN,
    ],
)
def test_live_and_unknown_states_are_not_terminal(state: JobState) -> None:
    assert not state.is_terminal


def test_every_failed_state_is_terminal_and_success_is_not_a_failure() -> None:
    assert FAILED_JOB_STATES <= TERMINAL_JOB_STATES
    assert JobState.COMPLETED not in FAILED_JOB_STATES
    assert JobState.CANCELLED not in FAILED_JOB_STATES


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("RUNNING", JobState.RUNNING),
        ("running", JobState.RUNNING),
        ("  OUT_OF_MEMORY\n", JobState.OUT_OF_MEMORY),
        ("SOMETHING_NEW", JobState.UNKNOWN),
        ("R", JobState.UNKNOWN),  # compact codes are not state names
        ("", JobState.UNKNOWN),
    ],
)
def test_job_state_parse(name: str, state: JobState) -> None:
    assert JobState.parse(name) is state


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("idle", NodeState.IDLE),
        (" DRAINED ", NodeState.DRAINED),
        ("POWERED_DOWN", NodeState.POWERED_DOWN),
        ("CLOUD", NodeState.UNKNOWN),
    ],
)
def test_node_state_parse(name: str, state: NodeState) -> None:
    assert NodeState.parse(name) is state


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [
        (1, 3, 33.3),
        (2, 3, 66.7),
        (64, 64, 100.0),
        (0, 64, 0.0),
        (5, 0, 0.0),  # nothing to be a share of
        (5, -1, 0.0),
        (1, 8, 12.5),
    ],
)
def test_percent_is_one_decimal_and_zero_without_a_whole(
    part: float, whole: float, expected: float
) -> None:
    assert percent(part, whole) == expected


def test_node_usage_percentages() -> None:
    node = NodeRecord(
        name="node001",
        state=NodeState.MIXED,
        cpus_total=64,
        cpus_allocated=16,
        memory_total_mb=262144,
        memory_allocated_mb=196608,
        gpus_total=8,
        gpus_allocated=3,
    )
    assert node.cpu_usage == 25.0
    assert node.memory_usage == 75.0
    assert node.gpu_usage == 37.5


def test_node_without_gpus_or_memory_figures_uses_zero_percent() -> None:
    node = NodeRecord(name="n", state=NodeState.IDLE, cpus_total=0)
    assert (node.cpu_usage, node.memory_usage, node.gpu_usage) == (0.0, 0.0, 0.0)


def test_not_responding_comes_from_the_flag() -> None:
    quiet = NodeRecord(name="n", state=NodeState.IDLE, cpus_total=4)
    unreachable = NodeRecord(
        name="n", state=NodeState.IDLE, cpus_total=4, flags=frozenset({NOT_RESPONDING, "DRAIN"})
    )
    assert not quiet.not_responding
    assert unreachable.not_responding
