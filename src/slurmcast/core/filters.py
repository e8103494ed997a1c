"""Server-side subscription filters: equality and set membership on known fields.

A filter is ``{"field": value}`` or ``{"field": [value, ...]}`` for each
field it constrains; a message matches when every constrained field has one
of the given values. Which fields exist depends on the channel. The values
a message offers (its *tags*) are computed once per publication from its
``data`` by ``tags_for``, and the same way for snapshot items, so a filter
means the same thing live, in a snapshot and in a recovery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slurmcast.core.channels import Channel, channel_user
from slurmcast.core.policy import AccessPolicy, Principal
from slurmcast.core.publication import Tags, TagValue
from slurmcast.core.views import Snapshot
from slurmcast.errors import ErrorCode, ProtocolError

#: Filterable fields per channel (private ``user:`` channels carry notifications).
FILTER_FIELDS: Mapping[str, frozenset[str]] = {
    Channel.JOBS.value: frozenset(
        {"job_id", "user", "partition", "status", "node", "name", "account"}
    ),
    Channel.NOTIFICATIONS.value: frozenset({"job_id", "user", "type", "severity", "status"}),
    Channel.NODES.value: frozenset({"node", "state", "partition"}),
    Channel.ALERTS.value: frozenset({"rule", "severity", "status", "node"}),
    Channel.METRICS.value: frozenset(),
}

#: Fields holding names of states or levels: compared without regard to case.
_CASELESS = frozenset({"status", "state", "severity", "type", "rule"})
#: Most values one field may list.
MAX_VALUES = 100


def fields_for(channel: str) -> frozenset[str]:
    if channel_user(channel) is not None:
        return FILTER_FIELDS[Channel.NOTIFICATIONS.value]
    return FILTER_FIELDS.get(channel, frozenset())


@dataclass(frozen=True, slots=True)
class Filter:
    """Field -> accepted values (normalised). An empty filter accepts everything."""

    conditions: Mapping[str, frozenset[str]]

    def matches(self, tags: Tags) -> bool:
        """Whether a message with these tags passes.

        A message without tags (an operator broadcast) is not an event about
        anything a filter can name, and passes every filter.
        """
        if not self.conditions or not tags:
            return True
        for name, accepted in self.conditions.items():
            value = tags.get(name)
            if value is None:
                return False
            values = value if isinstance(value, tuple) else (value,)
            if not any(_norm(name, v) in accepted for v in values):
                return False
        return True

    def to_dict(self) -> dict[str, list[str]]:
        return {name: sorted(values) for name, values in self.conditions.items()}


def parse_filter(channel: str, value: Any, *, request_id: str | int | None = None) -> Filter:
    """Validate a client's filter for ``channel``.

    Raises:
        ProtocolError: ``invalid_filter`` naming the bad field or value.
    """

    def bad(message: str) -> ProtocolError:
        return ProtocolError(ErrorCode.INVALID_FILTER, message, request_id=request_id)

    if not isinstance(value, dict):
        raise bad('\'filter\' must be an object such as {"user": "alice", "status": ["RUNNING"]}')
    allowed = fields_for(channel)
    if value and not allowed:
        raise bad(f"channel {channel} has no filterable fields")
    conditions: dict[str, frozenset[str]] = {}
    for name, wanted in value.items():
        if name not in allowed:
            raise bad(
                f"cannot filter {channel} on {name!r}; fields are: {', '.join(sorted(allowed))}"
            )
        items = wanted if isinstance(wanted, list) else [wanted]
        if not items or len(items) > MAX_VALUES:
            raise bad(f"filter field {name!r} needs 1 to {MAX_VALUES} values")
        normalised = set()
        for item in items:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise bad(f"filter field {name!r} takes strings (or numbers), got {item!r}")
            normalised.add(_norm(name, str(item)))
        conditions[name] = frozenset(normalised)
    return Filter(conditions)


def _norm(name: str, value: str) -> str:
    return value.casefold() if name in _CASELESS else value


def tags_for(channel: str, data: Any) -> dict[str, TagValue]:
    """The filterable values of one message's (or snapshot item's) ``data``."""
    if not isinstance(data, dict):
        return {}
    name = Channel.NOTIFICATIONS.value if channel_user(channel) is not None else channel
    tags: dict[str, TagValue] = {}
    if name == Channel.JOBS.value:
        _copy(tags, data, ("job_id", "user", "account", "partition", "status", "name"))
        nodes = data.get("nodes")
        if isinstance(nodes, list):
            tags["node"] = tuple(str(n) for n in nodes)
    elif name == Channel.NOTIFICATIONS.value:
        _copy(tags, data, ("user", "type", "severity"))
        details = data.get("data")
        if isinstance(details, dict):
            _copy(tags, details, ("job_id", "status"))
    elif name == Channel.NODES.value:
        _copy(tags, data, ("node", "state"))
        partitions = data.get("partitions")
        if isinstance(partitions, list):
            tags["partition"] = tuple(str(p) for p in partitions)
    elif name == Channel.ALERTS.value:
        _copy(tags, data, ("rule", "severity", "status"))
        details = data.get("details")
        if isinstance(details, dict):
            _copy(tags, details, ("node",))
    return tags


def _copy(tags: dict[str, TagValue], source: Mapping[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        value = source.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool):
            tags[name] = str(value)


def visible_items(
    snapshot: Snapshot, principal: Principal, policy: AccessPolicy, wanted: Filter | None
) -> list[dict[str, Any]]:
    """The items of a snapshot ``principal`` may see and ``wanted`` matches: what
    both the WebSocket snapshot and ``GET /snapshot`` serve."""
    channel = snapshot.channel
    return [
        item
        for item in snapshot.items
        if policy.may_see(principal, channel, _owner(item))
        and (wanted is None or wanted.matches(tags_for(channel, item)))
    ]


def _owner(item: dict[str, Any]) -> str | None:
    user = item.get("user")
    return user if isinstance(user, str) else None
