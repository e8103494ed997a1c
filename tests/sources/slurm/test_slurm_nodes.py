"""sinfo --json, the delimited sinfo fallback and scontrol show node, on real Slurm outputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from slurmcast.core.records import NOT_RESPONDING, NodeRecord, NodesListing, NodeState
from slurmcast.errors import SourceError
from slurmcast.sources.slurm.nodes import (
    SCONTROL_NODES_ARGS,
    SINFO_ARGS,
    SINFO_DELIMITER,
    SINFO_FIELDS,
    fill_allocations,
    parse_nodes_json,
    parse_scontrol_nodes,
    parse_sinfo_delimited,
    scontrol_pairs,
)

from support.slurm_fixtures import NODE_LISTINGS, OLDEST, files, folder, versions_with

V2205 = folder(OLDEST)
TAKEN_AT = datetime(2026, 11, 28, 3, 27, tzinfo=UTC)


def _json_nodes(path: Path) -> dict[str, NodeRecord]:
    snapshot = parse_nodes_json(path.read_bytes(), TAKEN_AT)
    assert snapshot.taken_at == TAKEN_AT
    return dict(snapshot.nodes)


# ---------------------------------------------------------------- every version


@pytest.mark.parametrize("version", versions_with(*NODE_LISTINGS))
def test_every_node_json_fixture_parses(version: str) -> None:
    paths = files(version, *NODE_LISTINGS, "rest_v*_node_*.json")
    assert paths
    for path in paths:
        names = {node["name"] for node in orjson.loads(path.read_bytes())["nodes"]}
        nodes = _json_nodes(path)
        assert set(nodes) == names, path.name
        for node in nodes.values():
            assert node.state is not NodeState.UNKNOWN
            assert node.cpus_total > 0 and node.memory_total_mb > 0
            assert 0 <= node.gpus_allocated <= node.gpus_total or node.gpus_total == 0


@pytest.mark.parametrize("version", versions_with("collector_sinfo*.txt"))
@pytest.mark.parametrize("suffix", ["", "_just_resumed"])
def test_collector_json_text_and_scontrol_agree(version: str, suffix: str) -> None:
    directory = folder(version)
    from_json = _json_nodes(directory / f"collector_sinfo_json{suffix}.json")
    text = (directory / f"collector_sinfo{suffix}.txt").read_bytes()
    from_text = dict(parse_sinfo_delimited(text, TAKEN_AT).nodes)
    scontrol = (directory / f"collector_scontrol_show_node{suffix}.txt").read_bytes()
    from_scontrol = parse_scontrol_nodes(scontrol)
    assert from_json == from_text == from_scontrol


# ---------------------------------------------------------------- 22.05 samples


def test_sample_nodes() -> None:
    nodes = _json_nodes(V2205 / "sinfo_N_json.json")
    assert list(nodes) == ["node001", "node002", "node003", "node004"]
    assert nodes["node001"] == NodeRecord(
        name="node001",
        state=NodeState.MIXED,
        cpus_total=4,
        cpus_allocated=2,
        memory_total_mb=4000,
        memory_allocated_mb=600,
        gpus_total=2,
        gpus_allocated=0,
        flags=frozenset(),
        partitions=("debug", "gpu"),
        reason=None,
        cpu_load=0.87,
        memory_free_mb=23155,
    )
    node002 = nodes["node002"]
    assert node002.state is NodeState.ALLOCATED
    assert (node002.gpus_total, node002.gpus_allocated) == (2, 1)
    assert (node002.cpus_allocated, node002.memory_allocated_mb) == (4, 1624)
    # No GRES configured, yet gres_used reads "gpu:0".
    assert (nodes["node003"].gpus_total, nodes["node003"].gpus_allocated) == (0, 0)
    assert nodes["node004"].state is NodeState.IDLE
    assert nodes["node004"].partitions == ("debug",)


def test_sample_drained_nodes() -> None:
    nodes = _json_nodes(V2205 / "sinfo_N_json_drained.json")
    drained = nodes["node004"]
    assert drained.state is NodeState.DRAINED
    assert drained.flags == {"DRAIN"}
    assert drained.reason == "maintenance test"
    draining = nodes["node003"]
    assert draining.state is NodeState.DRAINING
    assert draining.reason == "drain while busy"
    assert draining.cpus_allocated == 1


def test_collector_just_resumed_node_is_idle_not_responding() -> None:
    nodes = _json_nodes(V2205 / "collector_sinfo_json_just_resumed.json")
    node = nodes["node004"]
    assert node.state is NodeState.IDLE
    assert node.not_responding and node.flags == {NOT_RESPONDING}
    assert node.reason is None
    assert not nodes["node001"].not_responding


def test_collector_drain_reason_with_pipe() -> None:
    nodes = _json_nodes(V2205 / "collector_sinfo_json.json")
    assert nodes["node003"].state is NodeState.DRAINING
    assert nodes["node003"].reason == "busy drain | test"
    assert nodes["node004"].state is NodeState.DRAINED
    assert nodes["node004"].reason == "maintenance test"
    assert nodes["node001"].gpus_allocated == 2


def _project_wide_sample(path: Path) -> str:
    """Rewrite the ``sinfo -N -O ...:|`` sample into the collector's field order."""
    header, *lines = path.read_text().splitlines()
    columns = header.split("|")
    source = {
        "NodeList": columns.index("NODELIST"),
        "Partition": columns.index("PARTITION"),
        "StateComplete": columns.index("STATE"),  # StateLong: "mixed", "allocated"
        "CPUsState": columns.index("CPUS(A/I/O/T)"),
        "CPUsLoad": columns.index("CPU_LOAD"),
        "Memory": columns.index("MEMORY"),
        "AllocMem": columns.index("ALLOCMEM"),
        "FreeMem": columns.index("FREE_MEM"),
        "Gres": columns.index("GRES"),
        "GresUsed": columns.index("GRES_USED"),
        "Reason": columns.index("REASON"),
    }
    rows = []
    for line in lines:
        values = line.split("|")
        rows.append(SINFO_DELIMITER.join(values[source[field]] for field in SINFO_FIELDS))
    return "\n".join(rows) + "\n"


