"""``SlurmcastCollector``: every ``slurmcast_*`` series, read from the live parts at scrape time.

Nothing here runs between scrapes. The parts keep plain integers and
``Histogram``s where the events happen (the hub per publication, the
connection per flush, the poller per step); a scrape turns them into metric
families. Each application has a registry of its own (``metrics_registry``),
never prometheus_client's global one: several servers run in one test
process, and one server's figures must not leak into another's.

Counters only grow for the life of the process; Prometheus' ``rate()`` and
``increase()`` handle the reset of a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from slurmcast import __version__
from slurmcast.core.channels import CHANNEL_NAMES
from slurmcast.core.publication import ALL_CLIENTS
from slurmcast.hub import PRIVATE_CHANNELS, Hub
from slurmcast.monitors.leader import Leadership
from slurmcast.monitors.poller import ClusterMonitor
from slurmcast.node import Node
from slurmcast.observability.cluster import ClusterFigures
from slurmcast.observability.histogram import Histogram
from slurmcast.observability.looplag import LoopLag
from slurmcast.ports import Broker
from slurmcast.transport.stats import WsStats

PREFIX = "slurmcast"
#: Every channel label a per-channel series may carry (``user`` stands for
#: every private ``user:<name>`` channel, ``all`` for messages to every client).
CHANNEL_LABELS = (*sorted(CHANNEL_NAMES), PRIVATE_CHANNELS, ALL_CLIENTS)
#: The WebSocket connection limits a refusal is counted under.
WS_LIMITS = ("total", "per_ip", "per_user")
#: Authentication failures exported even while none happened (a series that
#: appears only with its first failure is one ``rate()`` cannot see rise).
AUTH_FAILURES = (
    *(("ws_handshake", reason) for reason in ("invalid_token", "token_expired")),
    *(
        ("ws_auth", reason)
        for reason in ("invalid_token", "token_expired", "unauthorized", "auth_timeout")
    ),
    *(("ws_refresh", reason) for reason in ("invalid_token", "token_expired")),
    *(
        ("http", reason)
        for reason in ("unauthorized", "invalid_token", "token_expired", "forbidden")
    ),
)
HANDSHAKE_FAILURES = ("origin", "invalid", "timeout")


class WebSocketFigures(Protocol):
    """What the collector reads of the WebSocket listener."""

    stats: WsStats

    @property
    def open_sockets(self) -> int: ...

    @property
    def bytes_written(self) -> int: ...


class HttpConnectionFigures(Protocol):
    def stats(self) -> dict[str, int]: ...


class GuardFigures(Protocol):
    """The HTTP API's refused credentials, by error code."""

    @property
    def failures(self) -> Mapping[str, int]: ...


class StorageFigures(Protocol):
    """The notifications store's writer."""

    @property
    def write_failures(self) -> int: ...

    def health(self) -> dict[str, object]: ...


class DeliveryFigures(Protocol):
    """Notification delivery (``DeliveryWorker`` and ``DeliveryPlanner``), when configured."""

    @property
    def outcomes(self) -> Mapping[tuple[str, str], int]: ...

    @property
    def rules_in_force(self) -> int: ...


@runtime_checkable
class CommandFigures(Protocol):
    """A source that runs commands (``SlurmCliSource``): their durations and failures."""

    command_durations: dict[str, Histogram]
    command_failures: Mapping[str, int]


@runtime_checkable
class ReconnectFigures(Protocol):
    """A broker with a connection of its own to lose and restore (``RedisBroker``)."""

    reconnects: int


