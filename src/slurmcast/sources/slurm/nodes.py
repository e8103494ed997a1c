"""sinfo / scontrol output to ``NodesListing``.

Inputs: a JSON node listing (:func:`parse_nodes_json`: ``sinfo --json`` up to
22.05, ``scontrol show nodes --json`` from 23.02, slurmrestd's
``/slurm/vX/nodes``), a delimited ``sinfo -N -O`` fallback, and ``scontrol -o
-d show node`` lines, whose allocation figures fill what old REST versions
leave out (v0.0.36 nodes have no ``alloc_memory``/``alloc_cpus``/``partitions``).

From 23.02 on ``sinfo --json`` no longer lists nodes: it prints ``sinfo``
records that group nodes of the same partition and state (``nodes.nodes``
names, ``cpus``/``memory`` as sums and min/max ranges). That shape is read too,
exactly for a record of one node (``sinfo -N``), with a group's sums spread
evenly over its nodes otherwise; the source asks ``scontrol`` instead.

A node appears once per partition in ``sinfo -N`` text output (and may in
JSON): duplicates are merged, partitions collected in order of appearance.

Longer than ~400 lines on purpose: three input shapes (JSON listings of every release,
delimited sinfo, scontrol lines) produce the same records, and they share their helpers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from slurmcast.core.records import NodeRecord, NodesListing, NodeState
from slurmcast.errors import SourceError
from slurmcast.sources.slurm._common import (
    decode_text,
    each_record,
    gc_paused,
    load_json_document,
    shape_error,
    split_fields,
)
from slurmcast.sources.slurm.gres import gpu_count, tres_get
from slurmcast.sources.slurm.hostlist import expand
from slurmcast.sources.slurm.states import parse_node_state
from slurmcast.sources.slurm.values import (
    UNSET_WORDS,
    number,
    parse_int,
    parse_memory_mb,
    to_int,
)

#: JSON node listing up to 22.05 (:func:`parse_nodes_json`). In 22.05
#: ``sinfo --json`` ignores ``-N`` and format options and lists each node once,
#: with a ``partitions`` array.
SINFO_JSON_ARGS: Final[tuple[str, ...]] = ("sinfo", "--json")

#: JSON node listing from 23.02 on (:func:`parse_nodes_json`): one record per
#: node, the shape of slurmrestd's ``/slurm/vX/nodes``.
SCONTROL_NODES_JSON_ARGS: Final[tuple[str, ...]] = ("scontrol", "show", "nodes", "--json")

#: The first release whose ``sinfo --json`` groups nodes, and whose ``scontrol`` has ``--json``.
GROUPED_SINFO_SINCE: Final = (23, 2)


def nodes_json_args(version: tuple[int, ...]) -> tuple[str, ...]:
    """The command that lists nodes one record per node in JSON on this Slurm release."""
    return SCONTROL_NODES_JSON_ARGS if version[:2] >= GROUPED_SINFO_SINCE else SINFO_JSON_ARGS


#: Field separator of the delimited format (see ``jobs.SQUEUE_DELIMITER``).
SINFO_DELIMITER: Final = "\x1f"

#: ``sinfo -O`` fields read by :func:`parse_sinfo_delimited`, in order; the
#: free-text reason is last. ``StateComplete`` (``mixed+drain``) carries every
#: flag where ``StateLong`` (``draining``) shows one at most.
SINFO_FIELDS: Final[tuple[str, ...]] = (
    "NodeList",
    "Partition",
    "StateComplete",
    "CPUsState",
    "CPUsLoad",
    "Memory",
    "AllocMem",
    "FreeMem",
    "Gres",
    "GresUsed",
    "Reason",
)

#: The ``-O`` argument (``Field:<delimiter>``; the last field ``:`` only, unpadded).
SINFO_FORMAT: Final = ",".join(
    [f"{name}:{SINFO_DELIMITER}" for name in SINFO_FIELDS[:-1]] + [f"{SINFO_FIELDS[-1]}:"]
)

#: Command line for :func:`parse_sinfo_delimited`: one line per node and
#: partition, hidden partitions included. Nodes in no partition are not listed
#: by sinfo text output at all.
SINFO_ARGS: Final[tuple[str, ...]] = (
    "sinfo",
    "--noheader",
    "--Node",
    "--all",
    f"--Format={SINFO_FORMAT}",
)

#: Command line for :func:`parse_scontrol_nodes`: one line per node; ``-d``
#: adds ``GresUsed=`` (GPUs in use even when ``gres/gpu`` is not an accounted TRES).
SCONTROL_NODES_ARGS: Final[tuple[str, ...]] = (
    "scontrol",
    "--oneliner",
    "--details",
    "show",
    "node",
)

_KEY: Final = re.compile(r"[A-Za-z][A-Za-z0-9_:/]*")
# scontrol appends " [user@time]" to a reason set by someone.
_REASON_STAMP: Final = re.compile(r"\s*\[[^\]@]*@[^\]]*\]\s*$")
_NO_TEXT: Final = frozenset({"", "N/A", "(null)", "none", "None"})


def parse_nodes_json(
    raw: bytes | str, taken_at: datetime, command: str = "sinfo --json"
) -> NodesListing:
    """Parse a JSON node listing of any supported release.

    A ``nodes`` list (``sinfo --json`` up to 22.05, ``scontrol show nodes
    --json``, slurmrestd ``/slurm/vX/nodes``) or the grouped ``sinfo`` records
    of ``sinfo --json`` since 23.02.

    Args:
        raw: the command's stdout.
        taken_at: when the command ran (aware UTC).
        command: the command, for error messages.

    Returns:
        Every node, keyed by name, duplicates merged.

    Raises:
        UnknownShapeError: neither list is there (names the release and the keys).
        SourceError: not such a document, Slurm reported errors, or a node
            lacks a name or a state.
    """
    with gc_paused():
        document = load_json_document(raw, command)
        items = document.get("nodes")
        grouped = False
        if not isinstance(items, list):
            items = document.get("sinfo")
            grouped = True
            if not isinstance(items, list):
                raise shape_error(document, command, "'nodes' (or grouped 'sinfo')")
        del document
        nodes: dict[str, NodeRecord] = {}
        parse = _nodes_from_group if grouped else _node_as_list
        for records in each_record(items, parse, command, "node"):
            for record in records:
                _add(nodes, record)
        del items
    return NodesListing(taken_at=taken_at, nodes=nodes)


def _node_as_list(item: dict[str, Any]) -> list[NodeRecord]:
    return [_node_from_json(item)]


def _nodes_from_group(item: dict[str, Any]) -> list[NodeRecord]:
    """Expand one 23.02+ ``sinfo --json`` record into a record per node it groups."""
    names = item["nodes"]["nodes"]
    if not names or not isinstance(names, list):
        raise SourceError(f"no node names (got {names!r})")
    raw_state = item["node"]["state"]
    if not raw_state or not isinstance(raw_state, (str, list)):
        raise SourceError(f"nodes {names[0]}...: no state (got {raw_state!r})")
    state, flags = parse_node_state(raw_state)
    count = len(names)
    cpus = item.get("cpus") or {}
    memory = item.get("memory") or {}
    gres = item.get("gres") or {}
    load = cpus.get("load") or {}
    free = memory.get("free") or {}
    partition = (item.get("partition") or {}).get("name")
    reason = item.get("reason")
    if isinstance(reason, dict):
        reason = reason.get("description")
    # Per node: the maximum of a range; a group's sums (allocations) spread evenly.
    record = NodeRecord(
        name=str(names[0]),
        state=state,
        cpus_total=to_int(cpus.get("maximum")) or 0,
        cpus_allocated=_share(to_int(cpus.get("allocated")), count),
        memory_total_mb=to_int(memory.get("maximum")) or 0,
        memory_allocated_mb=_share(to_int(memory.get("allocated")), count),
        gpus_total=gpu_count(gres.get("total") or ""),
        gpus_allocated=_share(gpu_count(gres.get("used") or ""), count),
        flags=flags,
        partitions=(partition,) if isinstance(partition, str) and partition else (),
        reason=reason if isinstance(reason, str) and reason else None,
        cpu_load=_exact_load(load),
        memory_free_mb=_exact(free),
    )
    return [
        record if name == record.name else dataclasses.replace(record, name=str(name))
        for name in names
    ]


def _share(total: int | None, count: int) -> int:
    value = total or 0
    return value if count == 1 else round(value / count)


def _exact(span: dict[str, Any]) -> int | None:
    """A min/max range's value when it is one value, else None (unknown per node)."""
    low, high = to_int(span.get("minimum")), to_int(span.get("maximum"))
    return high if low == high else None


