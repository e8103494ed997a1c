"""The Redis broker: channels, history and state shared by every instance.

Publishing runs one Lua script (``redis_scripts.COMMIT``) that assigns the
offset, appends to the channel's stream, applies the state change and
``PUBLISH``es the message to every instance, atomically. Each instance runs
one reader on the Pub/Sub channel and hands publications to its node in
offset order. The reader trusts nothing it cannot check:

* an offset that skips ahead means the subscription dropped messages: the
  gap is filled from the stream before going on;
* a new epoch, or a gap the stream no longer holds, means the history the
  local subscribers follow is gone: they are told to reconnect and recover
  (``handle_stream_lost``), which gives them ``recovered: false`` and a
  snapshot instead of a silent hole;
* after every (re)connection, and every ``audit_interval`` seconds, the
  channels' positions in Redis are compared with what was delivered, so a
  message lost together with a connection is found even on a channel that
  goes quiet afterwards. A position ahead of what was delivered is only
  filled if it is still ahead at the next audit (a message is usually just
  in flight).

redis-py's own reconnect-and-retry is turned off: a Pub/Sub connection that
silently reconnects loses messages without telling anyone. This module
reconnects itself, with backoff, and checks positions when it does.

Longer than ~400 lines on purpose: publishing, the ordered reader, gap filling and the
audit share one connection's state and one set of offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from slurmcast.brokers import redis_scripts
from slurmcast.brokers.epoch import new_epoch
from slurmcast.cancellation import raise_if_cancelled
from slurmcast.core.backoff import retry_delay
from slurmcast.core.history import HistoryResult
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication, Tags
from slurmcast.core.views import SNAPSHOT_CHANNELS, Snapshot
from slurmcast.errors import BrokerUnavailable, Fenced, PublishError
from slurmcast.ports import Batch, PublicationHandler, PublishResult

log = logging.getLogger("slurmcast.broker")

ConnectionCallback = Callable[[bool, str], Awaitable[None]]

#: Errors meaning "Redis cannot be reached now" (as opposed to a bug).
UNREACHABLE = (RedisError, OSError, TimeoutError)


def _offset_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.rpartition("-")[2])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def generation(epoch: str) -> str | None:
    """The ``P:gen`` id an epoch was handed out under (``<id>-<n>``: a channel born
    by a publication, or not born yet); None for a seeded channel's epoch."""
    head, dash, tail = epoch.partition("-")
    return head if dash and tail.isdigit() else None


def born_from(last: StreamPosition, epoch: str) -> bool:
    """Whether a channel tracked at ``last`` may have been born since as ``epoch``.

    Position 0 of a channel not born yet carries the epoch its birth would
    have taken; other births (of other channels) move that on, so the epoch
    it is born with may be a later one of the same generation. Nothing of it
    was delivered before its birth: delivery just starts at its offset 1.
    """
    if last.offset != 0 or last.epoch == epoch:
        return False
    tracked = generation(last.epoch)
    return tracked is not None and tracked == generation(epoch)


def encode_entry(publication: Publication) -> bytes:
    """``header \\n payload``: what the stream stores and Pub/Sub carries."""
    header = orjson.dumps([publication.channel, publication.owner, publication.tags])
    return header + b"\n" + publication.payload


def decode_entry(entry: bytes, position: StreamPosition | None) -> Publication:
    header, _, payload = entry.partition(b"\n")
    channel, owner, raw_tags = orjson.loads(header)
    tags: Tags = {
        name: tuple(value) if isinstance(value, list) else value for name, value in raw_tags.items()
    }
    return Publication(channel, payload, owner, tags, position)


