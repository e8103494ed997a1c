"""The composition root: the only module that knows every concrete class.

``SlurmcastApp`` builds the parts from ``Settings``, starts them in order
(broker, servers, monitors) and stops them in reverse, so a shutdown closes
every client with 1001 before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from slurmcast import __version__
from slurmcast.auth.jwt import JwtSettings, JwtVerifier
from slurmcast.brokers.memory import MemoryBroker, sizes_from
from slurmcast.cancellation import cancel_and_wait
from slurmcast.config import DEFAULT_HISTORY_SIZE, Settings, parse_sim_start, parse_sizes
from slurmcast.core.alerts import AlertThresholds
from slurmcast.core.policy import AccessPolicy, JobsVisibility, Principal
from slurmcast.core.session import SessionLimits
from slurmcast.delivery.planner import DeliveryPlanner
from slurmcast.delivery.worker import DeliveryWorker
from slurmcast.errors import AuthError, ConfigError
from slurmcast.health import HealthReport
from slurmcast.http.app import create_app
from slurmcast.http.connections import ConnectionLimits
from slurmcast.http.context import NotifyApi
from slurmcast.http.dashboard import DashboardConfig
from slurmcast.http.guard import ApiGuard
from slurmcast.http.metrics import MetricsConfig
from slurmcast.http.server import HttpServer
from slurmcast.hub import Hub
from slurmcast.instances.alerts import InstanceAlerts
from slurmcast.instances.lease_sole import SoleLease
from slurmcast.instances.presence_local import LocalPresence
from slurmcast.instances.presence_report import PresenceReporter
from slurmcast.monitors.leader import Leadership
from slurmcast.monitors.poller import ClusterMonitor, MonitorSettings
from slurmcast.node import Node
from slurmcast.observability.collector import (
    CommandFigures,
    SlurmcastCollector,
    metrics_registry,
)
from slurmcast.observability.looplag import LoopLag
from slurmcast.ports import Broker, Lease, Presence, Source
from slurmcast.sinks.base import Sink
from slurmcast.sinks.config import SinksConfig
from slurmcast.sinks.email import EmailSink
from slurmcast.sinks.slack import SlackSink
from slurmcast.sinks.webhook import WebhookSink
from slurmcast.storage import NotificationStore, default_url
from slurmcast.transport.ws_server import WebSocketServer, WebSocketSettings

log = logging.getLogger("slurmcast")
#: Seconds a shutdown waits for the notification sends under way.
DELIVERY_STOP_TIMEOUT = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_notification_id() -> str:
    return f"notif-{uuid.uuid4().hex[:16]}"


def build_source(settings: Settings) -> Source:
    if settings.source == "simulator":
        from slurmcast.sources.simulator.source import SimulatorSource

        return SimulatorSource(
            seed=settings.sim_seed,
            speed=settings.sim_speed,
            nodes=settings.sim_nodes,
            node_events_per_day=settings.sim_node_events,
            start=parse_sim_start(settings.sim_start),
        )
    if settings.source == "slurm":
        from slurmcast.sources.slurm_cli import SlurmCliSource, SlurmSettings

        return SlurmCliSource(
            SlurmSettings(
                bin_dir=settings.slurm_bin_dir,
                timeout=settings.slurm_timeout,
                output_format=settings.slurm_format,
                json_max_jobs=settings.slurm_json_max_jobs,
            )
        )
    if settings.source == "slurmrestd":
        from slurmcast.sources.slurmrestd.client import RestSettings
        from slurmcast.sources.slurmrestd.source import SlurmRestSource

        if not settings.slurmrestd_url:
            raise ConfigError(
                "--source slurmrestd needs --slurmrestd-url (http://host:6820 or "
                "unix:///path/to/slurmrestd.socket)"
            )
        if settings.slurmrestd_token and settings.slurmrestd_token_file:
            raise ConfigError("give either --slurmrestd-token-file or a token, not both")
        return SlurmRestSource(
            RestSettings(
                url=settings.slurmrestd_url,
                user=settings.slurmrestd_user,
                token=settings.slurmrestd_token,
                token_file=settings.slurmrestd_token_file,
                timeout=settings.slurm_timeout,
            ),
            api=settings.slurmrestd_api,
        )
    raise ConfigError(f"unknown source {settings.source!r}")


def build_verifier(settings: Settings) -> JwtVerifier | None:
    """The JWT verifier, when JWT auth is on or an HTTP admin may present a JWT."""
    if settings.auth != "jwt":
        return None
    return JwtVerifier(
        JwtSettings(
            secret=settings.jwt_secret,
            public_key_file=settings.jwt_public_key,
            jwks_file=settings.jwks,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway,
            email_claim=settings.sinks.address_claim if settings.sinks is not None else None,
        )
    )


def refuse_tokens(token: str) -> Principal:
    raise AuthError("authentication is not enabled on this server")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def websocket_settings(settings: Settings) -> WebSocketSettings:
    return WebSocketSettings(
        host=settings.host,
        port=settings.ws_port,
        max_message_size=settings.max_message_size,
        client_buffer_limit=settings.client_buffer_limit,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        slow_client_grace=settings.slow_client_grace,
        max_connections=settings.max_connections,
        max_connections_per_ip=settings.max_connections_per_ip,
        max_connections_per_user=settings.max_connections_per_user,
        allowed_origins=tuple(o.strip() for o in settings.allowed_origins.split(",") if o.strip()),
        handshake_timeout=settings.ws_handshake_timeout,
        compression=settings.compression == "deflate",
        limits=SessionLimits(
            auth_timeout=settings.auth_timeout,
            refresh_grace=settings.refresh_grace,
            rate=settings.rate_limit / 60.0,
            burst=settings.rate_burst,
            flood_warnings=settings.flood_warnings,
            max_channels=settings.max_channels,
            reply_bytes_per_token=settings.reply_bytes_per_token,
        ),
    )


def build_sinks(config: SinksConfig) -> dict[str, Sink]:
    """A sink per destination kind the ``[sinks]`` table configures."""
    sinks: dict[str, Sink] = {}
    if config.email is not None:
        sinks["email"] = EmailSink(config.email)
    if config.slack:
        sinks["slack"] = SlackSink(replace(config.http, default_url=config.slack_default_url))
    if config.webhook_secret is not None:
        sinks["webhook"] = WebhookSink(
            replace(config.http, default_url=config.webhook_default_url), config.webhook_secret
        )
    return sinks


def dashboard_config(settings: Settings, ws_port: Callable[[], int]) -> DashboardConfig | None:
    if not settings.dashboard:
        return None
    return DashboardConfig(
        ws_port=ws_port,
        public_ws_url=settings.public_ws_url,
        auth=settings.auth,
        jobs_visibility=settings.jobs_visibility,
        notify=settings.sinks is not None,
    )


def monitor_settings(settings: Settings) -> MonitorSettings:
    return MonitorSettings(
        jobs_interval=settings.jobs_interval,
        nodes_interval=settings.nodes_interval,
        metrics_interval=settings.metrics_interval,
        source_timeout=settings.source_timeout,
        backoff_max=settings.backoff_max,
        cpu_change_threshold=settings.cpu_change_threshold,
        final_state_attempts=settings.final_state_attempts,
        thresholds=AlertThresholds(
            cpu_usage=settings.alert_cpu_threshold,
            memory_usage=settings.alert_memory_threshold,
            hysteresis=settings.alert_hysteresis,
        ),
    )


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """Notification delivery's figures for GET /metrics."""

    worker: DeliveryWorker
    planner: DeliveryPlanner

    @property
    def outcomes(self) -> Mapping[tuple[str, str], int]:
        return self.worker.outcomes

    @property
    def rules_in_force(self) -> int:
        return len(self.planner.rules)


