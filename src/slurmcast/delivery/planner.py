"""The rules in force, and the plan of deliveries for one poller step.

Rules live in the database and change through the API of any instance. The planner keeps
the enabled ones in memory: it reloads them when this instance's API changed one
(``changed``) and every ``refresh_s`` seconds (another instance's change). Planning is then
pure and synchronous (``core.notify.plan``), so a poller step never waits for the
database; a step planned with rules a few seconds old is the price.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from slurmcast.core.events import job_payload
from slurmcast.core.notify.plan import (
    PENDING_ID_PREFIX,
    Planned,
    plan_events,
    plan_pending,
    rules_by_owner,
)
from slurmcast.core.notify.rules import MAX_PENDING_MINUTES, NotifyEvent, Rule, restore_rule
from slurmcast.core.notify.ssrf import UrlPolicy
from slurmcast.core.records import JobsListing, JobState
from slurmcast.errors import ProtocolError, StorageError
from slurmcast.storage.outbox import OutboxStore

log = logging.getLogger("slurmcast.delivery")

#: Seconds between reloads of the rules when nothing here changed them.
REFRESH_S = 30.0


class DeliveryPlanner:
    """Plans deliveries with the enabled rules; ``run`` keeps them current."""

    def __init__(
        self,
        outbox: OutboxStore,
        url_policy: UrlPolicy,
        new_id: Callable[[], str],
        *,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._outbox = outbox
        self._url_policy = url_policy
        self._new_id = new_id
        self._refresh_s = refresh_s
        self._clock = clock
        self._changed = asyncio.Event()
        self.rules: list[Rule] = []
        #: Set once the rules were read (or could not be) for the first time.
        self.loaded = asyncio.Event()
        #: (job id, rule id) pairs told of a long wait; pruned as jobs stop pending.
        self._told: set[tuple[str, str]] = set()
        #: Ids of the long-wait notifications stored before this process started (read once):
        #: a restart does not publish them again.
        self._stored_pending: set[str] | None = None
        #: Reloads completed (tests await a reload through it).
        self.reloads = 0

    def changed(self) -> None:
        """A rule was created, changed or deleted here: reload now."""
        self._changed.set()

    async def run(self) -> None:
        while True:
            self._changed.clear()
            try:
                await self.reload()
            except Exception:  # the rules in force stay; the next reload may do better
                log.exception("cannot reload the notification rules")
            self.loaded.set()
            try:
                async with asyncio.timeout(self._refresh_s):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def reload(self) -> None:
        """Read the enabled rules; keep the ones in memory when the database cannot answer."""
        try:
            stored = await self._outbox.all_rules(enabled_only=True)
        except StorageError as exc:
            log.warning("cannot read the notification rules (keeping %d): %s", len(self.rules), exc)
            return
        if self._stored_pending is None:
            try:
                self._stored_pending = await self._outbox.notification_ids(
                    PENDING_ID_PREFIX, self._clock() - timedelta(minutes=MAX_PENDING_MINUTES)
                )
            except StorageError as exc:
                log.warning("cannot read which long waits were told already: %s", exc)
        rules = []
        for row in stored:
            try:
                rules.append(restore_rule(row.spec, row.owner, row.id, self._url_policy))
            except (ProtocolError, ValueError) as exc:
                log.warning("notification rule %s of %s is not used: %s", row.id, row.owner, exc)
        self.rules = rules
        self.reloads += 1

    async def take_over(self) -> None:
        """This instance starts polling (again): what another poller told since this one
        started is in the database, not in this one's memory; read it afresh."""
        self._told = set()
        self._stored_pending = None
        await self.reload()

    def forget(self, planned: Sequence[Planned]) -> None:
        """A step's plan was not published (its commit failed): the next step plans its
        long waits again, so they are not marked told."""
        for item in planned:
            if item.notification.id.startswith(PENDING_ID_PREFIX):
                job_id = str(item.notification.details.get("job_id"))
                for delivery in item.deliveries:
                    self._told.discard((job_id, delivery.rule_id))

    def plan(
        self,
        events: Sequence[object],
        now: datetime,
        jobs: JobsListing | None = None,
    ) -> list[Planned]:
        """The deliveries of one step: its events, and after a jobs poll (``jobs``, the
        listing) the jobs pending too long."""
        rules = self.rules
        if not rules:
            return []
        planned = plan_events(rules, events, now, self._new_id)
        if jobs is not None:
            planned += self._pending(rules, jobs, now)
        return planned

    def _pending(self, rules: list[Rule], listing: JobsListing, now: datetime) -> list[Planned]:
        waiting = [r for r in rules if NotifyEvent.JOB_PENDING_LONG in r.events]
        pending = {
            job_id: job for job_id, job in listing.jobs.items() if job.state is JobState.PENDING
        }
        self._told = {told for told in self._told if told[0] in pending}
        if not waiting:
            return []
        # Only the jobs of people who asked, that waited long enough for one of their rules
        # and are not told of yet by all of them: a queue of 100k pending jobs costs a
        # lookup each, and a payload only for the few that may be told of now.
        by_owner = rules_by_owner(waiting)
        as_of = listing.taken_at
        payloads = []
        for job_id, job in pending.items():
            own = by_owner.get(job.user)
            if not own or job.submit_time is None:
                continue
            waited = (as_of - job.submit_time).total_seconds()
            if any(
                (job_id, rule.id) not in self._told and waited >= (rule.pending_minutes or 0) * 60
                for rule in own
            ):
                payloads.append(job_payload(job))
        return plan_pending(
            waiting,
            payloads,
            now,
            self._told,
            as_of=listing.taken_at,
            stored=self._stored_pending or frozenset(),
        )