def _exact_load(span: dict[str, Any]) -> float | None:
    value = _exact(span)
    return None if value is None else round(value / 100, 2)


def _node_from_json(item: dict[str, Any]) -> NodeRecord:
    get = item.get
    name = get("name")
    if not name or not isinstance(name, str):
        raise SourceError(f"no node name (got {name!r})")
    raw_state = get("state")
    if not raw_state or not isinstance(raw_state, (str, list)):
        raise SourceError(f"node {name}: no state (got {raw_state!r})")
    state, flags = parse_node_state(raw_state, get("state_flags") or ())
    partitions = get("partitions") or ()
    if isinstance(partitions, str):
        partitions = partitions.split(",")
    load = number(get("cpu_load"))
    reason = get("reason")
    free = get("free_memory", get("free_mem"))
    return NodeRecord(
        name=name,
        state=state,
        cpus_total=to_int(get("cpus")) or 0,
        cpus_allocated=to_int(get("alloc_cpus")) or 0,
        memory_total_mb=to_int(get("real_memory")) or 0,
        memory_allocated_mb=to_int(get("alloc_memory")) or 0,
        gpus_total=gpu_count(get("gres") or ""),
        gpus_allocated=gpu_count(get("gres_used") or ""),
        flags=flags,
        partitions=tuple(str(partition) for partition in partitions),
        reason=reason if isinstance(reason, str) and reason else None,
        # slurmd reports the load average x100 (REST) where scontrol prints /100.
        cpu_load=None if load is None else round(load / 100, 2),
        memory_free_mb=to_int(free),
    )