class SlurmcastCollector(Collector):
    """Reads one instance's figures; see docs/metrics.md for every series."""

    def __init__(
        self,
        *,
        hub: Hub,
        node: Node,
        broker: Broker,
        ws: WebSocketFigures,
        http_connections: Callable[[], HttpConnectionFigures],
        guard: GuardFigures,
        monitor: ClusterMonitor,
        leadership: Leadership,
        source_kind: str,
        commands: CommandFigures | None,
        storage: StorageFigures,
        loop_lag: LoopLag,
        per_user: bool,
        deliveries: DeliveryFigures | None = None,
    ) -> None:
        self.hub = hub
        self.node = node
        self.broker = broker
        self.ws = ws
        self.http_connections = http_connections
        self.guard = guard
        self.monitor = monitor
        self.leadership = leadership
        self.source_kind = source_kind
        self.commands = commands
        self.storage = storage
        self.loop_lag = loop_lag
        self.deliveries = deliveries
        self.cluster = ClusterFigures(per_user=per_user)

    def collect(self) -> Iterable[Metric]:
        yield from self._instance()
        yield from self._clients()
        yield from self._messages()
        yield from self._refusals()
        yield from self._polling()
        yield from self._broker()
        yield from self._storage()
        yield from self._deliveries()
        yield from self._loop()
        yield from self._cluster()

    # -- the instance ------------------------------------------------------------

    def _instance(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            f"{PREFIX}_info",
            "This slurmcast instance: its version, source and broker (always 1)",
            labels=("version", "source", "broker"),
        )
        info.add_metric((__version__, self.source_kind, self.broker.kind), 1)
        yield info
        yield GaugeMetricFamily(
            f"{PREFIX}_polling_leader",
            "1 while this instance holds the polling lease (polls Slurm and exports the "
            "slurmcast_cluster_* series), else 0",
            value=int(self.leadership.is_leader),
        )

    # -- clients -----------------------------------------------------------------

    def _clients(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            f"{PREFIX}_ws_connections",
            "WebSocket clients connected to this instance (handshake done)",
            value=self.hub.client_count,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_ws_open_sockets",
            "TCP connections on the WebSocket port, handshaking and closing ones included "
            "(what the connection limits count)",
            value=self.ws.open_sockets,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_ws_connections_opened",
            "WebSocket clients that completed their handshake",
            value=self.hub.connections_opened,
        )
        subscriptions = GaugeMetricFamily(
            f"{PREFIX}_subscriptions",
            "Subscriptions of this instance's clients, per channel (user: every private "
            "user:<name> channel)",
            labels=("channel",),
        )
        for channel, count in sorted(self.hub.subscription_counts().items()):
            subscriptions.add_metric((channel,), count)
        yield subscriptions
        yield CounterMetricFamily(
            f"{PREFIX}_ws_sent_bytes",
            "Bytes written to WebSocket clients (frames after compression, handshakes, "
            "pings and closes included)",
            value=self.ws.bytes_written,
        )
        stats = self.ws.stats
        yield CounterMetricFamily(
            f"{PREFIX}_ws_slow_consumer_closes",
            "Clients closed with 4008 for reading too slowly (their backlog passed "
            "--client-buffer-limit)",
            value=stats.closes[4008],
        )
        closes = CounterMetricFamily(
            f"{PREFIX}_ws_server_closes",
            "WebSocket connections the server closed, by close code",
            labels=("code",),
        )
        for close_code, count in sorted(stats.closes.items()):
            closes.add_metric((str(int(close_code)),), count)
        yield closes
        yield CounterMetricFamily(
            f"{PREFIX}_ws_rate_limited",
            "Requests refused with a rate_limited error (the client sent faster than "
            "--rate-limit allows)",
            value=stats.error_replies["rate_limited"],
        )
        errors = CounterMetricFamily(
            f"{PREFIX}_ws_error_replies",
            "Error replies sent to WebSocket clients, by error code",
            labels=("code",),
        )
        for code, count in sorted(stats.error_replies.items()):
            errors.add_metric((code,), count)
        yield errors

    # -- messages ----------------------------------------------------------------

    def _messages(self) -> Iterator[Metric]:
        for name, help_text, counts in (
            (
                "messages_published",
                "Messages this instance published (monitor events, broadcasts), per channel",
                self.node.published_per_channel,
            ),
            (
                "messages_received",
                "Messages handed to this instance's clients' fan-out, per channel (with a "
                "shared broker: those every instance published)",
                self.hub.received,
            ),
            (
                "messages_delivered",
                "Message frames queued for this instance's clients, per channel (one per "
                "client that received it)",
                self.hub.delivered,
            ),
        ):
            family = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=("channel",))
            for channel in CHANNEL_LABELS:
                family.add_metric((channel,), counts.get(channel, 0))
            yield family

    # -- refusals and authentication --------------------------------------------

    def _refusals(self) -> Iterator[Metric]:
        stats = self.ws.stats
        http = self.http_connections().stats()
        refusals = CounterMetricFamily(
            f"{PREFIX}_connection_refusals",
            "Connections refused for a connection limit: listener ws (total, per_ip, "
            "per_user) or http (per_ip)",
            labels=("listener", "limit"),
        )
        for limit in WS_LIMITS:
            refusals.add_metric(("ws", limit), stats.refusals[limit])
        refusals.add_metric(("http", "per_ip"), http.get("refused_per_ip", 0))
        yield refusals
        failures = CounterMetricFamily(
            f"{PREFIX}_auth_failures",
            "Refused credentials, by stage (ws_handshake: a token in the WebSocket request; "
            "ws_auth: the first message, or none in time; ws_refresh; http: the HTTP API) "
            "and reason (an error code, or auth_timeout)",
            labels=("stage", "reason"),
        )
        counts = dict.fromkeys(AUTH_FAILURES, 0)
        for (stage, reason), count in stats.auth_failures.items():
            counts[f"ws_{stage}", reason] = count
        for reason, count in self.guard.failures.items():
            counts["http", reason] = count
        for labels, count in counts.items():
            failures.add_metric(labels, count)
        yield failures
        handshakes = CounterMetricFamily(
            f"{PREFIX}_ws_handshake_failures",
            "WebSocket opening handshakes that failed other than for a limit or a token, "
            "by reason (origin, invalid, timeout)",
            labels=("reason",),
        )
        for reason, count in {
            **dict.fromkeys(HANDSHAKE_FAILURES, 0),
            **stats.handshake_failures,
        }.items():
            handshakes.add_metric((reason,), count)
        yield handshakes
        yield GaugeMetricFamily(
            f"{PREFIX}_http_connections",
            "Open connections on the HTTP port",
            value=http.get("connections", 0),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_http_connection_timeouts",
            "HTTP connections closed for sending a request's headers or body too slowly",
            value=http.get("timed_out", 0),
        )

    # -- polling -----------------------------------------------------------------

    def _polling(self) -> Iterator[Metric]:
        monitor = self.monitor
        durations = HistogramMetricFamily(
            f"{PREFIX}_poll_duration_seconds",
            "Seconds one step of a monitor loop took (jobs, nodes, metrics), failed ones "
            "included; only the polling leader polls",
            labels=("loop",),
        )
        for loop, histogram in monitor.poll_seconds.items():
            _add_histogram(durations, (loop,), histogram)
        yield durations
        failures = CounterMetricFamily(
            f"{PREFIX}_poll_failures",
            "Monitor loop steps that failed (source error or timeout, publish failure)",
            labels=("loop",),
        )
        for loop, count in monitor.poll_failures.items():
            failures.add_metric((loop,), count)
        yield failures
        failing = GaugeMetricFamily(
            f"{PREFIX}_source_failing",
            "1 while a monitor loop's last attempt failed (what turns /health degraded)",
            labels=("loop",),
        )
        for loop in ("jobs", "nodes"):
            failing.add_metric((loop,), int(loop in monitor.health.failing))
        yield failing
        if self.commands is None:
            return
        commands = HistogramMetricFamily(
            f"{PREFIX}_slurm_command_duration_seconds",
            "Seconds each Slurm command took to run (squeue, sinfo, sacct, scontrol), "
            "failed runs included",
            labels=("command",),
        )
        for command, histogram in sorted(self.commands.command_durations.items()):
            _add_histogram(commands, (command,), histogram)
        yield commands
        command_failures = CounterMetricFamily(
            f"{PREFIX}_slurm_command_failures",
            "Slurm command runs that failed (exit status, timeout, not found), per command",
            labels=("command",),
        )
        for command in sorted(self.commands.command_durations):
            command_failures.add_metric((command,), self.commands.command_failures.get(command, 0))
        yield command_failures

    # -- broker, storage, loop ---------------------------------------------------

    def _broker(self) -> Iterator[Metric]:
        publish = HistogramMetricFamily(
            f"{PREFIX}_broker_publish_duration_seconds",
            "Seconds a broker commit or publish took (with Redis, a broadcast also waits "
            "for its own delivery back to this instance)",
        )
        _add_histogram(publish, (), self.node.publish_seconds)
        yield publish
        yield CounterMetricFamily(
            f"{PREFIX}_broker_publish_failures",
            "Broker commits or publishes that failed (the broker was unreachable or refused)",
            value=self.node.publish_failures,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_broker_connected",
            "1 while the broker can be reached (always 1 for the memory broker)",
            value=int(bool(self.broker.describe().get("connected"))),
        )
        reconnects = self.broker.reconnects if isinstance(self.broker, ReconnectFigures) else 0
        yield CounterMetricFamily(
            f"{PREFIX}_broker_reconnects",
            "Times the broker's subscription came back after being lost (Redis)",
            value=reconnects,
        )

    def _deliveries(self) -> Iterator[Metric]:
        if self.deliveries is None:
            return
        attempts = CounterMetricFamily(
            f"{PREFIX}_notify_deliveries",
            "Delivery attempts by destination kind and outcome (delivered, retry, dead, postponed)",
            labels=("kind", "outcome"),
        )
        for (kind, outcome), count in sorted(self.deliveries.outcomes.items()):
            attempts.add_metric([kind, outcome], count)
        yield attempts
        yield GaugeMetricFamily(
            f"{PREFIX}_notify_rules",
            "Enabled notification rules in force",
            value=self.deliveries.rules_in_force,
        )

    def _storage(self) -> Iterator[Metric]:
        health = self.storage.health()
        yield GaugeMetricFamily(
            f"{PREFIX}_storage_queue_depth",
            "Notifications waiting to be written to the database",
            value=_number(health.get("pending")),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_storage_available",
            "1 while the notifications database answers",
            value=int(bool(health.get("available"))),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_storage_write_failures",
            "Writes to the notifications database that failed and were retried",
            value=self.storage.write_failures,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_storage_notifications_written",
            "Notifications written to the database",
            value=_number(health.get("written")),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_storage_notifications_dropped",
            "Notifications not stored (queue full during an outage, or refused by the database)",
            value=_number(health.get("dropped")),
        )

    def _loop(self) -> Iterator[Metric]:
        lag = self.loop_lag
        yield GaugeMetricFamily(
            f"{PREFIX}_event_loop_lag_last_seconds",
            "How late the event loop ran the last lag probe (measured every second)",
            value=lag.last,
        )
        family = HistogramMetricFamily(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late the event loop ran its lag probe, measured every second: time the "
            "loop was held by something else",
        )
        _add_histogram(family, (), lag.histogram)
        yield family

    # -- the cluster ---------------------------------------------------------------

    def _cluster(self) -> Iterator[Metric]:
        """From the poller's latest listings: only the polling leader has them."""
        if not self.leadership.is_leader:
            return
        note = " (from this instance's latest listing: exported by the polling leader only)"
        nodes = self.cluster.nodes(self.monitor.nodes)
        jobs = self.cluster.jobs(self.monitor.jobs)
        taken = GaugeMetricFamily(
            f"{PREFIX}_cluster_listing_timestamp_seconds",
            "When the latest listing of jobs or nodes was taken (Unix time)",
            labels=("listing",),
        )
        if jobs is not None:
            taken.add_metric(("jobs",), jobs.taken_at)
        if nodes is not None:
            taken.add_metric(("nodes",), nodes.taken_at)
        yield taken
        if nodes is not None:
            by_state = GaugeMetricFamily(
                f"{PREFIX}_cluster_nodes", "Nodes by state" + note, labels=("state",)
            )
            for state, count in sorted(nodes.by_state.items()):
                by_state.add_metric((state,), count)
            yield by_state
            for name, help_text, value in (
                ("nodes_not_responding", "Nodes slurmctld cannot reach", nodes.not_responding),
                ("cpus", "CPUs configured", nodes.cpus),
                ("cpus_allocated", "CPUs allocated to jobs", nodes.cpus_allocated),
                ("memory_bytes", "Memory configured, in bytes", nodes.memory_bytes),
                (
                    "memory_allocated_bytes",
                    "Memory allocated to jobs, in bytes",
                    nodes.memory_allocated_bytes,
                ),
                ("gpus", "GPUs configured", nodes.gpus),
                ("gpus_allocated", "GPUs allocated to jobs", nodes.gpus_allocated),
            ):
                yield GaugeMetricFamily(f"{PREFIX}_cluster_{name}", help_text + note, value=value)
        if jobs is not None:
            family = GaugeMetricFamily(
                f"{PREFIX}_cluster_jobs",
                "Jobs by state and partition" + note,
                labels=("state", "partition"),
            )
            for (state, partition), count in sorted(jobs.by_state_partition.items()):
                family.add_metric((state, partition), count)
            yield family
            if self.cluster.per_user:
                users = GaugeMetricFamily(
                    f"{PREFIX}_cluster_user_jobs",
                    "Jobs by user and state (--metrics-per-user)" + note,
                    labels=("user", "state"),
                )
                for (user, state), count in sorted(jobs.by_user_state.items()):
                    users.add_metric((user, state), count)
                yield users


def metrics_registry(collector: Collector) -> CollectorRegistry:
    """A registry of one application's own: its collector, and the process's figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    # process_* (CPU, memory, file descriptors: Linux /proc) and python_* (version, GC).
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def _add_histogram(
    family: HistogramMetricFamily, labels: tuple[str, ...], histogram: Histogram
) -> None:
    buckets = [(_le(bound), count) for bound, count in histogram.cumulative()]
    family.add_metric(list(labels), buckets, histogram.sum)


def _le(bound: float) -> str:
    """A bucket's upper bound as the text format writes it (``0.5``, ``1.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
