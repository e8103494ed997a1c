"""The delivery worker: claims due deliveries from the outbox, sends them, records the outcome.

Every instance runs one. ``OutboxStore.claim`` hands each due delivery to one claimer
(row locks with SKIP LOCKED on PostgreSQL, one writer on SQLite) under a lease: a worker
killed mid-delivery leaves it ``delivering`` until the lease runs out, and then any worker
claims it again (the receiver drops the repeat by its idempotency key).

An attempt ends one of four ways:

- sent: ``delivered``;
- a ``TemporaryFailure`` (timeouts, 5xx, 429, SMTP 4xx) or an unexpected error: pending
  again after an exponential backoff with full jitter (``core.notify.retry``), honouring
  the destination's ``Retry-After``; a dead letter once the attempts are used up;
- a ``PermanentFailure`` (4xx, a refused recipient, an unsafe address, no address known for
  the owner): a dead letter at once;
- the destination's rate limit is used up: given back unsent (``postpone``), due when a
  token is there, the attempt not counted.

Dead letters stay until someone retries them through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from slurmcast.core.notify.addresses import DEFAULT_TARGET, own_address, recipient
from slurmcast.core.notify.jobdata import parse_time
from slurmcast.core.notify.messages import Rendered, clean, render
from slurmcast.core.notify.retry import next_attempt
from slurmcast.core.notify.rules import NotifyEvent
from slurmcast.core.ratelimit import Pacer
from slurmcast.errors import StorageError
from slurmcast.logs import context
from slurmcast.sinks.base import Outgoing, PermanentFailure, SendFailure, Sink
from slurmcast.sinks.config import SinksConfig
from slurmcast.storage.models import LAST_ERROR_LENGTH
from slurmcast.storage.outbox import Delivery, OutboxStore, Outcome

log = logging.getLogger("slurmcast.delivery")

#: Deliveries claimed at a time, and sent concurrently.
BATCH = 16
#: Longest wait after the outbox could not be read.
STORAGE_RETRY_MAX = 30.0
#: A held-back delivery's slot is forgotten this long after it came (another instance
#: took the delivery).
RESERVATION_TTL_S = 3600.0


class DeliveryWorker:
    """Sends what the outbox holds, by the kinds of ``sinks``.

    Args:
        outbox: the shared outbox.
        sinks: a sink per destination kind configured (``email``, ``slack``, ``webhook``).
        config: the ``[sinks]`` settings: retries, rate limit, lease, poll interval, the
            e-mail address template.
        instance_id: who claims (stored with each claimed delivery).
        clock: the wall clock (UTC); ``monotonic`` paces the rate limits.
    """

    def __init__(
        self,
        outbox: OutboxStore,
        sinks: Mapping[str, Sink],
        config: SinksConfig,
        *,
        instance_id: str,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._outbox = outbox
        self._sinks = dict(sinks)
        self._config = config
        self._instance = instance_id
        self._clock = clock
        self._monotonic = monotonic
        self._draw = draw
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._pacers: dict[tuple[str, str], Pacer] = {}
        #: Deliveries held back, and the (monotonic) time of the slot each was given.
        self._reserved: dict[str, float] = {}
        #: Attempts by (kind, outcome): delivered, retry, dead, postponed (GET /metrics).
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def wake(self) -> None:
        """Deliveries were written or put back: look at the outbox now."""
        self._wakeup.set()

    def stop(self) -> None:
        """Claim nothing more; ``run`` returns once the deliveries it holds are done.

        A delivery cut off in mid-send would be sent again after its lease: at a shutdown
        the sends under way are finished instead (they are bounded by the sinks' timeouts).
        """
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wakeup.clear()
            try:
                claimed = await self._outbox.claim(
                    self._instance, self._clock(), self._config.lease_s, BATCH
                )
            except StorageError as exc:
                failures += 1
                log.warning("cannot claim deliveries (attempt %d): %s", failures, exc.message)
                await self._sleep(self._backoff(failures))
                continue
            except Exception:  # a row nothing can read must not stop every delivery
                failures += 1
                log.exception("cannot claim deliveries (attempt %d)", failures)
                await self._sleep(self._backoff(failures))
                continue
            failures = 0
            if claimed:
                await self._deliver_batch(claimed)
                if len(claimed) == BATCH:
                    continue  # more may be due
            await self._sleep(self._config.poll_interval)

    def _backoff(self, failures: int) -> float:
        return min(self._config.poll_interval * 2.0 ** min(failures, 16), STORAGE_RETRY_MAX)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()

    async def deliver(self, delivery: Delivery) -> None:
        """One attempt at one claimed delivery, its outcome recorded (never raises:
        ``StorageError`` is logged, and the lease then brings the delivery back)."""
        await self._record([await self._attempt(delivery)])

    async def _deliver_batch(self, claimed: list[Delivery]) -> None:
        """Attempt a claimed batch at once; record every outcome in one transaction.

        Cut off (a shutdown that could not wait for a slow send), the outcomes of the
        attempts that finished are still recorded: a delivery sent must not be sent again
        when its lease runs out. Those cut off come back with their lease.
        """
        tasks = {asyncio.create_task(self._attempt(d)): d for d in claimed}
        try:
            await asyncio.wait(tasks)
        finally:
            outcomes: list[Outcome] = []
            for task, delivery in tasks.items():
                if not task.done():
                    task.cancel()
                elif task.cancelled():
                    continue
                elif (exc := task.exception()) is not None:
                    log.error("delivery %s: the attempt failed", delivery.id, exc_info=exc)
                else:
                    outcomes.append(task.result())
            await self._record(outcomes)

    async def _record(self, outcomes: list[Outcome]) -> None:
        try:
            await self._outbox.record(outcomes, by=self._instance)
        except StorageError as exc:
            log.warning("cannot record %d delivery outcome(s): %s", len(outcomes), exc.message)
        except Exception:  # never let one batch end run(): the leases bring them back
            log.exception("cannot record %d delivery outcome(s)", len(outcomes))

    async def _attempt(self, delivery: Delivery) -> Outcome:
        where = context(delivery=delivery.id, user=delivery.owner)
        sink = self._sinks.get(delivery.kind)
        if sink is None:
            return self._dead(delivery, f"no {delivery.kind} destination is configured", where)
        target = self._target(delivery)
        if target is None:
            return self._dead(delivery, f"no e-mail address is known for {delivery.owner}", where)
        try:
            message = self._message(delivery)
        except Exception:  # a payload the renderer cannot take is unreadable, not fatal
            log.exception("delivery %s: its payload cannot be rendered", delivery.id, extra=where)
            message = None
        if message is None:
            return self._dead(delivery, "the stored delivery cannot be read", where)
        wait = self._slot(delivery, delivery.kind, target)
        if wait > 0:
            self.outcomes[(delivery.kind, "postponed")] += 1
            return Outcome.postponed(delivery.id, self._clock() + timedelta(seconds=wait))
        try:
            # The sinks bound their own time; this bounds a sink's bug, inside the lease.
            async with asyncio.timeout(self._config.lease_s * 0.9):
                result = await sink.send(Outgoing.of(delivery, message, target=target))
        except PermanentFailure as exc:
            return self._dead(delivery, exc.message, where)
        except SendFailure as exc:
            return self._retry(delivery, exc.message, exc.retry_after_s, where)
        except TimeoutError:
            return self._retry(delivery, "the destination did not answer in time", None, where)
        except Exception as exc:  # a sink's bug must not lose the delivery: retried, logged
            log.exception(
                "delivery %s: the %s sink failed", delivery.id, delivery.kind, extra=where
            )
            return self._retry(delivery, f"internal error: {exc.__class__.__name__}", None, where)
        self.outcomes[(delivery.kind, "delivered")] += 1
        log.info(
            "delivery %s (%s) sent on attempt %d: %s",
            delivery.id,
            delivery.kind,
            delivery.attempts,
            result.detail,
            extra=where,
        )
        return Outcome.delivered(delivery.id, self._clock())

    def _target(self, delivery: Delivery) -> str | None:
        if delivery.kind != "email" or delivery.target != DEFAULT_TARGET:
            return delivery.target
        # A rule's "default" address is the owner's at sending time (the template's).
        return recipient(
            delivery.target, own_address(delivery.owner, template=self._config.address_template)
        )

    def _message(self, delivery: Delivery) -> Rendered | None:
        payload = delivery.payload
        try:
            event = NotifyEvent(str(payload.get("event")))
        except ValueError:
            return None
        data = payload.get("data")
        at = parse_time(payload.get("at")) or delivery.created_at
        if not isinstance(data, dict):
            return None
        # The notification's time, not the attempt's: every attempt sends the same body.
        return render(event, data, now=at, delivery_id=delivery.idempotency_key)

    def _slot(self, delivery: Delivery, kind: str, target: str) -> float:
        """0 when the delivery may be sent now; else how long to hold it back.

        Each destination has a ``Pacer``: a delivery takes the next slot, and one held
        back keeps the slot it was given; when it comes back for it, it goes at once.
        Held-back deliveries thus go in the order they were first claimed, each given back
        once, and the destination's rate is kept however long the backlog.
        """
        now = self._monotonic()
        if self._reserved.pop(delivery.id, None) is not None:
            return 0.0
        if len(self._pacers) > 10_000 or len(self._reserved) > 10_000:
            self._pacers = {k: p for k, p in self._pacers.items() if not p.idle_since(now)}
            # A slot another instance's claim made useless is forgotten after a while.
            horizon = now - RESERVATION_TTL_S
            self._reserved = {i: t for i, t in self._reserved.items() if t > horizon}
        key = (kind, target)
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._pacers[key] = Pacer(
                rate=self._config.rate_per_minute / 60.0, burst=self._config.rate_burst
            )
        wait = pacer.reserve(now)
        if wait > 0:
            self._reserved[delivery.id] = now + wait
        return wait

    def _retry(
        self,
        delivery: Delivery,
        error: str,
        retry_after_s: float | None,
        where: dict[str, Any],
    ) -> Outcome:
        error = clean(error, LAST_ERROR_LENGTH)  # a sink's text: no NUL or control character
        now = self._clock()
        at = next_attempt(
            delivery.attempts, now, self._draw, self._config.retry, not_before_s=retry_after_s
        )
        if at is None:
            return self._dead(delivery, error, where)
        self.outcomes[(delivery.kind, "retry")] += 1
        log.warning(
            "delivery %s (%s) attempt %d failed, next at %s: %s",
            delivery.id,
            delivery.kind,
            delivery.attempts,
            at.isoformat(timespec="seconds"),
            error,
            extra=where,
        )
        return Outcome.failed(delivery.id, error, at, now)

    def _dead(self, delivery: Delivery, error: str, where: dict[str, Any]) -> Outcome:
        error = clean(error, LAST_ERROR_LENGTH)
        self.outcomes[(delivery.kind, "dead")] += 1
        log.error(
            "delivery %s (%s) is a dead letter after %d attempt(s): %s",
            delivery.id,
            delivery.kind,
            delivery.attempts,
            error,
            extra=where,
        )
        return Outcome.failed(delivery.id, error, None, self._clock())
