"""Job and node state spellings to the model's enums."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurmcast.core.records import NOT_RESPONDING, JobState, NodeState
from slurmcast.sources.slurm.states import (
    JOB_STATE_CODES,
    job_state_from_code,
    node_display_state,
    parse_job_state,
    parse_node_state,
)

from support.slurm_fixtures import OLDEST, folder, versions_with

_CODES = {
    "R": "RUNNING",
    "PD": "PENDING",
    "CG": "COMPLETING",
    "CD": "COMPLETED",
    "CA": "CANCELLED",
    "F": "FAILED",
    "TO": "TIMEOUT",
    "NF": "NODE_FAIL",
    "PR": "PREEMPTED",
    "BF": "BOOT_FAIL",
    "DL": "DEADLINE",
    "OOM": "OUT_OF_MEMORY",
    "S": "SUSPENDED",
    "CF": "CONFIGURING",
    "RQ": "REQUEUED",
    "RH": "REQUEUE_HOLD",
    "RF": "REQUEUE_FED",
    "RD": "RESV_DEL_HOLD",
    "RS": "RESIZING",
    "RV": "REVOKED",
    "SI": "SIGNALING",
    "SE": "SPECIAL_EXIT",
    "SO": "STAGE_OUT",
    "ST": "STOPPED",
}


@pytest.mark.parametrize(("code", "name"), sorted(_CODES.items()))
def test_job_state_codes(code: str, name: str) -> None:
    assert job_state_from_code(code) is JobState(name)
    assert job_state_from_code(code.lower()) is JobState(name)
    assert parse_job_state(code) is JobState(name)
    assert parse_job_state(name) is JobState(name)


def test_code_table_is_complete() -> None:
    assert set(JOB_STATE_CODES) == set(_CODES)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("CANCELLED by 0", JobState.CANCELLED),
        ("CANCELLED by 12345", JobState.CANCELLED),
        ("CANCELLED+", JobState.CANCELLED),
        ("OUT_OF_ME+", JobState.UNKNOWN),
        (" running ", JobState.RUNNING),
        ("RUNNING,COMPLETING", JobState.COMPLETING),
        (["PENDING", "REQUEUED"], JobState.REQUEUED),
        (["RUNNING", "COMPLETING"], JobState.COMPLETING),
        (["COMPLETED", "COMPLETING", "STAGE_OUT"], JobState.COMPLETING),
        (["PENDING", "REQUEUE_HOLD"], JobState.REQUEUE_HOLD),
        (["FAILED", "LAUNCH_FAILED"], JobState.FAILED),
        (["RUNNING", "UPDATE_DB"], JobState.RUNNING),
        (["COMPLETED"], JobState.COMPLETED),
        ([], JobState.UNKNOWN),
        ("?", JobState.UNKNOWN),
        ("SOMETHING_NEW", JobState.UNKNOWN),
    ],
)
def test_parse_job_state(value: str | list[str], expected: JobState) -> None:
    assert parse_job_state(value) is expected


def test_unknown_code() -> None:
    assert job_state_from_code("XX") is JobState.UNKNOWN


DRAIN = "DRAIN"


@pytest.mark.parametrize(
    ("state", "flags", "expected", "expected_flags"),
    [
        # REST v0.0.38: lower-case base + state_flags.
        ("idle", [], NodeState.IDLE, set()),
        ("mixed", [DRAIN], NodeState.DRAINING, {DRAIN}),
        ("allocated", [DRAIN], NodeState.DRAINING, {DRAIN}),
        ("idle", [DRAIN], NodeState.DRAINED, {DRAIN}),
        ("idle", [NOT_RESPONDING], NodeState.IDLE, {NOT_RESPONDING}),
        ("down", [NOT_RESPONDING], NodeState.DOWN, {NOT_RESPONDING}),
        # REST v0.0.40+: arrays.
        (["IDLE", "DRAIN"], [], NodeState.DRAINED, {DRAIN}),
        (["MIXED", "DRAIN"], [], NodeState.DRAINING, {DRAIN}),
        (["IDLE", "DRAIN", "COMPLETING"], [], NodeState.DRAINING, {DRAIN, "COMPLETING"}),
        (["DOWN", "DRAIN"], [], NodeState.DRAINED, {DRAIN}),
        (["DOWN", "NOT_RESPONDING"], [], NodeState.DOWN, {NOT_RESPONDING}),
        (["IDLE", "COMPLETING"], [], NodeState.COMPLETING, {"COMPLETING"}),
        (["ALLOCATED", "COMPLETING"], [], NodeState.ALLOCATED, {"COMPLETING"}),
        (["IDLE", "MAINTENANCE"], [], NodeState.MAINT, {"MAINTENANCE"}),
        (["MIXED", "MAINTENANCE"], [], NodeState.MIXED, {"MAINTENANCE"}),
        (["IDLE", "MAINTENANCE", "DRAIN"], [], NodeState.DRAINED, {"MAINTENANCE", DRAIN}),
        (["IDLE", "REBOOT_REQUESTED"], [], NodeState.REBOOT, {"REBOOT_REQUESTED"}),
        (["ALLOCATED", "REBOOT_REQUESTED"], [], NodeState.ALLOCATED, {"REBOOT_REQUESTED"}),
        (["IDLE", "FAIL"], [], NodeState.FAIL, {"FAIL"}),
        (["MIXED", "FAIL"], [], NodeState.FAIL, {"FAIL"}),
        (["ALLOCATED", "FAIL"], [], NodeState.FAILING, {"FAIL"}),
        (["IDLE", "INVALID_REG", "DRAIN"], [], NodeState.INVAL, {"INVALID_REG", DRAIN}),
        (["IDLE", "RESERVED"], [], NodeState.RESERVED, {"RESERVED"}),
        (["IDLE", "RESERVED", NOT_RESPONDING], [], NodeState.IDLE, {"RESERVED", NOT_RESPONDING}),
        (["IDLE", "CLOUD", "POWERED_DOWN"], [], NodeState.IDLE, {"CLOUD", "POWERED_DOWN"}),
        (["UNKNOWN", "POWERED_DOWN"], [], NodeState.POWERED_DOWN, {"POWERED_DOWN"}),
        (["FUTURE"], [], NodeState.FUTURE, set()),
        # scontrol and sinfo -O StateComplete.
        ("IDLE+DRAIN", [], NodeState.DRAINED, {DRAIN}),
        ("ALLOCATED+DRAIN", [], NodeState.DRAINING, {DRAIN}),
        ("idle+not_responding", [], NodeState.IDLE, {NOT_RESPONDING}),
        ("DOWN+DRAIN+NOT_RESPONDING", [], NodeState.DRAINED, {DRAIN, NOT_RESPONDING}),
        ("IDLE*+DRAIN", [], NodeState.DRAINED, {DRAIN, NOT_RESPONDING}),
        # sinfo long (%T / StateLong) and compact (%t / StateCompact) words.
        ("idle*", [], NodeState.IDLE, {NOT_RESPONDING}),
        ("mixed*", [], NodeState.MIXED, {NOT_RESPONDING}),
        ("down*", [], NodeState.DOWN, {NOT_RESPONDING}),
        ("drained", [], NodeState.DRAINED, {DRAIN}),
        ("drain", [], NodeState.DRAINED, {DRAIN}),
        ("drain*", [], NodeState.DRAINED, {DRAIN, NOT_RESPONDING}),
        ("draining", [], NodeState.DRAINING, {DRAIN}),
        ("drng", [], NodeState.DRAINING, {DRAIN}),
        ("drng@", [], NodeState.DRAINING, {DRAIN, "REBOOT_REQUESTED"}),
        ("mix", [], NodeState.MIXED, set()),
        ("mix-", [], NodeState.MIXED, {"PLANNED"}),
        ("alloc", [], NodeState.ALLOCATED, set()),
        ("allocated+", [], NodeState.ALLOCATED, {"COMPLETING"}),
        ("alloc+", [], NodeState.ALLOCATED, {"COMPLETING"}),
        ("comp", [], NodeState.COMPLETING, {"COMPLETING"}),
        ("completing", [], NodeState.COMPLETING, {"COMPLETING"}),
        ("idle~", [], NodeState.IDLE, {"POWERED_DOWN"}),
        ("idle#", [], NodeState.IDLE, {"POWERING_UP"}),
        ("idle%", [], NodeState.IDLE, {"POWERING_DOWN"}),
        ("idle!", [], NodeState.IDLE, {"POWER_DOWN"}),
        ("mix$", [], NodeState.MIXED, {"MAINTENANCE"}),
        ("drain$", [], NodeState.DRAINED, {DRAIN, "MAINTENANCE"}),
        ("maint", [], NodeState.MAINT, {"MAINTENANCE"}),
        ("resv", [], NodeState.RESERVED, {"RESERVED"}),
        ("reserved", [], NodeState.RESERVED, {"RESERVED"}),
        ("boot^", [], NodeState.REBOOT, {"REBOOT_REQUESTED", "REBOOT_ISSUED"}),
        ("fail", [], NodeState.FAIL, {"FAIL"}),
        ("failg", [], NodeState.FAILING, {"FAIL"}),
        ("failing*", [], NodeState.FAILING, {"FAIL", NOT_RESPONDING}),
        ("inval", [], NodeState.INVAL, {"INVALID_REG"}),
        ("futr", [], NodeState.FUTURE, set()),
        ("unk*", [], NodeState.UNKNOWN, {NOT_RESPONDING}),
        ("powered_dn", [], NodeState.POWERED_DOWN, {"POWERED_DOWN"}),
        ("plnd", [], NodeState.IDLE, {"PLANNED"}),
        ("something-new", [], NodeState.UNKNOWN, set()),
    ],
)
def test_parse_node_state(
    state: str | list[str], flags: list[str], expected: NodeState, expected_flags: set[str]
) -> None:
    display, found = parse_node_state(state, flags)
    assert display is expected
    assert found == expected_flags


def test_node_display_state_follows_sinfo_precedence() -> None:
    assert node_display_state("IDLE", {"DRAIN"}) is NodeState.DRAINED
    assert node_display_state("MIXED", {"DRAIN"}) is NodeState.DRAINING
    assert node_display_state("IDLE", {"DRAIN", "FAIL"}) is NodeState.DRAINED
    assert node_display_state("ALLOCATED", set()) is NodeState.ALLOCATED
    assert node_display_state("ERROR", set()) is NodeState.UNKNOWN


def _pipe_rows(path: Path) -> list[dict[str, str]]:
    header, *lines = path.read_text().splitlines()
    names = header.split("|")
    rows = []
    for line in lines:
        values = line.split("|")
        row: dict[str, str] = {}
        for name, value in zip(names, values, strict=True):
            # The drained sample has STATE twice: long (%T) then compact (%t).
            row[name if name not in row else f"{name}_COMPACT"] = value
        rows.append(row)
    return rows


@pytest.mark.parametrize("version", versions_with("sinfo_N_pipe_drained.txt"))
def test_sinfo_long_and_compact_words_agree(version: str) -> None:
    path = folder(version) / "sinfo_N_pipe_drained.txt"
    rows = _pipe_rows(path)
    assert rows
    for row in rows:
        assert parse_node_state(row["STATE"]) == parse_node_state(row["STATE_COMPACT"])


def test_sinfo_drained_sample_2205() -> None:
    rows = {row["NODELIST"]: row for row in _pipe_rows(folder(OLDEST) / "sinfo_N_pipe_drained.txt")}
    assert parse_node_state(rows["node003"]["STATE"]) == (NodeState.DRAINING, frozenset({DRAIN}))
    assert parse_node_state(rows["node003"]["STATE_COMPACT"]) == (
        NodeState.DRAINING,
        frozenset({DRAIN}),
    )
    assert parse_node_state(rows["node004"]["STATE"]) == (NodeState.DRAINED, frozenset({DRAIN}))
    assert parse_node_state(rows["node004"]["STATE_COMPACT"]) == (
        NodeState.DRAINED,
        frozenset({DRAIN}),
    )
    assert parse_node_state(rows["node002"]["STATE_COMPACT"])[0] is NodeState.ALLOCATED


def test_sinfo_just_resumed_sample_2205() -> None:
    rows = {
        row["NODELIST"]: row for row in _pipe_rows(folder(OLDEST) / "sinfo_N_pipe_just_resumed.txt")
    }
    assert parse_node_state(rows["node004"]["STATE"]) == (
        NodeState.IDLE,
        frozenset({NOT_RESPONDING}),
    )
    assert parse_node_state(rows["node003"]["STATE"]) == (
        NodeState.MIXED,
        frozenset({NOT_RESPONDING}),
    )
    assert parse_node_state(rows["node001"]["STATE"]) == (NodeState.MIXED, frozenset())