def parse_sinfo_delimited(raw: bytes | str, taken_at: datetime) -> NodesListing:
    """Parse the output of :data:`SINFO_ARGS` (``sinfo -N -O`` with :data:`SINFO_FIELDS`).

    Args:
        raw: the command's stdout (no header line).
        taken_at: when the command ran (aware UTC).

    Returns:
        Every node listed, keyed by name, one record per node whatever the
        number of its partitions (the default partition's ``*`` is dropped).

    Raises:
        SourceError: a line with too few fields or an unparsable value.
    """
    text = decode_text(raw, "sinfo")
    count = len(SINFO_FIELDS)
    nodes: dict[str, NodeRecord] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = split_fields(line, SINFO_DELIMITER, count, "sinfo", line_no)
        try:
            for record in _nodes_from_fields(fields):
                _add(nodes, record)
        except SourceError as exc:
            raise SourceError(f"sinfo: line {line_no}: {exc.message}") from None
    return NodesListing(taken_at=taken_at, nodes=nodes)


def _nodes_from_fields(fields: Sequence[str]) -> list[NodeRecord]:
    (
        node_list,
        partition,
        state_text,
        cpus_state,
        load_text,
        memory_text,
        alloc_text,
        free_text,
        gres,
        gres_used,
        reason,
    ) = (field.strip() for field in fields)
    names = expand(node_list)
    if not names:
        raise SourceError(f"no node name in {node_list!r}")
    if not state_text:
        raise SourceError(f"node {node_list}: empty state")
    state, flags = parse_node_state(state_text)
    allocated, total = _cpus_state(cpus_state)
    partition = partition.rstrip("*")
    record = NodeRecord(
        name=names[0],
        state=state,
        cpus_total=total,
        cpus_allocated=allocated,
        memory_total_mb=parse_memory_mb(memory_text) or 0,
        memory_allocated_mb=parse_memory_mb(alloc_text) or 0,
        gpus_total=gpu_count(gres),
        gpus_allocated=gpu_count(gres_used),
        flags=flags,
        partitions=(partition,) if partition and partition not in _NO_TEXT else (),
        reason=None if reason in _NO_TEXT else reason,
        cpu_load=_float_or_none(load_text),
        memory_free_mb=parse_memory_mb(free_text),
    )
    return [
        dataclasses.replace(record, name=name) if name != record.name else record for name in names
    ]


