"""``SlurmcastClient``: a connection to a slurmcast server that survives reconnections.

One task (the *runner*) reads the socket and dispatches every frame: replies
complete the request waiting for them (matched by ``id``), channel messages
go through their subscription's ``ChannelStream`` (positions, duplicates,
snapshots) into its queue. When the connection ends the runner decides what
to do from the close code (``closes.py``), waits a fully jittered backoff
(``backoff.py``), reconnects, authenticates with a token from the provider
and resubscribes every subscription from its last position. The server
replays what was missed, or answers ``recovered: false`` and sends a fresh
snapshot in the same reply, and the subscription tells the application to
resync.

Longer than ~400 lines on purpose: the client's one state machine (connect, serve,
reconnect, resubscribe) and the public API that drives it; the pure parts live in the
modules named above.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidURI
from websockets.uri import parse_uri

from slurmcast.client.backoff import RESTART_MAXIMUM, backoff_delay
from slurmcast.client.closes import Reaction, reaction_to_close
from slurmcast.client.errors import (
    CONNECTION_FAILED,
    CONNECTION_LOST,
    NOT_CONNECTED,
    TOKEN_PROVIDER_FAILED,
    AuthenticationFailed,
    ClientClosed,
    ClientError,
    ConnectionFailed,
)
from slurmcast.client.opening import authenticate, open_connection
from slurmcast.client.registry import ClientSubscriptions
from slurmcast.client.requests import PendingRequests, error_from_reply
from slurmcast.client.state import ConnectionState
from slurmcast.client.stream import ALL_CHANNEL, ChannelStream, Message, Position
from slurmcast.client.subscription import Callback, Subscription
from slurmcast.client.wire import (
    UndecodableFrame,
    WireFormat,
    check_wire_format,
    decode,
    encode,
    format_of,
)

log = logging.getLogger("slurmcast.client")

#: Returns a token (a JWT), or an awaitable of one; called for every connection and refresh.
TokenProvider = Callable[[], str | Awaitable[str]]
#: Called with the new state on every transition.
StateHook = Callable[[ConnectionState], object]

#: Error code of a refused token (server ``ErrorCode.TOKEN_EXPIRED``).
TOKEN_EXPIRED = "token_expired"
RATE_LIMITED = "rate_limited"

CONNECTED = ConnectionState.CONNECTED
CONNECTING = ConnectionState.CONNECTING
DISCONNECTED = ConnectionState.DISCONNECTED
CLOSED = ConnectionState.CLOSED
FAILED = ConnectionState.FAILED


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A ``history`` reply.

    Attributes:
        position: the channel's position when the history was read.
        publications: stored messages, oldest first (filtered by the server's rules).
        complete: with ``since``: whether these are all the messages after it.
    """

    channel: str
    position: Position | None
    publications: list[Message]
    complete: bool | None = None


