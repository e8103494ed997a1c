"""The monitor loops: poll the source, diff, publish.

One ``ClusterMonitor`` per server runs three loops (jobs, nodes, metrics)
against one source, however many clients are connected. A failing source
never stops the loops: the error is logged, /health turns ``degraded``, a
``source_unavailable`` alert fires once, and the loop retries with backoff.
The last good snapshot is kept, so the first good poll after an outage is
diffed against it: nothing invented, nothing lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from slurmcast.cancellation import raise_if_cancelled
from slurmcast.core.alerts import AlertBook, AlertSeverity, AlertThresholds
from slurmcast.core.backoff import retry_delay
from slurmcast.core.channels import Channel
from slurmcast.core.diff import diff_jobs, diff_nodes, needs_final_state
from slurmcast.core.events import Event, job_payload, node_payload
from slurmcast.core.metrics import cluster_metrics
from slurmcast.core.notifications import Notification, notifications_for
from slurmcast.core.notify.plan import DeliverySpec, Planned
from slurmcast.core.records import JobRecord, JobsListing, NodeRecord, NodesListing
from slurmcast.errors import ErrorCode, PublishError, SourceError
from slurmcast.gcpause import paused
from slurmcast.logs import context
from slurmcast.monitors import checkpoint
from slurmcast.monitors.health import SourceHealth
from slurmcast.node import Node
from slurmcast.observability.histogram import DURATION_BUCKETS, Histogram
from slurmcast.ports import Source

log = logging.getLogger("slurmcast.monitor")
T = TypeVar("T")

#: Above this many jobs the diff runs in a worker thread so the loop keeps serving.
OFF_LOOP_DIFF_JOBS = 5000
#: How far before the previous poll a vanished job may have ended (clock skew, slow polls).
FINAL_STATE_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    jobs_interval: float = 5.0
    nodes_interval: float = 5.0
    metrics_interval: float = 15.0
    source_timeout: float = 30.0
    backoff_max: float = 60.0
    cpu_change_threshold: float = 20.0
    final_state_attempts: int = 3
    thresholds: AlertThresholds = field(default_factory=AlertThresholds)


class ClusterMonitor:
    def __init__(
        self,
        source: Source,
        node: Node,
        settings: MonitorSettings,
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
        record: Callable[[Notification, Sequence[DeliverySpec]], None] = lambda n, d: None,
        plan: Callable[
            [Sequence[Event], datetime, JobsListing | None], list[Planned]
        ] = lambda events, now, jobs: [],
        fence: Callable[[], str | None] = lambda: None,
        unplan: Callable[[Sequence[Planned]], None] = lambda planned: None,
    ) -> None:
        self.source = source
        self.node = node
        self.settings = settings
        self.clock = clock
        self.new_id = new_id
        self.record = record
        self.plan = plan
        #: Told when a step's plan was not published (see ``_commit``).
        self.unplan = unplan
        self.fence = fence
        self.health = SourceHealth(source.kind)
        self.alerts = AlertBook(settings.thresholds)
        self.jobs: JobsListing | None = None
        self.nodes: NodesListing | None = None
        self._reported_nodes: dict[str, NodeRecord] | None = None
        self._unresolved: dict[str, int] = {}
        self.polls = {"jobs": 0, "nodes": 0, "metrics": 0}
        #: Seconds each loop's steps took (failed ones too), and the failed steps
        #: (GET /metrics).
        self.poll_seconds = {name: Histogram(DURATION_BUCKETS) for name in self.polls}
        self.poll_failures = dict.fromkeys(self.polls, 0)
        self._have_snapshots = asyncio.Event()
        #: Set once the jobs and nodes loops have each made their first attempt.
        self.first_cycle = asyncio.Event()
        self._attempted: set[str] = set()

    async def run(self) -> None:
        """Resume from the last committed baseline, then run every loop until cancelled."""
        failures = 0
        while True:
            try:
                await self.resume()
                break
            except PublishError as exc:
                raise_if_cancelled()
                failures += 1
                log.warning("cannot read the poller's baseline (attempt %d): %s", failures, exc)
                await asyncio.sleep(retry_delay(1.0, failures, self.settings.backoff_max))
        async with asyncio.TaskGroup() as group:
            group.create_task(self._every("jobs", self.settings.jobs_interval, self.poll_jobs))
            group.create_task(self._every("nodes", self.settings.nodes_interval, self.poll_nodes))
            group.create_task(self._metrics_loop())

    async def _metrics_loop(self) -> None:
        # The first sample goes out as soon as there is something to measure,
        # not one whole interval later.
        await self._have_snapshots.wait()
        await self._every(
            "metrics", self.settings.metrics_interval, self.publish_metrics, polls_source=False
        )

    async def resume(self) -> None:
        """Take up the baseline the last poller committed (none: start afresh).

        With a shared broker this is how a new poller continues exactly where
        the previous one stopped: its first poll is diffed against what was
        last published, so nothing is reported twice or lost.
        """
        baseline = checkpoint.decode(await self.node.checkpoint())
        self.jobs = baseline.jobs
        self._unresolved = dict(baseline.unresolved)
        self._reported_nodes = baseline.nodes
        self.nodes = None
        self.alerts.firing = dict(baseline.alerts)
        self._have_snapshots = asyncio.Event()
        if baseline.jobs is not None:
            log.info(
                "resuming from the committed baseline: %d jobs, %d nodes, %d alerts firing",
                len(baseline.jobs.jobs),
                len(baseline.nodes or {}),
                len(baseline.alerts),
            )

    def _note_snapshots(self) -> None:
        if self.jobs is not None and self.nodes is not None:
            self._have_snapshots.set()

    async def poll_jobs(self) -> None:
        """One jobs cycle: fetch, resolve how finished jobs ended, diff, publish."""
        current = await self._call(self.source.jobs())
        previous = self.jobs
        if previous is None:
            # The first snapshot is the baseline: existing jobs are not "submitted" now,
            # but they are the state a subscriber's snapshot starts from.
            active = [
                job_payload(job) for job in current.jobs.values() if not job.state.is_terminal
            ]
            await self._commit(
                [],
                self.clock(),
                seeds={Channel.JOBS.value: active},
                parts={checkpoint.JOBS: await self._encode_jobs(current, {})},
            )
            self.jobs = current
            self._unresolved = {}
            self._note_snapshots()
            return
        # A big queue is walked in a worker thread: the loop keeps serving clients.
        large = len(current.jobs) + len(previous.jobs) > OFF_LOOP_DIFF_JOBS
        if large:
            wanted = await asyncio.to_thread(paused(needs_final_state), previous.jobs, current.jobs)
        else:
            wanted = needs_final_state(previous.jobs, current.jobs)
        finals: Mapping[str, JobRecord] = {}
        if wanted:
            since = previous.taken_at - FINAL_STATE_MARGIN
            finals = await self._call(self.source.final_states(wanted, since))
        carry = self._carry_unresolved(wanted, current.jobs, finals)
        if large:
            events, baseline = await asyncio.to_thread(
                paused(diff_jobs), previous.jobs, current.jobs, finals, carry
            )
        else:
            events, baseline = diff_jobs(previous.jobs, current.jobs, finals, carry)
        now = self.clock()
        notes = notifications_for(events, now, self.new_id)
        jobs = JobsListing(current.taken_at, baseline)
        unresolved = {job_id: n for job_id, n in self._unresolved.items() if job_id in carry}
        await self._commit(
            [*events, *notes],
            now,
            parts={checkpoint.JOBS: await self._encode_jobs(jobs, unresolved)},
            jobs=current,
        )
        # Only after publishing: if publishing failed, the next poll re-diffs.
        self.jobs = jobs
        self._unresolved = unresolved

    def _carry_unresolved(
        self,
        wanted: Mapping[str, JobRecord],
        listed: Mapping[str, JobRecord],
        finals: Mapping[str, JobRecord],
    ) -> frozenset[str]:
        """Jobs accounting could not resolve yet and that get another try.

        slurmdbd records a job's end a moment after slurmctld, so a miss is
        retried on the next polls: a vanished job before it is reported with
        an unconfirmed final state; a job listed as finished (while accounting
        answers) before it is reported as the listing says, without what it
        used.
        """
        carry = set()
        waits_for_accounting = self.source.accounting_answers
        for job_id in wanted:
            final = finals.get(job_id)
            if final is not None and final.state.is_terminal:
                continue
            record = listed.get(job_id)
            if record is not None and not (waits_for_accounting and record.state.is_terminal):
                continue
            attempts = self._unresolved.get(job_id, 0) + 1
            if attempts < self.settings.final_state_attempts:
                self._unresolved[job_id] = attempts
                carry.add(job_id)
            elif record is None:
                log.warning(
                    "job %s left the queue and accounting has no final state for it "
                    "after %d attempts; reporting it unconfirmed",
                    job_id,
                    attempts,
                )
            else:
                log.info(
                    "accounting has no record of finished job %s after %d attempts; "
                    "reporting its end as squeue lists it",
                    job_id,
                    attempts,
                )
        return frozenset(carry)

    async def poll_nodes(self) -> None:
        current = await self._call(self.source.nodes())
        now = self.clock()
        seeds = None
        if self._reported_nodes is None:
            reported = dict(current.nodes)
            seeds = {Channel.NODES.value: [node_payload(n) for n in current.nodes.values()]}
            events: list[Event] = []
        else:
            node_events, reported = diff_nodes(
                self._reported_nodes, current.nodes, self.settings.cpu_change_threshold
            )
            events = list(node_events)
        events += self.alerts.on_nodes(current.nodes, now)
        parts = {
            checkpoint.NODES: checkpoint.encode_nodes(reported),
            checkpoint.ALERTS: checkpoint.encode_alerts(self.alerts.firing),
        }
        await self._commit(events, now, seeds=seeds, parts=parts)
        self._reported_nodes = reported
        self.nodes = current
        self._note_snapshots()

    async def publish_metrics(self) -> None:
        if self.jobs is None or self.nodes is None:
            return
        now = self.clock()
        sample = cluster_metrics(self.jobs.jobs, self.nodes.nodes)
        alerts = self.alerts.on_metrics(sample, now)
        parts = {checkpoint.ALERTS: checkpoint.encode_alerts(self.alerts.firing)} if alerts else {}
        await self._commit([sample, *alerts], now, parts=parts)

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.settings.source_timeout):
                return await call
        except TimeoutError:
            raise SourceError(
                f"{self.source.kind} source did not answer within "
                f"{self.settings.source_timeout:g}s",
                code=ErrorCode.SOURCE_TIMEOUT,
            ) from None

    async def _encode_jobs(self, jobs: JobsListing, unresolved: Mapping[str, int]) -> bytes:
        if len(jobs.jobs) > OFF_LOOP_DIFF_JOBS:
            return await asyncio.to_thread(paused(checkpoint.encode_jobs), jobs, unresolved)
        return checkpoint.encode_jobs(jobs, unresolved)

    async def _commit(
        self,
        events: Sequence[Event],
        now: datetime,
        *,
        seeds: Mapping[str, list[dict[str, Any]]] | None = None,
        parts: Mapping[str, bytes] | None = None,
        jobs: JobsListing | None = None,
    ) -> None:
        """Publish a step's events with the baseline they lead to, all or nothing; then
        store its notifications with the deliveries people's rules ask for.

        ``jobs`` is a jobs poll's listing (jobs pending too long are planned from it).
        Notifications are stored only after publishing: if publishing failed, the next
        step reports, and plans, the same again.
        """
        planned = await self._planned(events, now, jobs)
        made = [p.notification for p in planned if p.new]
        try:
            await self.node.commit(
                [*events, *made], now, seeds=seeds, checkpoint=parts, fence=self.fence()
            )
        except BaseException:
            self.unplan(planned)  # not published: the next step plans the same again
            raise
        deliveries = {p.notification.id: p.deliveries for p in planned}
        for event in [*events, *made]:
            if isinstance(event, Notification):
                # Stored off the hot path: enqueue never blocks nor fails.
                self.record(event, deliveries.get(event.id, ()))

    async def _planned(
        self, events: Sequence[Event], now: datetime, jobs: JobsListing | None
    ) -> list[Planned]:
        try:
            if jobs is not None and len(jobs.jobs) > OFF_LOOP_DIFF_JOBS:
                # A big queue's pending jobs are walked in a worker thread, as its diff is.
                return await asyncio.to_thread(paused(self.plan), events, now, jobs)
            return self.plan(events, now, jobs)
        except Exception:  # a bug in planning must not stop live events; it is logged loudly
            log.exception("planning notification deliveries failed", extra=context(code="internal"))
            return []

    async def _every(
        self,
        name: str,
        interval: float,
        step: Callable[[], Awaitable[None]],
        *,
        polls_source: bool = True,
    ) -> None:
        """Run ``step`` every ``interval`` seconds, backing off while it fails.

        Only loops that call the source (``polls_source``) count towards the
        source's health; the metrics loop computes from snapshots already taken.
        """
        failures = 0
        while True:
            started = time.monotonic()
            firing = dict(self.alerts.firing)
            failures_before = failures
            try:
                try:
                    await step()
                finally:
                    self.poll_seconds[name].observe(time.monotonic() - started)
            except PublishError as exc:
                raise_if_cancelled()
                # Nothing of the step was published: the next one diffs from the
                # same baseline and reports the same transitions, so none is lost.
                self.alerts.firing = firing
                failures += 1
                log.warning(
                    "%s: could not publish (attempt %d): %s",
                    name,
                    failures,
                    exc.message,
                    extra=context(channel=name, code=exc.code.value),
                )
            except SourceError as exc:
                raise_if_cancelled()
                failures += 1
                log.warning(
                    "%s poll failed (attempt %d): %s",
                    name,
                    failures,
                    exc.message,
                    extra=context(channel=name, code=exc.code.value),
                )
                if polls_source:
                    await self._failed(name, exc.message)
            except Exception as exc:  # a bug must not kill the loop; it is logged loudly
                raise_if_cancelled()
                failures += 1
                log.exception(
                    "%s cycle crashed", name, extra=context(channel=name, code="internal")
                )
                if polls_source:
                    await self._failed(name, f"internal error: {exc!r}")
            else:
                self.polls[name] += 1
                if failures:
                    log.info("%s: recovered after %d failed attempt(s)", name, failures)
                failures = 0
                if polls_source:
                    await self._succeeded(name)
            if polls_source and not self.first_cycle.is_set():
                self._attempted.add(name)
                if {"jobs", "nodes"} <= self._attempted:
                    self.first_cycle.set()
            if failures > failures_before:
                self.poll_failures[name] += 1
            delay = retry_delay(interval, failures, self.settings.backoff_max)
            await asyncio.sleep(max(0.0, delay - (time.monotonic() - started)))

    async def _failed(self, loop: str, message: str) -> None:
        now = self.clock()
        if self.health.record_failure(loop, message, now):
            alerts = self.alerts.set(
                "source_unavailable",
                "source_unavailable",
                AlertSeverity.CRITICAL,
                f"Cluster source ({self.source.kind}) is unavailable: {message}",
                {"source": self.source.kind, "error": message, "loop": loop},
                now,
            )
            await self._publish_quietly(alerts, now)

    async def _succeeded(self, loop: str) -> None:
        now = self.clock()
        if self.health.record_success(loop, now):
            alerts = self.alerts.clear(
                "source_unavailable",
                f"Cluster source ({self.source.kind}) is available again",
                {"source": self.source.kind},
                now,
            )
            await self._publish_quietly(alerts, now)

    async def _publish_quietly(self, events: Sequence[Event], now: datetime) -> None:
        try:
            await self._commit(
                events, now, parts={checkpoint.ALERTS: checkpoint.encode_alerts(self.alerts.firing)}
            )
        except PublishError as exc:
            raise_if_cancelled()
            log.warning("could not publish the source alert: %s", exc.message)
        except Exception:
            raise_if_cancelled()
            log.exception("could not publish source alert")