def test_wide_text_sample_matches_json_sample() -> None:
    text = _project_wide_sample(V2205 / "sinfo_O_wide.txt")
    from_text = parse_sinfo_delimited(text, TAKEN_AT).nodes
    assert dict(from_text) == _json_nodes(V2205 / "sinfo_N_json.json")
    # Each node is listed once per partition: merged, default-partition "*" dropped.
    assert from_text["node001"].partitions == ("debug", "gpu")


def test_scontrol_sample_matches_json_sample() -> None:
    from_scontrol = parse_scontrol_nodes((V2205 / "scontrol_show_node_o.txt").read_bytes())
    assert from_scontrol == _json_nodes(V2205 / "sinfo_N_json.json")


def test_scontrol_drained_sample() -> None:
    nodes = parse_scontrol_nodes((V2205 / "scontrol_show_node_o_drained.txt").read_text())
    assert set(nodes) == {"node003", "node004"}
    assert nodes["node004"].state is NodeState.DRAINED
    assert nodes["node004"].reason == "maintenance test"  # "[root@...]" stamp removed
    assert nodes["node003"].state is NodeState.MIXED  # resumed by the time of capture


def test_scontrol_values_with_spaces() -> None:
    line = (V2205 / "scontrol_show_node_o.txt").read_text().splitlines()[0]
    pairs = scontrol_pairs(line)
    assert pairs["OS"] == "Linux 6.18.44-fc-v595 #1 SMP PREEMPT_DYNAMIC @0"
    assert pairs["CfgTRES"] == "cpu=4,mem=4000M,billing=4,gres/gpu=2"
    assert pairs["ExtSensorsTemp"] == "n/s"
    assert "Reason" not in pairs


def test_rest_v0036_lacks_allocations_that_scontrol_fills() -> None:
    old = parse_nodes_json((V2205 / "rest_v0.0.36_nodes.json").read_bytes(), TAKEN_AT)
    node = old.nodes["node002"]
    assert (node.memory_allocated_mb, node.cpus_allocated, node.partitions) == (0, 0, ())
    # v0.0.36 reports the base state: partly allocated node001 reads "allocated".
    assert old.nodes["node001"].state is NodeState.ALLOCATED
    details = parse_scontrol_nodes((V2205 / "scontrol_show_node_o.txt").read_bytes())
    filled = fill_allocations(old, details)
    assert filled.taken_at == TAKEN_AT
    assert dict(filled.nodes) == _json_nodes(V2205 / "sinfo_N_json.json")


def test_fill_allocations_keeps_nodes_without_details() -> None:
    snapshot = parse_nodes_json((V2205 / "sinfo_N_json.json").read_bytes(), TAKEN_AT)
    assert fill_allocations(snapshot, {}) == NodesListing(TAKEN_AT, dict(snapshot.nodes))


# ------------------------------------------------------------------ formats


def test_sinfo_args_use_the_field_list() -> None:
    assert SINFO_ARGS[0] == "sinfo"
    assert "--Node" in SINFO_ARGS and "--noheader" in SINFO_ARGS
    specs = SINFO_ARGS[-1].removeprefix("--Format=").split(",")
    assert [spec.split(":")[0] for spec in specs] == list(SINFO_FIELDS)
    assert specs[-1] == "Reason:"
    assert SCONTROL_NODES_ARGS[0] == "scontrol" and "--oneliner" in SCONTROL_NODES_ARGS


def _row(**overrides: str) -> str:
    values = {
        "NodeList": "gpu01",
        "Partition": "gpu*",
        "StateComplete": "mixed+drain",
        "CPUsState": "8/56/0/64",
        "CPUsLoad": "7.50",
        "Memory": "512000",
        "AllocMem": "65536",
        "FreeMem": "N/A",
        "Gres": "gpu:a100:4(S:0-1),shard:8",
        "GresUsed": "gpu:a100:1(IDX:0),shard:0(0/8)",
        "Reason": "bad | fan",
    }
    values.update(overrides)
    return SINFO_DELIMITER.join(values[field] for field in SINFO_FIELDS)