def _cpus_state(text: str) -> tuple[int, int]:
    """``A/I/O/T`` (allocated/idle/other/total) to ``(allocated, total)``."""
    parts = text.split("/")
    if len(parts) != 4:
        raise SourceError(f"bad CPUsState {text[:40]!r}")
    allocated, total = parse_int(parts[0]), parse_int(parts[3])
    return allocated or 0, total or 0


def _float_or_none(text: str) -> float | None:
    if text in UNSET_WORDS:
        return None
    try:
        return float(text)
    except ValueError:
        raise SourceError(f"expected a number, got {text[:40]!r}") from None


def parse_scontrol_nodes(raw: bytes | str) -> dict[str, NodeRecord]:
    """Parse ``scontrol -o [-d] show node`` (:data:`SCONTROL_NODES_ARGS`).

    Values may contain spaces (``OS=Linux 6.1 #1 SMP ...``): a word without a
    ``Key=`` continues the previous value. ``Reason=`` is the last field of a
    line and is taken whole, without its ``[user@time]`` stamp.

    Args:
        raw: the command's stdout.

    Returns:
        Every node, keyed by name. Allocated GPUs come from ``GresUsed=``
        (with ``-d``), else from the ``gres/gpu`` of ``AllocTRES=``.

    Raises:
        SourceError: a line without ``NodeName=`` or with an unparsable value.
    """
    text = decode_text(raw, "scontrol show node")
    nodes: dict[str, NodeRecord] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if line.startswith("No nodes in the system"):
            continue
        try:
            record = _node_from_pairs(scontrol_pairs(line))
        except SourceError as exc:
            raise SourceError(f"scontrol show node: line {line_no}: {exc.message}") from None
        nodes[record.name] = record
    return nodes


def scontrol_pairs(line: str) -> dict[str, str]:
    """Split one ``scontrol -o show ...`` line into its ``Key=value`` pairs.

    Args:
        line: the line.

    Returns:
        The pairs, in order; a trailing ``Reason=`` is taken whole.

    Raises:
        SourceError: the line does not start with ``Key=``.
    """
    pairs: dict[str, str] = {}
    reason_at = line.find(" Reason=")
    if reason_at >= 0:
        pairs_text, reason = line[:reason_at], line[reason_at + len(" Reason=") :]
    else:
        pairs_text, reason = line, None
    key: str | None = None
    for word in pairs_text.split():
        equals = word.find("=")
        if equals > 0 and _KEY.fullmatch(word, 0, equals):
            key = word[:equals]
            pairs[key] = word[equals + 1 :]
        elif key is not None:
            pairs[key] += " " + word
        else:
            raise SourceError(f"expected Key=value, got {word[:40]!r}")
    if reason is not None:
        pairs["Reason"] = reason.strip()
    return pairs


