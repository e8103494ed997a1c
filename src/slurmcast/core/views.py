"""The current state of each channel, kept up to date from its own messages.

A snapshot must be exactly the state the deltas after it apply to. The
surest way is to build it from the very messages subscribers receive: every
publication of a channel that has state carries a ``StateChange``, computed
here once, and the broker applies it in the same atomic step that assigns
the publication's offset (in memory, or in Redis's Lua script). A snapshot
read together with the channel's position is then the state as of that
position, and the next live message is the next delta.

What the state is, per channel (a client following the deltas keeps the
same):

* ``jobs``: the jobs still in the queue; a job leaves it with the update that
  reports its end (a final state, or ``final_state_confirmed: false``).
* ``nodes``: every node; ``node_removed`` removes one.
* ``metrics``: the latest ``metrics_update``.
* ``alerts``: the alerts firing now; a ``resolved`` alert removes one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from slurmcast.core.channels import Channel
from slurmcast.core.position import StreamPosition
from slurmcast.core.records import TERMINAL_JOB_STATES

_FINAL = frozenset(state.value for state in TERMINAL_JOB_STATES)

#: The field naming an item in each channel's state (metrics keeps one item).
STATE_KEYS: dict[str, str] = {
    Channel.JOBS.value: "job_id",
    Channel.NODES.value: "node",
    Channel.ALERTS.value: "id",
    Channel.METRICS.value: "",
}

#: Channels that offer snapshots.
SNAPSHOT_CHANNELS = frozenset(STATE_KEYS)

#: The single key of the metrics state.
LATEST = "latest"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A channel's state as of ``position``: ``items`` are message ``data`` objects."""

    channel: str
    position: StreamPosition
    items: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class StateChange:
    """Set ``key`` to ``value`` in a channel's state, or remove it (``value`` None)."""

    key: str
    value: dict[str, Any] | None


def state_change(channel: str, event_type: str, data: Any) -> StateChange | None:
    """What a message does to its channel's state (None: nothing)."""
    if channel not in STATE_KEYS or not isinstance(data, dict):
        return None
    if channel == Channel.METRICS.value:
        return StateChange(LATEST, data) if event_type == "metrics_update" else None
    key = data.get(STATE_KEYS[channel])
    if not isinstance(key, str):
        return None
    if channel == Channel.JOBS.value:
        if event_type not in ("job_submitted", "job_update"):
            return None
        ended = data.get("status") in _FINAL or data.get("final_state_confirmed") is False
        return StateChange(key, None if ended else data)
    if channel == Channel.NODES.value:
        if event_type == "node_removed":
            return StateChange(key, None)
        if event_type in ("node_added", "node_update", "node_resource_change"):
            return StateChange(key, data)
        return None
    if event_type != "alert":
        return None
    return StateChange(key, None if data.get("status") == "resolved" else data)


def state_items(channel: str, items: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A whole state (a monitor's first poll) keyed as ``state_change`` keys it."""
    field = STATE_KEYS.get(channel)
    if field is None:
        return {}
    if not field:
        latest = list(items)
        return {LATEST: latest[-1]} if latest else {}
    return {item[field]: item for item in items}


class ChannelState:
    """One channel's keyed state, in memory."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def apply(self, change: StateChange) -> None:
        if change.value is None:
            self.items.pop(change.key, None)
        else:
            self.items[change.key] = change.value

    def reset(self, items: dict[str, dict[str, Any]]) -> None:
        self.items = dict(items)