class SlurmcastApp:
    def __init__(self, settings: Settings, *, source: Source | None = None) -> None:
        self.settings = settings
        self.instance_id = settings.instance_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.source = source if source is not None else build_source(settings)
        self.hub = Hub()
        self.broker: Broker
        self.lease: Lease
        self.presence: Presence
        sizes = sizes_from(parse_sizes(settings.history_size), DEFAULT_HISTORY_SIZE)
        if settings.broker == "redis":
            from slurmcast.brokers.redis import RedisBroker
            from slurmcast.instances.lease_redis import RedisLease
            from slurmcast.instances.presence_redis import RedisPresence

            redis_broker = RedisBroker(
                settings.redis_url,
                prefix=settings.redis_prefix,
                instance=self.instance_id,
                history_size=sizes,
                history_ttl=settings.history_ttl or None,
                # The node (and so the alerts) is built below; Redis reports later.
                on_connection=lambda up, error: self.alerts.broker_connection(up, error),
            )
            self.broker = redis_broker
            key = f"{settings.redis_prefix}:lease"
            self.lease = RedisLease(redis_broker.redis, key, settings.leader_ttl)
            self.presence = RedisPresence(
                redis_broker.redis, settings.redis_prefix, settings.presence_ttl
            )
        else:
            self.broker = MemoryBroker(sizes, settings.history_ttl or None)
            self.lease = SoleLease()
            self.presence = LocalPresence()
        self.node = Node(self.broker, self.hub)
        self.alerts = InstanceAlerts(
            self.node, self.instance_id, shared=settings.broker != "memory", clock=utc_now
        )
        self.notifications = NotificationStore(
            settings.database_url or default_url(settings.data_dir),
            on_unavailable=self.alerts.storage_down,
            on_recovered=self.alerts.storage_up,
        )
        self.planner: DeliveryPlanner | None = None
        self.delivery: DeliveryWorker | None = None
        if settings.sinks is not None:
            outbox = self.notifications.outbox
            self.planner = DeliveryPlanner(outbox, settings.sinks.url_policy, new_notification_id)
            self.delivery = DeliveryWorker(
                outbox,
                build_sinks(settings.sinks),
                settings.sinks,
                instance_id=self.instance_id,
                clock=utc_now,
            )
            self.notifications.on_deliveries = self.delivery.wake
        self.monitor = ClusterMonitor(
            self.source,
            self.node,
            monitor_settings(settings),
            clock=utc_now,
            new_id=new_notification_id,
            record=self.notifications.enqueue,
            fence=lambda: self.lease.token,
        )
        if self.planner is not None:
            self.monitor.plan = self.planner.plan
            self.monitor.unplan = self.planner.forget
        self.leadership = Leadership(self.lease, self._poll, ttl=settings.leader_ttl)
        self.presence_reporter = PresenceReporter(
            self.presence, self.instance_id, self._counts, settings.presence_ttl / 3
        )
        self.health = HealthReport(
            instance=self.instance_id,
            hub=self.hub,
            node=self.node,
            broker=self.broker,
            source=self.source,
            monitor=self.monitor,
            leadership=self.leadership,
            notifications=self.notifications,
            http_connections=lambda: self.http.connections,
            cluster_totals=lambda: self.presence_reporter.totals,
        )
        self.policy = AccessPolicy(
            auth_enabled=settings.auth == "jwt",
            jobs_visibility=JobsVisibility(settings.jobs_visibility),
        )
        self.verifier = build_verifier(settings)
        verify = self.verifier or refuse_tokens
        self.ws = WebSocketServer(
            self.node,
            websocket_settings(settings),
            policy=self.policy,
            verify=verify,
            notifications=self.notifications,
        )
        guard = ApiGuard(settings.api_key, self.verifier)
        if settings.metrics_auth == "api_key" and not guard.protected:
            raise ConfigError(
                "--metrics-auth api_key needs an --api-key or --auth jwt (admin tokens)"
            )
        self.loop_lag = LoopLag()
        self.metrics = SlurmcastCollector(
            hub=self.hub,
            node=self.node,
            broker=self.broker,
            ws=self.ws,
            http_connections=lambda: self.http.connections,
            guard=guard,
            monitor=self.monitor,
            leadership=self.leadership,
            source_kind=self.source.kind,
            commands=self.source if isinstance(self.source, CommandFigures) else None,
            storage=self.notifications,
            loop_lag=self.loop_lag,
            per_user=settings.metrics_per_user,
            deliveries=(
                DeliveryStats(self.delivery, self.planner)
                if self.delivery is not None and self.planner is not None
                else None
            ),
        )
        self.http = HttpServer(
            create_app(
                self.node,
                self.health,
                settings.http_max_body,
                guard,
                self.policy,
                self.notifications,
                new_notification_id,
                dashboard_config(settings, lambda: self.ws.port),
                MetricsConfig(
                    metrics_registry(self.metrics), protected=settings.metrics_auth == "api_key"
                ),
                self._notify_api(),
            ),
            settings.host,
            settings.http_port,
            ConnectionLimits(
                header_timeout=settings.http_header_timeout,
                body_timeout=settings.http_body_timeout,
                max_per_ip=settings.http_max_connections_per_ip,
            ),
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._delivery_task: asyncio.Task[None] | None = None
        self._leadership_task: asyncio.Task[None] | None = None
        self._stopped = False

    def _notify_api(self) -> NotifyApi | None:
        if self.settings.sinks is None or self.planner is None or self.delivery is None:
            return None
        return NotifyApi(
            outbox=self.notifications.outbox,
            sinks=self.settings.sinks,
            clock=utc_now,
            rules_changed=self.planner.changed,
            deliveries_changed=self.delivery.wake,
        )

    async def start(self) -> None:
        if self.settings.auth == "none" and not is_loopback(self.settings.host):
            log.warning(
                "authentication is disabled and the servers listen on %s: anyone who can reach "
                "ports %d and %d sees every job and node; use --auth jwt (docs/security.md)",
                self.settings.host,
                self.settings.ws_port,
                self.settings.http_port,
            )
        self.loop_lag.start()
        await self.node.start()
        await self.notifications.start()
        await self.source.start()
        self._tasks = []
        if self.planner is not None and self.delivery is not None:
            self._tasks.append(asyncio.create_task(self.planner.run(), name="notify-rules"))
            self._delivery_task = asyncio.create_task(self.delivery.run(), name="delivery")
            # The first steps' events (an alert on the first sample) are planned with the
            # rules in force, not before they are read.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self.planner.loaded.wait()
        self._leadership_task = asyncio.create_task(self.leadership.run(), name="leadership")
        self._tasks += [
            self._leadership_task,
            asyncio.create_task(self.presence_reporter.run(), name="presence"),
        ]
        await self._first_poll()
        await self.ws.start()
        await self.http.start()
        log.info(
            "slurmcast %s (instance %s, %s broker) serving the %s source "
            "(ws://%s:%d, http://%s:%d)",
            __version__,
            self.instance_id,
            self.broker.kind,
            self.source.kind,
            self.settings.host,
            self.ws.port,
            self.settings.host,
            self.http.port,
        )

    async def _first_poll(self) -> None:
        """Open the servers once the poller (if it is this instance) has set the
        channels' state: a dashboard connecting at once gets the whole cluster
        in its snapshot, not an empty one replaced a moment later (a seed
        starts a new epoch: its subscribers would have to resync)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self.leadership.first_step.wait()
            if self.leadership.is_leader:
                async with asyncio.timeout(self.settings.source_timeout):
                    await self.monitor.first_cycle.wait()

    async def stop_polling(self) -> None:
        """Stop contending for the lease and polling (the servers go on)."""
        if self._leadership_task is not None:
            await cancel_and_wait([self._leadership_task])

    async def stop(self) -> None:
        """Stop polling, close every client with 1001, stop the API, release the source."""
        if self._stopped:
            return
        self._stopped = True
        await cancel_and_wait(self._tasks)
        await self._stop_delivery()
        await self.ws.stop()
        await self.http.stop()
        await self.notifications.close()
        await self.node.close()
        await self.source.close()
        self.loop_lag.stop()
        log.info("slurmcast stopped")

    async def _poll(self) -> None:
        """Poll while this instance holds the lease (``Leadership`` runs it)."""
        if self.planner is not None:
            try:
                # What the previous poller told is in the database, not in this one's memory.
                await self.planner.take_over()
            except Exception:  # polling goes on with what the planner has
                log.exception("cannot read the notification rules afresh")
        await self.monitor.run()

    async def _stop_delivery(self) -> None:
        """Let the sends under way finish (a few seconds at most), then stop the worker."""
        task, self._delivery_task = self._delivery_task, None
        if task is None or self.delivery is None:
            return
        self.delivery.stop()
        done, _ = await asyncio.wait({task}, timeout=DELIVERY_STOP_TIMEOUT)
        if not done:
            await cancel_and_wait([task])
        elif not task.cancelled() and (exc := task.exception()) is not None:
            log.error("the delivery worker failed", exc_info=exc)

    def _counts(self) -> dict[str, Any]:
        """What this instance reports to the others."""
        return {
            "clients": self.hub.client_count,
            "subscriptions": self.hub.subscription_counts(),
            "leader": self.leadership.is_leader,
        }


async def serve_forever(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    app = SlurmcastApp(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await app.start()
    try:
        await stop.wait()
        log.info("shutdown requested")
    finally:
        await app.stop()