class RedisBroker:
    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "slurmcast",
        instance: str = "",
        history_size: Callable[[str], int] = lambda channel: 100,
        history_ttl: float | None = None,
        wall_clock: Callable[[], float] = time.time,
        epoch: Callable[[], str] = new_epoch,
        confirm_timeout: float = 5.0,
        audit_interval: float = 2.0,
        reconnect_max: float = 5.0,
        on_connection: ConnectionCallback | None = None,
        max_connections: int = 16,
    ) -> None:
        self.url = url
        self.prefix = prefix + ":"
        self.instance = instance or secrets.token_hex(4)
        self._history_size = history_size
        self._ttl_ms = int(history_ttl * 1000) if history_ttl else 0
        self._wall_clock = wall_clock
        self._epoch = epoch
        self._confirm_timeout = confirm_timeout
        self._audit_interval = audit_interval
        self._reconnect_max = reconnect_max
        self._on_connection = on_connection
        # No retries inside redis-py: see the module docstring. A bounded pool:
        # a burst of subscribing clients waits for a connection instead of
        # opening (and keeping) one each.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=5.0,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            retry=Retry(NoBackoff(), 0),
            client_name=f"slurmcast-{self.instance}",
        )
        self.redis = Redis(connection_pool=pool)
        self._commit = self.redis.register_script(redis_scripts.COMMIT)
        self._read = self.redis.register_script(redis_scripts.READ)
        self._handler: PublicationHandler | None = None
        self._reader: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Future[None]] = set()
        self._sequence = itertools.count(1)
        # channel -> the position of the last publication delivered locally.
        self._delivered: dict[str, StreamPosition] = {}
        # channel -> a top seen ahead of delivery at the last audit.
        self._suspects: dict[str, int] = {}
        self._waiters: dict[bytes, asyncio.Future[int]] = {}
        # (channel, since, limit) -> a history read not sent yet, shared by every
        # caller asking the same meanwhile: after a restart thousands of clients
        # recover from the same position within milliseconds.
        self._unsent_reads: dict[tuple[str, int | None, int], asyncio.Task[HistoryResult]] = {}
        self.connected = False
        self.last_error = ""
        self.gaps_filled = 0
        self.streams_lost = 0
        #: Times the subscription came back after being lost (GET /metrics).
        self.reconnects = 0
        self._subscribed_before = False
        self._subscribed = asyncio.Event()

    @property
    def channel_name(self) -> str:
        return self.prefix + "pub"

    # -- life --------------------------------------------------------------------

    async def start(self, handler: PublicationHandler) -> None:
        """Start reading; returns once subscribed, or at once if Redis is down
        (the reader keeps trying: an instance serves its clients without Redis)."""
        self._handler = handler
        self._reader = asyncio.create_task(self._read_forever(), name="redis-reader")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3.0):
                await self._subscribed.wait()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for task in list(self._callbacks):
            task.cancel()
        for waiter in self._waiters.values():
            waiter.cancel()
        self._handler = None
        await self.redis.aclose(close_connection_pool=True)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": _without_password(self.url),
            "prefix": self.prefix[:-1],
            "connected": self.connected,
            "error": self.last_error or None,
            "gaps_filled": self.gaps_filled,
            "streams_lost": self.streams_lost,
        }

    # -- publishing --------------------------------------------------------------

    async def publish(self, publication: Publication, *, confirm: bool = True) -> PublishResult:
        nonce = self._nonce()
        waiter = None
        if confirm and self.connected:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[nonce + b"1"] = waiter
        try:
            (positioned,) = await self._run_commit(Batch((publication,)), nonce)
            delivered = 0
            if waiter is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(self._confirm_timeout):
                        delivered = await waiter
            return PublishResult(positioned, delivered)
        finally:
            self._waiters.pop(nonce + b"1", None)

    async def commit(self, batch: Batch) -> list[Publication]:
        return await self._run_commit(batch, self._nonce())

    def _nonce(self) -> bytes:
        return f"{self.instance}:{next(self._sequence)}:".encode()

    async def _run_commit(self, batch: Batch, nonce: bytes) -> list[Publication]:
        if self._handler is None:
            raise PublishError("broker is not started")
        args: list[Any] = [
            self.prefix,
            batch.fence or "",
            self._epoch(),
            int(self._wall_clock() * 1000),
            nonce,
            len(batch.checkpoint),
        ]
        for name, value in batch.checkpoint.items():
            args += [name, value]
        args.append(len(batch.seeds))
        for channel, items in batch.seeds.items():
            args += [channel, len(items)]
            for key, item in items.items():
                args += [key, orjson.dumps(item)]
        args.append(len(batch.publications))
        for publication in batch.publications:
            change = publication.state
            op, key, value = "", "", b""
            if change is not None:
                op, key = ("d", change.key) if change.value is None else ("s", change.key)
                value = orjson.dumps(change.value) if change.value is not None else b""
            args += [
                "0" if publication.to_all_clients else "1",
                publication.channel,
                self._history_size(publication.channel),
                encode_entry(publication),
                op,
                key,
                value,
            ]
        try:
            result = await self._commit(args=args)
        except ResponseError as exc:
            raise_if_cancelled()
            if str(exc).startswith("FENCED"):
                raise Fenced(
                    "the polling lease was lost: this poller's step was not published"
                ) from None
            raise PublishError(f"Redis refused the publication: {exc}") from exc
        except UNREACHABLE as exc:
            raise_if_cancelled()
            raise BrokerUnavailable(f"Redis is unavailable: {exc}") from exc
        return [
            publication
            if publication.to_all_clients
            else publication.at(StreamPosition(int(offset), _text(epoch)))
            for publication, (offset, epoch) in zip(batch.publications, result, strict=True)
        ]

    # -- reading -----------------------------------------------------------------

    async def history(self, channel: str, *, since: int | None, limit: int) -> HistoryResult:
        key = (channel, since, limit)
        read = self._unsent_reads.get(key)
        if read is None:
            read = asyncio.create_task(self._history_once(key))
            read.add_done_callback(_retrieve_exception)
            self._unsent_reads[key] = read
        # One caller cancelled must not cancel the others' read.
        return await asyncio.shield(read)

    async def _history_once(self, key: tuple[str, int | None, int]) -> HistoryResult:
        # A caller may join until this first step: it asked before the read is
        # sent, so the result holds everything published before it asked (what
        # Node.subscribe's hold-and-merge relies on). Later callers read anew.
        del self._unsent_reads[key]
        channel, since, limit = key
        mode = "latest" if since is None else "since"
        epoch, top, oldest, offsets, lengths, data = await self._call_read(
            channel, mode, since or 0, limit
        )
        position = StreamPosition(int(top), _text(epoch))
        publications = []
        if offsets:
            start = 0
            for offset, length in zip(offsets.split(b","), lengths.split(b","), strict=True):
                end = start + int(length)
                at = StreamPosition(int(offset), position.epoch)
                publications.append(decode_entry(data[start:end], at))
                start = end
        if since is None:
            publications.reverse()
        return HistoryResult(publications, position, _offset_of(oldest))

    async def position(self, channel: str) -> StreamPosition:
        epoch, top = await self._call_read(channel, "position")
        return StreamPosition(int(top), _text(epoch))

    async def snapshot(self, channel: str) -> Snapshot | None:
        if channel not in SNAPSHOT_CHANNELS:
            return None
        epoch, top, flat = await self._call_read(channel, "snapshot")
        items = [orjson.loads(value) for value in flat[1::2]]
        return Snapshot(channel, StreamPosition(int(top), _text(epoch)), items)

    async def checkpoint(self) -> dict[str, bytes]:
        try:
            parts: dict[Any, Any] = await _awaited(self.redis.hgetall(self.prefix + "checkpoint"))
        except UNREACHABLE as exc:
            raise_if_cancelled()
            raise BrokerUnavailable(f"Redis is unavailable: {exc}") from exc
        return {
            _text(name): value.encode() if isinstance(value, str) else value
            for name, value in parts.items()
        }

    async def _call_read(
        self, channel: str, mode: str, since: int = 0, limit: int = 0
    ) -> Sequence[Any]:
        args: list[Any] = [
            self.prefix,
            channel,
            self._epoch(),
            mode,
            since,
            limit,
            int(self._wall_clock() * 1000),
            self._ttl_ms,
        ]
        try:
            result: Sequence[Any] = await self._read(args=args)
            return result
        except UNREACHABLE as exc:
            raise_if_cancelled()
            raise BrokerUnavailable(f"Redis is unavailable: {exc}") from exc

    # -- delivery ----------------------------------------------------------------

    def track(self, channel: str, position: StreamPosition) -> None:
        if channel not in self._delivered:
            self._delivered[channel] = position

    def untrack(self, channel: str) -> None:
        # Nobody here follows the channel any more: nothing to check, or to
        # keep (a client may subscribe to any number of unused user: names).
        self._delivered.pop(channel, None)
        self._suspects.pop(channel, None)

    async def _read_forever(self) -> None:
        failures = 0
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel_name)
                # Its confirmation comes first: from then on nothing is missed.
                while True:
                    reply = await pubsub.get_message(timeout=2.0)
                    if reply is None:
                        raise TimeoutError("Redis did not confirm the subscription")
                    if reply["type"] == "subscribe":
                        break
                await self._catch_up(settled=True)
                self._set_connected(True, "")
                failures = 0
                audit_at = time.monotonic() + self._audit_interval
                while True:
                    message = await pubsub.get_message(timeout=self._audit_interval / 2)
                    if message is not None and message["type"] == "message":
                        await self._receive(message["data"])
                    if time.monotonic() >= audit_at:
                        await self._catch_up(settled=False)
                        audit_at = time.monotonic() + self._audit_interval
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as exc:
                raise_if_cancelled()
                failures += 1
                if failures == 1 or self.connected:
                    log.warning("Redis subscription lost: %s; reconnecting", exc)
                self._set_connected(False, str(exc) or type(exc).__name__)
            except Exception:  # a bug must not end delivery for good
                raise_if_cancelled()
                failures += 1
                log.exception("Redis reader crashed; restarting it")
                self._set_connected(False, "reader crashed")
            finally:
                with contextlib.suppress(Exception):
                    await _close_pubsub(pubsub)
            await asyncio.sleep(retry_delay(0.1, failures, self._reconnect_max))

    def _set_connected(self, connected: bool, error: str) -> None:
        self.last_error = error
        if connected:
            self._subscribed.set()
        if connected == self.connected:
            return
        if connected and self._subscribed_before:
            self.reconnects += 1
        self._subscribed_before = self._subscribed_before or connected
        self.connected = connected
        if not connected:
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_result(0)
        if self._on_connection is not None:
            # Its own task: the callback may publish, and a publication waits
            # for this very reader to deliver it.
            task: asyncio.Future[None] = asyncio.ensure_future(
                self._on_connection(connected, error)
            )
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    async def _receive(self, message: bytes) -> None:
        try:
            offset_text, epoch_bytes, nonce, entry = message.split(b"\n", 3)
            if offset_text == b"R":
                self._reseeded(entry.decode(), StreamPosition(0, epoch_bytes.decode()))
                return
            offset = int(offset_text)
            position = StreamPosition(offset, epoch_bytes.decode()) if offset else None
            publication = decode_entry(entry, position)
        except (ValueError, TypeError, AttributeError) as exc:
            # Not ours (someone else published on our channel): skip it, keep reading.
            log.warning("ignored a malformed message on %s: %s", self.channel_name, exc)
            return
        delivered = 0
        if position is None or await self._in_order(publication.channel, position):
            delivered = self._deliver(publication)
        waiter = self._waiters.get(nonce)
        if waiter is not None and not waiter.done():
            waiter.set_result(delivered)

    async def _in_order(self, channel: str, position: StreamPosition) -> bool:
        """Deliver what is missing before ``position``; False if it was delivered already."""
        last = self._delivered.get(channel)
        if last is not None and born_from(last, position.epoch):
            last = self._delivered[channel] = StreamPosition(0, position.epoch)
        if last is not None and last.epoch == position.epoch:
            if position.offset <= last.offset:
                return False
            if position.offset > last.offset + 1:
                await self._fill(channel, last, position.offset - 1)
                last = self._delivered.get(channel)
                if last is not None and position.offset <= last.offset:
                    return False
        elif last is not None:
            self._lost(channel, f"epoch changed from {last.epoch} to {position.epoch}")
        return True

    def _deliver(self, publication: Publication) -> int:
        if publication.position is not None:
            self._delivered[publication.channel] = publication.position
            self._suspects.pop(publication.channel, None)
        if self._handler is None:
            return 0
        return self._handler.handle_publication(publication)

    async def _fill(self, channel: str, last: StreamPosition, through: int) -> None:
        """Deliver ``last.offset + 1 .. through`` from the stream, or declare the stream lost."""
        wanted = through - last.offset
        result = await self.history(channel, since=last.offset, limit=wanted)
        offsets = [p.offset for p in result.publications]
        if result.top.epoch != last.epoch or offsets != list(range(last.offset + 1, through + 1)):
            self._lost(
                channel,
                f"offsets {last.offset + 1}..{through} are no longer in the history",
                StreamPosition(max(through, 0), result.top.epoch),
            )
            return
        log.info("filled a gap of %d message(s) on %s from history", wanted, channel)
        self.gaps_filled += 1
        for publication in result.publications:
            self._deliver(publication)

    def _reseeded(self, channel: str, position: StreamPosition) -> None:
        last = self._delivered.get(channel)
        if last is None or last.epoch != position.epoch:
            self._lost(channel, "the poller replaced its state (new epoch)", position)

    def _lost(self, channel: str, why: str, position: StreamPosition | None = None) -> None:
        log.warning("the %s stream was lost under this instance (%s)", channel, why)
        self.streams_lost += 1
        if position is not None:
            self._delivered[channel] = position
        else:
            self._delivered.pop(channel, None)
        self._suspects.pop(channel, None)
        if self._handler is not None:
            self._handler.handle_stream_lost(channel)

    async def _catch_up(self, *, settled: bool) -> None:
        """Compare delivered positions with Redis's; fill what is missing.

        ``settled``: nothing can be in flight (just subscribed), so whatever
        is missing is missing. Otherwise a position ahead of delivery is
        only filled when it is still ahead one audit later.
        """
        channels = list(self._delivered)
        if not channels:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.prefix + "gen", "id")
            for channel in channels:
                pipe.hmget(self.prefix + "ch:" + channel, ["epoch", "top"])
            gen, *replies = await pipe.execute()
        current = _text(gen) if gen is not None else None
        for channel, (epoch, top) in zip(channels, replies, strict=True):
            last = self._delivered.get(channel)
            if last is None:
                continue
            if epoch is None:
                tracked = generation(last.epoch) if last.offset == 0 else None
                if tracked is not None and tracked == current:
                    continue  # not born yet, and Redis is the one it was tracked on
                self._lost(channel, "its epoch changed in Redis")
                continue
            if born_from(last, _text(epoch)):
                last = self._delivered[channel] = StreamPosition(0, _text(epoch))
            if _text(epoch) != last.epoch:
                self._lost(channel, "its epoch changed in Redis")
                continue
            top_offset = int(top)
            if top_offset <= last.offset:
                self._suspects.pop(channel, None)
                continue
            suspect = self._suspects.get(channel)
            if settled:
                await self._fill(channel, last, top_offset)
            elif suspect is not None and suspect > last.offset:
                log.warning(
                    "no message arrived for %s offsets %d..%d: filling",
                    channel,
                    last.offset + 1,
                    suspect,
                )
                await self._fill(channel, last, suspect)
                self._suspects[channel] = top_offset
            else:
                self._suspects[channel] = top_offset


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}" if user else f"{scheme}{sep}***@{host}"


async def _awaited(reply: object) -> Any:
    # Before 8.x, redis-py types a command's reply as "awaitable or not" (one annotation for
    # its sync and async clients); on the asyncio client it is always awaitable.
    if inspect.isawaitable(reply):
        return await reply
    return reply


async def _close_pubsub(pubsub: PubSub) -> None:
    # redis-py annotates PubSub.aclose only from 8.x on; read through a typed name so
    # mypy --strict passes on every redis version pyproject.toml admits, without an ignore
    # that one release needs and the next reports as unused.
    aclose: Callable[[], Awaitable[None]] = pubsub.aclose
    await aclose()


def _retrieve_exception(read: asyncio.Task[HistoryResult]) -> None:
    # Every caller of a shared read may have been cancelled: its failure then
    # has nobody to raise to, and asyncio would log it as never retrieved.
    if not read.cancelled():
        read.exception()
