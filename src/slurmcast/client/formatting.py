"""One readable line per message, for ``slurmcast tail``.

Every channel message prints as ``<time> <channel> <type> <summary>``, the
time in whole UTC seconds::

    2026-11-28T04:19:06Z jobs job_update 1251 md_sim carol RUNNING -> FAILED exit 139
    2026-11-28T04:19:06Z nodes node_update node001 ALLOCATED -> MIXED cpus 62/64

The client's synthetic messages start with ``--``::

    -- jobs snapshot: 94 items at 1040:a1b2c3d4
    -- jobs resync: history lost; state reset from 1200:e5f6a7b8

Pure: a decoded message in, a string out. Missing fields print as ``?``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

Summary = Callable[[Mapping[str, Any]], str]


def format_line(message: Mapping[str, Any]) -> str:
    """The readable one-line form of a channel message or a synthetic one."""
    kind = str(message.get("type", "?"))
    channel = str(message.get("channel", "?"))
    if kind == "snapshot":
        items = message.get("data")
        count = len(items) if isinstance(items, list) else 0
        unit = "item" if count == 1 else "items"
        return f"-- {channel} snapshot: {count} {unit} at {_position(message.get('position'))}"
    if kind == "resync":
        position = _position(message.get("position"))
        return f"-- {channel} resync: history lost; state reset from {position}"
    data = message.get("data")
    summary = _SUMMARIES.get(kind)
    # Anything else is an operator's message: type `broadcast`, or the type it was posted with.
    text = summary(data) if summary is not None and isinstance(data, Mapping) else _broadcast(data)
    return f"{_time(message.get('timestamp'))} {channel} {kind} {text}".rstrip()


def _job(data: Mapping[str, Any]) -> str:
    """``1251 md_sim carol RUNNING -> FAILED exit 139 cpu 88% mem 45%``."""
    parts = [_s(data.get("job_id")), _s(data.get("name")), _s(data.get("user"))]
    parts.append(_transition(data.get("previous_status"), data.get("status")))
    if "previous_reason" in data:
        parts.append(f"waits: {_s(data.get('previous_reason'))} -> {_s(data.get('reason'))}")
    elif data.get("status") == "PENDING" and data.get("reason"):
        parts.append(f"waits: {_s(data['reason'])}")
    if data.get("exit_code") is not None:
        parts.append(f"exit {data['exit_code']}")
    if data.get("exit_signal") is not None:
        parts.append(f"signal {data['exit_signal']}")
    efficiency = data.get("efficiency")
    if isinstance(efficiency, Mapping):
        for key, label in (("cpu_efficiency", "cpu"), ("memory_efficiency", "mem")):
            if isinstance(efficiency.get(key), int | float):
                parts.append(f"{label} {efficiency[key]:g}%")
    if data.get("final_state_confirmed") is False:
        parts.append("(final state unconfirmed)")
    return " ".join(parts)


def _node(data: Mapping[str, Any]) -> str:
    """``node001 ALLOCATED -> MIXED cpus 62/64 NOT_RESPONDING reason "disk"``."""
    parts = [_s(data.get("node")), _transition(data.get("previous_state"), data.get("state"))]
    cpus = data.get("cpus")
    if isinstance(cpus, Mapping):
        parts.append(f"cpus {_s(cpus.get('allocated'))}/{_s(cpus.get('total'))}")
    flags = data.get("flags")
    if isinstance(flags, list) and flags:
        parts.append(",".join(str(f) for f in flags))
    if data.get("reason"):
        parts.append(f"reason {_json(data['reason'])}")
    return " ".join(parts)


def _node_resources(data: Mapping[str, Any]) -> str:
    """``node004 MIXED cpu 50.0% -> 75.0%``."""
    before, after = data.get("previous_cpu_usage"), data.get("cpu_usage")
    return f"{_s(data.get('node'))} {_s(data.get('state'))} cpu {_pct(before)} -> {_pct(after)}"


def _metrics(data: Mapping[str, Any]) -> str:
    """``cpu 60.7% memory 37.3% gpu 25.0% jobs 85 running 9 pending nodes 8 (0 idle, ...)``."""
    c = data.get("cluster")
    c = c if isinstance(c, Mapping) else {}
    return (
        f"cpu {_pct(c.get('cpu_usage'))} memory {_pct(c.get('memory_usage'))} "
        f"gpu {_pct(c.get('gpu_usage'))} "
        f"jobs {_s(c.get('running_jobs'))} running {_s(c.get('pending_jobs'))} pending "
        f"nodes {_s(c.get('total_nodes'))} ({_s(c.get('idle_nodes'))} idle, "
        f"{_s(c.get('unavailable_nodes'))} unavailable)"
    )


def _notification(data: Mapping[str, Any]) -> str:
    """``error job_failed carol: Job #1251 (md_sim) failed with exit code 139``."""
    who = f" {data['user']}" if data.get("user") else ""
    return f"{_s(data.get('severity'))} {_s(data.get('type'))}{who}: {_s(data.get('message'))}"


def _alert(data: Mapping[str, Any]) -> str:
    """``firing warning cpu_usage_high: Cluster CPU usage is 93.1% (threshold 90%)``."""
    return (
        f"{_s(data.get('status'))} {_s(data.get('severity'))} {_s(data.get('id'))}: "
        f"{_s(data.get('message'))}"
    )


def _broadcast(data: Any) -> str:
    """The ``text`` of ``{"text": "..."}``, otherwise the data as compact JSON."""
    if isinstance(data, Mapping) and set(data) == {"text"} and isinstance(data["text"], str):
        return data["text"]
    return _json(data)


_SUMMARIES: dict[str, Summary] = {
    "job_submitted": _job,
    "job_update": _job,
    "node_update": _node,
    "node_added": _node,
    "node_removed": _node,
    "node_resource_change": _node_resources,
    "metrics_update": _metrics,
    "notification": _notification,
    "alert": _alert,
}


def _transition(before: Any, after: Any) -> str:
    return f"{before} -> {_s(after)}" if before else _s(after)


def _time(timestamp: Any) -> str:
    """``2026-11-28T04:19:06.880Z`` -> ``2026-11-28T04:19:06Z``."""
    if isinstance(timestamp, str) and len(timestamp) >= 19 and timestamp.endswith("Z"):
        return timestamp[:19] + "Z"
    return _s(timestamp)


def _position(value: Any) -> str:
    if isinstance(value, Mapping) and "offset" in value:
        return f"{value['offset']}:{_s(value.get('epoch'))}"
    return "?"


def _pct(value: Any) -> str:
    return f"{value:.1f}%" if isinstance(value, int | float) else "?"


def _s(value: Any) -> str:
    return "?" if value is None else str(value)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