def test_delimited_row() -> None:
    nodes = parse_sinfo_delimited(_row() + "\n" + _row(Partition="all") + "\n", TAKEN_AT).nodes
    assert nodes == {
        "gpu01": NodeRecord(
            name="gpu01",
            state=NodeState.DRAINING,
            cpus_total=64,
            cpus_allocated=8,
            memory_total_mb=512000,
            memory_allocated_mb=65536,
            gpus_total=4,
            gpus_allocated=1,
            flags=frozenset({"DRAIN"}),
            partitions=("gpu", "all"),
            reason="bad | fan",
            cpu_load=7.5,
            memory_free_mb=None,
        )
    }


def test_json_merges_nodes_listed_once_per_partition() -> None:
    node: dict[str, Any] = {
        "name": "n1",
        "state": "idle",
        "state_flags": [],
        "cpus": 4,
        "real_memory": 1000,
        "gres": "",
        "gres_used": "",
        "partitions": ["debug"],
    }
    raw = orjson.dumps({"errors": [], "nodes": [node, {**node, "partitions": ["gpu"]}, node]})
    nodes = parse_nodes_json(raw, TAKEN_AT).nodes
    assert list(nodes) == ["n1"]
    assert nodes["n1"].partitions == ("debug", "gpu")


def test_json_v0040_shapes() -> None:
    node = {
        "name": "n1",
        "state": ["IDLE", "DRAIN", "NOT_RESPONDING"],
        "cpus": 4,
        "alloc_cpus": 0,
        "real_memory": 1000,
        "alloc_memory": 0,
        "free_mem": {"set": True, "infinite": False, "number": 900},
        "cpu_load": 150,
        "gres": "gpu:2",
        "gres_used": "gpu:0(IDX:N/A)",
        "partitions": ["debug"],
        "reason": "dead fan",
    }
    record = parse_nodes_json(orjson.dumps({"nodes": [node]}), TAKEN_AT).nodes["n1"]
    assert record.state is NodeState.DRAINED
    assert record.flags == {"DRAIN", NOT_RESPONDING}
    assert (record.memory_free_mb, record.cpu_load, record.gpus_total) == (900, 1.5, 2)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        (V2205 / "sinfo_N_json.json").read_bytes()[:1000],
        b"[]",
        b'{"errors": []}',
        b'{"nodes": "node001"}',
        b'{"nodes": [7]}',
        b'{"nodes": [{"state": "idle"}]}',
        b'{"nodes": [{"name": "n1"}]}',
        b'{"nodes": [{"name": "n1", "state": "idle", "gres": "gpu:x:y"}]}',
        b'{"errors": [{"error": "Unable to contact slurm controller"}], "nodes": []}',
    ],
)
def test_json_malformed_input(raw: bytes) -> None:
    with pytest.raises(SourceError):
        parse_nodes_json(raw, TAKEN_AT)


@pytest.mark.parametrize(
    "text",
    [
        "node001|debug*|mixed|4\n",
        _row(CPUsState="8/56"),
        _row(Memory="lots"),
        _row(CPUsLoad="high"),
        _row(NodeList=""),
        _row(StateComplete=""),
        _row(GresUsed="gpu:x:y"),
    ],
)
def test_delimited_malformed_input(text: str) -> None:
    with pytest.raises(SourceError):
        parse_sinfo_delimited(text, TAKEN_AT)


@pytest.mark.parametrize(
    "text",
    [
        "garbage without pairs\n",
        "Arch=x86_64 State=IDLE\n",
        "NodeName=n1 CPUTot=4\n",
        "NodeName=n1 State=IDLE CPUTot=four\n",
        "NodeName=n1 State=IDLE RealMemory=lots\n",
    ],
)
def test_scontrol_malformed_input(text: str) -> None:
    with pytest.raises(SourceError):
        parse_scontrol_nodes(text)


def test_scontrol_gpus_from_alloc_tres_without_details() -> None:
    line = (
        "NodeName=g1 CPUAlloc=2 CPUTot=8 CPULoad=N/A Gres=gpu:4 RealMemory=1000 AllocMem=10 "
        "FreeMem=N/A State=DOWN+DRAIN+NOT_RESPONDING Partitions=gpu "
        "AllocTRES=cpu=2,mem=10M,gres/gpu=3 Reason=Not responding [slurm@2026-11-28T03:00:00]"
    )
    node = parse_scontrol_nodes(line)["g1"]
    assert (node.gpus_total, node.gpus_allocated) == (4, 3)
    assert node.state is NodeState.DRAINED
    assert node.not_responding
    assert (node.cpu_load, node.memory_free_mb) == (None, None)
    assert node.reason == "Not responding"


def test_scontrol_empty_output() -> None:
    assert parse_scontrol_nodes(b"") == {}