class SlurmcastClient:
    """An async client for dashboards and scripts.

    Args:
        url: the WebSocket URL, e.g. ``ws://127.0.0.1:5011/``.
        token: a JWT for servers running ``--auth jwt``; the first connection uses it.
        token_provider: returns a fresh token, plain or awaitable; called for every
            later connection and when the server says the token expired. Without
            one, ``token`` is reused, and an expired token is final.
        backoff_initial: ceiling of the first reconnection delay, in seconds.
        backoff_max: ceiling of every reconnection delay.
        restart_backoff_max: ceiling of the delays after the server closed saying it
            restarts (1001, 1012), for 15 attempts: every client of a restarted
            server is back within about that long of it answering again.
        rng: the random source of the jitter.
        on_state: called with the new ``ConnectionState`` on every transition.
        open_timeout: seconds allowed for the opening handshake and authentication.
        wire_format: ``"msgpack"`` asks the server for the ``slurmcast.msgpack``
            subprotocol: binary MessagePack frames both ways, smaller and cheaper to
            decode than JSON, delivered as the same dicts. A server that does not
            agree (an older one) gets JSON on that connection, logged at INFO.
        compression: offer permessage-deflate (the server compresses what is worth
            it); False saves CPU on both ends where bandwidth is plentiful.

    Usage::

        async with SlurmcastClient("ws://127.0.0.1:5011/") as client:
            async for message in await client.subscribe("jobs", snapshot=True):
                ...
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        restart_backoff_max: float = RESTART_MAXIMUM,
        rng: random.Random | None = None,
        on_state: StateHook | None = None,
        open_timeout: float = 10.0,
        wire_format: WireFormat = "json",
        compression: bool = True,
    ) -> None:
        try:
            parse_uri(url)
        except InvalidURI as exc:
            raise ValueError(f"not a WebSocket URL: {url!r} ({exc})") from None
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        if restart_backoff_max <= 0:
            raise ValueError("need 0 < restart_backoff_max")
        self.url = url
        self.on_state = on_state
        self.error: ClientError | None = None
        #: The user and token expiry the server reported (None without authentication).
        self.user: str | None = None
        self.expires_at: str | None = None
        self._token = token
        self._token_served = False
        self._provider = token_provider
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._restart_backoff_max = restart_backoff_max
        self._rng = rng if rng is not None else random.Random()
        self._open_timeout = open_timeout
        self._wire_format = check_wire_format(wire_format)
        self._compression = compression
        self._state = DISCONNECTED
        self._changed = asyncio.Event()
        self._connect_lock = asyncio.Lock()
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._generation = 0
        self._failures_at_connect = 0
        self._pending = PendingRequests()
        self._subs = ClientSubscriptions()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    # -- life cycle -------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        return self._subs.by_channel()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and authenticate; from then on the client reconnects by itself.

        Subscriptions made earlier are (re)sent. Does nothing if the client is
        already connected or reconnecting.

        Raises:
            AuthenticationFailed: the server refused the token (asked the provider twice).
            ConnectionFailed: the server could not be reached, or refused the connection.
        """
        async with self._connect_lock:
            if self._runner is not None and not self._runner.done():
                return
            self._closing = False
            self.error = None
            try:
                await self._attempt()
            except ClientError as exc:
                self._give_up(exc)
                raise
            except BaseException:
                self._set_state(DISCONNECTED)
                raise
            self._failures_at_connect = 0
            self._runner = asyncio.create_task(self._run(), name="slurmcast-client")

    async def close(self) -> None:
        """Close the connection and stop reconnecting.

        Iterations end after the messages already queued; callbacks get no
        further message; waiting calls raise ``ClientClosed``. Idempotent.
        """
        if self._state is CLOSED:
            return
        self._closing = True
        self._set_state(CLOSED)
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        current = asyncio.current_task()
        runner, self._runner = self._runner, None
        tasks = [t for t in (runner, *self._tasks) if t is not None and t is not current]
        await _cancel_all(tasks)
        self._pending.fail_all(ClientClosed())
        self._subs.end_all(None)
        await _cancel_all([t for t in self._pumps if t is not current])

    # -- subscriptions ------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        callback: Callback | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
        snapshot: bool = False,
        since: Position | tuple[int, str] | None = None,
    ) -> Subscription:
        """Subscribe to ``channel``, for as long as the client lives.

        Args:
            channel: ``jobs``, ``nodes``, ``metrics``, ``notifications``, ``alerts``,
                ``user:<name>``, or ``all`` for the messages published to every client
                (nothing is sent to the server for ``all``).
            callback: called with each message (plain or coroutine function);
                without one, iterate the subscription.
            filter: the server-side filter, ``{"user": "alice", "status": ["RUNNING"]}``.
            snapshot: deliver the channel's state first, and again after a resync.
            since: replay the messages after this ``(offset, epoch)`` first.

        Returns:
            The subscription, once the server accepted it.

        Raises:
            ClientError: the server refused (``unknown_channel``, ``forbidden``,
                ``invalid_filter``, ``snapshot_not_available``, ...).
            ValueError: already subscribed to ``channel``, or options given for ``all``.
        """
        if channel in self._subs:
            raise ValueError(f"already subscribed to {channel}; unsubscribe first")
        if channel == ALL_CHANNEL and (filter or snapshot or since is not None):
            raise ValueError("the 'all' pseudo-channel has no filter, snapshot or position")
        self._check_usable()
        start = Position(*since) if since is not None else None
        stream = ChannelStream(channel, snapshot=snapshot, filter=filter, since=start)
        sub = Subscription(self, stream, callback)
        if sub._pump is not None:
            self._pumps.add(sub._pump)
            sub._pump.add_done_callback(self._pumps.discard)
        self._subs.add(sub)
        if channel == ALL_CHANNEL:
            sub._mark_ready()
            return sub
        try:
            ws = self._ws
            if self._state is CONNECTED and ws is not None:
                # Otherwise the connection being opened sends it.
                with contextlib.suppress(ConnectionClosed):
                    await self._send_subscribe(ws, sub)
            await sub._wait_ready()
        except BaseException:
            if self._subs.remove(sub):
                sub._end(None)
            raise
        return sub

    async def _unsubscribe(self, subscription: Subscription) -> None:
        channel = subscription.channel
        held = self._subs.remove(subscription)
        subscription._end(None)
        if not held:
            return
        if channel == ALL_CHANNEL or self._state is not CONNECTED:
            return  # a new connection starts without it
        with contextlib.suppress(ConnectionFailed):
            await self._request({"type": "unsubscribe", "channel": channel})

    # -- requests -------------------------------------------------------------------

    async def ping(self) -> float:
        """An application-level ping; returns the round trip in seconds."""
        started = time.monotonic()
        await self._request({"type": "ping"})
        return time.monotonic() - started

    async def history(
        self,
        channel: str,
        *,
        limit: int = 100,
        since: Position | tuple[int, str] | None = None,
    ) -> HistoryPage:
        """The channel's stored messages: the last ``limit``, or those after ``since``.

        Raises:
            ClientError: the server refused (``invalid_field``, ``forbidden``, ...).
        """
        request: Message = {"type": "history", "channel": channel, "limit": limit}
        if since is not None:
            request["since"] = Position(*since).to_dict()
        reply = await self._request(request)
        publications = reply.get("publications")
        complete = reply.get("complete")
        return HistoryPage(
            channel=channel,
            position=Position.from_dict(reply.get("position")),
            publications=list(publications) if isinstance(publications, list) else [],
            complete=complete if isinstance(complete, bool) else None,
        )

    async def mark_read(self, ids: Iterable[str]) -> list[str]:
        """Mark notifications read; returns the ids the server marked.

        Raises:
            ClientError: e.g. ``invalid_field`` (no ids, too many), ``storage_unavailable``.
        """
        reply = await self._request({"type": "mark_read", "ids": list(ids)})
        marked = reply.get("ids")
        return [str(i) for i in marked] if isinstance(marked, list) else []

    async def broadcast(self, channel: str, message: Mapping[str, Any]) -> int:
        """Publish ``message`` on ``channel`` (or ``"all"``); returns the clients reached here.

        Admins only. A ``message`` with a string ``type`` reaches clients as that
        type (docs/protocol.md). Never sent twice: when the connection drops
        before the reply, ``ConnectionFailed`` says so and the caller decides.

        Raises:
            ClientError: ``forbidden`` (not an admin), ``reserved_type``, ...
        """
        reply = await self._request({"type": "broadcast", "channel": channel, "message": message})
        delivered = reply.get("delivered")
        return delivered if isinstance(delivered, int) else 0

    async def _request(self, payload: Message) -> Message:
        ws = await self._wait_connected()
        request_id, future = self._pending.new()
        payload["id"] = request_id
        try:
            await ws.send(encode(payload, format_of(ws)))
            return await future
        except ConnectionClosed:
            raise ConnectionFailed(
                CONNECTION_LOST, "the connection was lost before the reply"
            ) from None
        finally:
            self._pending.discard(request_id)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a lost reply is reported above, once

    async def _wait_connected(self) -> ClientConnection:
        while True:
            self._check_usable()
            if self._state is CONNECTED and self._ws is not None:
                return self._ws
            await self._changed.wait()

    def _check_usable(self) -> None:
        if self._state is CLOSED:
            raise ClientClosed()
        if self._state is FAILED:
            raise self.error or ClientError(CONNECTION_FAILED, "the client gave up")
        if self._state is DISCONNECTED and self._runner is None:
            raise ClientError(NOT_CONNECTED, "call connect() first")

    # -- connecting -------------------------------------------------------------------

    async def _attempt(self) -> None:
        """One connection, retried once with a new token if the token is refused."""
        try:
            await self._open(await self._get_token())
        except AuthenticationFailed as exc:
            if self._provider is None:
                raise
            log.warning("token refused (%s); asking the token provider for another", exc)
            await self._open(await self._get_token())

    async def _get_token(self) -> str | None:
        if self._token is not None and not self._token_served:
            self._token_served = True
            return self._token
        if self._provider is None:
            return self._token
        try:
            token = self._provider()
            if inspect.isawaitable(token):
                token = await token
        except Exception as exc:
            raise ClientError(
                TOKEN_PROVIDER_FAILED, f"the token provider raised {exc!r}", temporary=True
            ) from exc
        if not isinstance(token, str) or not token:
            raise ClientError(TOKEN_PROVIDER_FAILED, "the token provider returned no token")
        return token

    async def _open(self, token: str | None) -> None:
        self._set_state(CONNECTING)
        ws = await open_connection(
            self.url,
            timeout=self._open_timeout,
            wire_format=self._wire_format,
            compression=self._compression,
        )
        try:
            if token is not None:
                self._note_session(await authenticate(ws, token, timeout=self._open_timeout))
            self._ws = ws
            self._generation += 1
            await self._send_subscriptions(ws)
        except BaseException as exc:
            self._ws = None
            self._forget_requests()
            await ws.close()
            if isinstance(exc, ConnectionClosed):
                raise ConnectionFailed(
                    CONNECTION_LOST, f"the connection was lost while subscribing: {exc}"
                ) from None
            raise
        self._set_state(CONNECTED)

    def _note_session(self, reply: Mapping[str, Any]) -> None:
        user, expires = reply.get("user"), reply.get("expires_at")
        self.user = user if isinstance(user, str) else None
        self.expires_at = expires if isinstance(expires, str) else None

    async def _send_subscriptions(self, ws: ClientConnection) -> None:
        """Send every subscription not yet sent on this connection, those added meanwhile too."""
        while True:
            due = self._subs.due(self._generation)
            if not due:
                return
            for sub in due:
                await self._send_subscribe(ws, sub)

    async def _send_subscribe(self, ws: ClientConnection, sub: Subscription) -> None:
        generation = self._generation
        request_id, future = self._pending.new()
        self._subs.sending(sub, generation, request_id)
        future.add_done_callback(functools.partial(self._subscribe_done, sub, generation))
        await ws.send(encode(sub.stream.subscribe_request(request_id), format_of(ws)))

    def _subscribe_done(
        self, sub: Subscription, generation: int, future: asyncio.Future[Message]
    ) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            sub._mark_ready()
            return
        if not isinstance(error, ClientError) or isinstance(error, ConnectionFailed | ClientClosed):
            return  # lost with the connection: the next one sends it again
        if not self._subs.holds(sub):
            return
        if error.code == RATE_LIMITED:
            delay = error.retry_after if error.retry_after is not None else 1.0
            self._spawn(self._subscribe_later(sub, generation, delay))
            return
        self._subs.remove(sub)
        log.warning("subscription to %s refused: %s", sub.channel, error)
        sub._refuse(error)

    async def _subscribe_later(self, sub: Subscription, generation: int, delay: float) -> None:
        await asyncio.sleep(delay)
        ws = self._ws
        if (
            generation == self._generation
            and self._state is CONNECTED
            and ws is not None
            and self._subs.holds(sub)
        ):
            with contextlib.suppress(ConnectionClosed):
                await self._send_subscribe(ws, sub)

    # -- the runner -----------------------------------------------------------------

    async def _run(self) -> None:
        # close() right after connect() may run before this task's first step.
        while not self._closing:
            ws = self._ws
            assert ws is not None
            code, reason = await self._serve(ws)
            if self._closing:
                return
            if self._ws is ws:
                self._ws = None
            self._forget_requests()
            self._set_state(DISCONNECTED)
            reaction = reaction_to_close(code, reason)
            log.info("connection to %s closed (%s %s): %s", self.url, code, reason, reaction.value)
            if reaction is Reaction.REAUTHENTICATE and self._provider is None:
                self._give_up(
                    AuthenticationFailed(
                        TOKEN_EXPIRED if code == 4001 else "invalid_token",
                        f"{reason or 'the token was refused'}; "
                        "the client has no token_provider to get a new token",
                    )
                )
                return
            failures = self._failures_at_connect + 1 if reaction is Reaction.BACK_OFF else 0
            if not await self._reconnect(failures, restarting=reaction is Reaction.RESTART):
                return

    async def _reconnect(self, failures: int, *, restarting: bool = False) -> bool:
        """Try until connected (True) or the token is refused for good (False).

        ``restarting``: the server said it restarts, so the delays stay below
        ``restart_backoff_max`` while it is down.
        """
        while True:
            delay = backoff_delay(
                failures,
                initial=self._backoff_initial,
                maximum=self._backoff_max,
                rng=self._rng,
                restart_maximum=self._restart_backoff_max if restarting else None,
            )
            log.info("reconnecting to %s in %.2fs (attempt %d)", self.url, delay, failures + 1)
            await asyncio.sleep(delay)
            try:
                await self._attempt()
            except AuthenticationFailed as exc:
                self._give_up(exc)
                return False
            except ClientError as exc:
                failures += 1
                self._set_state(DISCONNECTED)
                log.info("reconnection failed: %s", exc.message)
                continue
            self._failures_at_connect = failures
            return True

    async def _serve(self, ws: ClientConnection) -> tuple[int | None, str]:
        """Dispatch frames until the connection closes; returns its close code and reason."""
        wire_format = format_of(ws)
        try:
            async for raw in ws:
                self._receive(raw, wire_format)
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason or ""

    def _receive(self, raw: str | bytes, wire_format: WireFormat) -> None:
        try:
            message = decode(raw, wire_format)
        except UndecodableFrame as exc:
            log.warning("ignoring a frame: %s: %.80r", exc, raw)
            return
        if not isinstance(message, dict):
            return
        try:
            self._dispatch(message)
        except Exception:
            # A frame this client cannot make sense of must not stop the reader.
            log.exception("could not handle a %s frame", message.get("type"))

    def _dispatch(self, message: Message) -> None:
        if self._subs.route(message):
            return
        if message.get("id") is None:
            if message.get("type") == "error":
                self._unsolicited_error(message)
            return
        self._subs.reply(message)
        self._pending.resolve(message)

    def _unsolicited_error(self, message: Message) -> None:
        code = message.get("code")
        if code == TOKEN_EXPIRED:
            if self._provider is not None:
                self._spawn(self._refresh())
            else:
                log.warning("the token expired and there is no token_provider to refresh it")
        elif code == RATE_LIMITED:
            # Replies come in request order: this one answers the oldest request waiting.
            self._pending.fail_oldest(error_from_reply(message))
        else:
            log.warning("server error: %s: %s", code, message.get("message"))

    async def _refresh(self) -> None:
        try:
            token = await self._get_token()
            reply = await self._request({"type": "refresh", "token": token})
        except ClientError as exc:
            log.warning(
                "token refresh failed (%s); the client reconnects with a new token "
                "when the server closes the connection",
                exc,
            )
            return
        self._note_session(reply)
        log.info("token refreshed; it expires at %s", self.expires_at)

    # -- helpers ----------------------------------------------------------------

    def _forget_requests(self) -> None:
        self._pending.fail_all(
            ConnectionFailed(CONNECTION_LOST, "the connection was lost before the reply")
        )
        self._subs.connection_lost()

    def _give_up(self, error: ClientError) -> None:
        if self._closing:
            return
        self.error = error
        log.warning("giving up on %s: %s", self.url, error)
        self._set_state(FAILED)
        self._pending.fail_all(error)
        self._subs.end_all(error)

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state or (self._closing and state is not CLOSED):
            return  # after close(), a connection attempt still unwinding changes nothing
        self._state = state
        log.debug("connection is %s", state.name)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                log.exception("the on_state hook raised")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("client task failed", exc_info=task.exception())

    def __repr__(self) -> str:
        return f"<SlurmcastClient {self.url} {self._state.name}>"


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and wait for ``tasks``; whatever they raised was logged or is moot."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("client task failed", exc_info=task.exception())
