"""The current state of each channel, kept up to date from its own messages.

A snapshot must be exactly the state the deltas after it apply to. The
surest way is to build it from the very messages subscribers receive: each
view applies every publication of its channel, in offset order, and
remembers the position of the last one. A snapshot taken at that moment is
the state as of that position, and the next live message is the next delta.

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
from slurmcast.core.snapshot import TERMINAL_JOB_STATES

_FINAL = frozenset(state.value for state in TERMINAL_JOB_STATES)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A channel's state as of ``position``: ``items`` are message ``data`` objects."""

    channel: str
    position: StreamPosition
    items: list[dict[str, Any]]


class ChannelView:
    """The keyed state of one channel (jobs by id, nodes by name, alerts by id)."""

    key = ""

    def __init__(self, channel: str, epoch: str) -> None:
        self.channel = channel
        self.position = StreamPosition(0, epoch)
        self.items: dict[str, dict[str, Any]] = {}

    def apply(self, event_type: str, data: Any, position: StreamPosition) -> None:
        """Apply one publication of this channel, in offset order."""
        self.position = position
        if isinstance(data, dict) and isinstance(data.get(self.key), str):
            self._apply(event_type, data[self.key], data)

    def _apply(self, event_type: str, key: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def reset(self, items: Iterable[dict[str, Any]]) -> None:
        """Replace the state (a monitor's first poll), keeping the position."""
        self.items = {item[self.key]: item for item in items}

    def snapshot(self) -> Snapshot:
        return Snapshot(self.channel, self.position, list(self.items.values()))


class JobsView(ChannelView):
    key = "job_id"

    def _apply(self, event_type: str, key: str, data: dict[str, Any]) -> None:
        if event_type not in ("job_submitted", "job_update"):
            return
        if data.get("status") in _FINAL or data.get("final_state_confirmed") is False:
            self.items.pop(key, None)
        else:
            self.items[key] = data


class NodesView(ChannelView):
    key = "node"

    def _apply(self, event_type: str, key: str, data: dict[str, Any]) -> None:
        if event_type == "node_removed":
            self.items.pop(key, None)
        elif event_type in ("node_added", "node_update", "node_resource_change"):
            self.items[key] = data


class AlertsView(ChannelView):
    key = "id"

    def _apply(self, event_type: str, key: str, data: dict[str, Any]) -> None:
        if event_type != "alert":
            return
        if data.get("status") == "resolved":
            self.items.pop(key, None)
        else:
            self.items[key] = data


class MetricsView(ChannelView):
    """Only the latest sample."""

    def apply(self, event_type: str, data: Any, position: StreamPosition) -> None:
        self.position = position
        if event_type == "metrics_update" and isinstance(data, dict):
            self.items = {"latest": data}


_VIEWS: dict[str, type[ChannelView]] = {
    Channel.JOBS.value: JobsView,
    Channel.NODES.value: NodesView,
    Channel.ALERTS.value: AlertsView,
    Channel.METRICS.value: MetricsView,
}

#: Channels that offer snapshots.
SNAPSHOT_CHANNELS = frozenset(_VIEWS)


def new_view(channel: str, epoch: str) -> ChannelView | None:
    """The view for a channel that has one (notifications and ``user:`` have none)."""
    kind = _VIEWS.get(channel)
    return kind(channel, epoch) if kind is not None else None