def _node_from_pairs(pairs: Mapping[str, str]) -> NodeRecord:
    name = pairs.get("NodeName", "")
    if not name:
        raise SourceError("no NodeName=")
    state_text = pairs.get("State", "")
    if not state_text:
        raise SourceError(f"node {name}: no State=")
    state, flags = parse_node_state(state_text)
    gres_used = pairs.get("GresUsed")
    if gres_used is not None:
        gpus_allocated = gpu_count(gres_used)
    else:
        used = tres_get(pairs.get("AllocTRES", ""), "gres/gpu")
        gpus_allocated = (parse_int(used) or 0) if used is not None else 0
    partitions = pairs.get("Partitions", "")
    partition_names = () if partitions in _NO_TEXT else tuple(p for p in partitions.split(",") if p)
    reason = _REASON_STAMP.sub("", pairs.get("Reason", "")).strip()
    return NodeRecord(
        name=name,
        state=state,
        cpus_total=parse_int(pairs.get("CPUTot", "")) or 0,
        cpus_allocated=parse_int(pairs.get("CPUAlloc", "")) or 0,
        memory_total_mb=parse_memory_mb(pairs.get("RealMemory", "")) or 0,
        memory_allocated_mb=parse_memory_mb(pairs.get("AllocMem", "")) or 0,
        gpus_total=gpu_count(pairs.get("Gres", "")),
        gpus_allocated=gpus_allocated,
        flags=flags,
        partitions=partition_names,
        reason=reason or None,
        cpu_load=_float_or_none(pairs.get("CPULoad", "")),
        memory_free_mb=parse_memory_mb(pairs.get("FreeMem", "")),
    )


def fill_allocations(snapshot: NodesListing, details: Mapping[str, NodeRecord]) -> NodesListing:
    """Take allocation figures from scontrol records into a snapshot.

    For every node of ``snapshot`` found in ``details``: allocated CPUs,
    memory and GPUs come from ``details``; partitions, free memory and CPU
    load too when the snapshot lacks them. Flags and reason are kept; the
    state too, except that a partly allocated ALLOCATED node becomes MIXED,
    as Slurm's clients show it.

    Args:
        snapshot: e.g. from :func:`parse_nodes_json` on REST v0.0.36.
        details: from :func:`parse_scontrol_nodes`.

    Returns:
        A new snapshot (same ``taken_at``); nodes absent from ``details``
        are unchanged.
    """
    nodes: dict[str, NodeRecord] = {}
    for name, node in snapshot.nodes.items():
        extra = details.get(name)
        if extra is not None:
            state = node.state
            if state is NodeState.ALLOCATED and 0 < extra.cpus_allocated < node.cpus_total:
                # REST v0.0.36 reports the base state; clients derive MIXED
                # themselves (_set_node_mixed() in src/api/node_info.c).
                state = NodeState.MIXED
            node = dataclasses.replace(
                node,
                state=state,
                cpus_allocated=extra.cpus_allocated,
                memory_allocated_mb=extra.memory_allocated_mb,
                gpus_allocated=extra.gpus_allocated,
                partitions=node.partitions or extra.partitions,
                memory_free_mb=(
                    node.memory_free_mb if node.memory_free_mb is not None else extra.memory_free_mb
                ),
                cpu_load=node.cpu_load if node.cpu_load is not None else extra.cpu_load,
            )
        nodes[name] = node
    return NodesListing(taken_at=snapshot.taken_at, nodes=nodes)


def _add(nodes: dict[str, NodeRecord], record: NodeRecord) -> None:
    """Insert ``record``, merging the partitions of a node already present."""
    known = nodes.get(record.name)
    if known is None:
        nodes[record.name] = record
        return
    partitions = _union(known.partitions, record.partitions)
    if partitions != known.partitions:
        nodes[record.name] = dataclasses.replace(known, partitions=partitions)


def _union(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))
