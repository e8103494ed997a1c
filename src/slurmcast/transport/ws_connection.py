"""One WebSocket client, lean: an asyncio protocol around websockets' sans-I/O core.

websockets' ``ServerProtocol`` parses the handshake and the frames and runs the
closing handshake; this object drives it from asyncio's callbacks, with no
task of its own: a frame is handled when it arrives, a deadline when the
server's shared timer fires, and a request that must wait for the broker or
the database gets a task only for as long as it waits (the client's next
requests queue behind it, so answers keep their order).

Outgoing messages (publications, replies, websockets' own PONG and close
frames) are queued and written in one call per loop iteration (``Flusher``).
What is queued plus what the transport could not send yet is this client's
backlog: past ``buffer_limit`` it is closed with 4008, alone.

Longer than ~400 lines on purpose: one connection's whole life (handshake, frames,
deadlines, writes, close) is one state machine; split, its invariants would span
modules.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from websockets.exceptions import InvalidOrigin
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from slurmcast.core.policy import Principal
from slurmcast.core.publication import Publication
from slurmcast.core.session import (
    Action,
    AddSubscription,
    Authenticated,
    CloseConnection,
    MarkNotificationsRead,
    PublishBroadcast,
    RemoveSubscription,
    SendHistory,
    SendPublication,
    SendReply,
    Session,
    SessionState,
)
from slurmcast.errors import CloseCode, ErrorCode, SlurmcastError
from slurmcast.logs import context
from slurmcast.transport.encoding import (
    MSGPACK_SUBPROTOCOL,
    PLAIN_JSON,
    Encoding,
    WireFormat,
    decode_msgpack_request,
    encoding_for,
)
from slurmcast.transport.stats import AUTH_ERROR_CODES, AUTH_TIMEOUT

if TYPE_CHECKING:
    from slurmcast.transport.ws_server import WebSocketServer

log = logging.getLogger("slurmcast.ws")

_ids = itertools.count(1)

#: The payload of keepalive pings (any bytes do: the pong echoes them).
_PING = b"slurmcast"


#: Actions that wait on the broker or the store (the rest are carried out at once).
_Awaited = AddSubscription | SendHistory | MarkNotificationsRead | PublishBroadcast
_AWAITED = (AddSubscription, SendHistory, MarkNotificationsRead, PublishBroadcast)


@dataclass(frozen=True, slots=True)
class _Text:
    """A whole message from the client (fragments joined)."""

    data: str | bytes


class WsConnection(asyncio.Protocol):
    """One client: handshake, frames, session actions, and its queue of frames to write."""

    __slots__ = (
        "_buffered",
        "_closing",
        "_eof",
        "_flusher",
        "_fragment_binary",
        "_fragments",
        "_inbox",
        "_limit",
        "_pending",
        "_pending_bytes",
        "_ping_sent_at",
        "_task",
        "_writable",
        "address",
        "deadline_tokens",
        "encoding",
        "id",
        "latency",
        "opened_at",
        "principal",
        "protocol",
        "remote",
        "server",
        "session",
        "transport",
    )

    def __init__(self, server: WebSocketServer) -> None:
        self.server = server
        self.protocol = server.new_protocol()
        self.transport: asyncio.Transport | None = None
        self.id = next(_ids)
        self.address = self.remote = "unknown"
        self.principal: Principal | None = None
        self.session: Session | None = None
        self.encoding: Encoding = PLAIN_JSON
        self.deadline_tokens: dict[str, int] = {}
        self.opened_at = 0.0
        # Frames queued for the end of this loop iteration, and their size.
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        # What the transport still held after the last flush (the kernel was full).
        self._buffered = 0
        self._eof = False
        # Open and not closing: publications may be queued (checked per delivery).
        self._writable = False
        self._flusher = server.flusher
        self._limit = server.settings.client_buffer_limit
        self._fragments: list[bytes] | None = None
        self._fragment_binary = False
        self._inbox: collections.deque[_Text] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ping_sent_at: float | None = None
        #: Seconds between the last keepalive ping and its pong (0: none yet).
        self.latency = 0.0
        self._closing = False

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport) or hasattr(transport, "write")
        self.transport = transport  # type: ignore[assignment]
        try:
            self.remote = format_address(transport.get_extra_info("peername"))
        except (OSError, ValueError):  # uvloop, a socket already closed
            pass
        else:
            self.address = self.remote.rsplit(":", 1)[0]
        self.server.accepted(self)

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        self._after_protocol()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._after_protocol()
        return None  # the WebSocket closing handshake is done (or failed): close

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent; the protocol is CLOSED after it
        self._closing = True
        self._writable = False
        self._pending.clear()
        self._pending_bytes = 0
        self.server.deadlines.clear_all(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        try:
            if self.session is not None:
                channels = self.server.node.disconnect(self)
                log.info(
                    "client %d disconnected from %s%s (code %s, was subscribed to %s)",
                    self.id,
                    self.remote,
                    self._as_user(),
                    self.protocol.close_code,
                    ", ".join(channels) or "nothing",
                    extra=self._context(code=self.protocol.close_code),
                )
        finally:
            self.server.released(self)

    # -- the protocol's events ------------------------------------------------

    def _after_protocol(self) -> None:
        events = self.protocol.events_received()
        # The protocol's own answers (a close echoed, a PONG) go first, as
        # websockets sends them.
        self._queue_protocol_writes()
        for event in events:
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._frame(event)
        if self._writable and self.protocol.state is not State.OPEN:
            self._writable = False  # the client started the closing handshake
        if self.protocol.close_expected() and "close" not in self.deadline_tokens:
            # Both sides are done: the peer has close_timeout to hang up.
            self.server.deadlines.set(
                self, "close", self._now() + self.server.settings.close_timeout
            )

    def _handshake(self, request: Request) -> None:
        server = self.server
        refusal: Response | None = server.admission(self, request)
        if refusal is None:
            response = self.protocol.accept(request)
            if "Server" in response.headers:
                del response.headers["Server"]
        else:
            response = refusal
        self.protocol.send_response(response)
        self._queue_protocol_writes()
        if self.protocol.state is not State.OPEN:
            if refusal is None:
                failed = self.protocol.handshake_exc
                reason = "origin" if isinstance(failed, InvalidOrigin) else "invalid"
                server.stats.handshake_failures[reason] += 1
            if self.protocol.handshake_exc is not None:
                log.info(
                    "refused %s at the handshake: %s",
                    self.remote,
                    self.protocol.handshake_exc,
                    extra=context(remote=self.remote),
                )
            return
        self.server.deadlines.clear(self, "handshake")
        self._open()

    def _open(self) -> None:
        server = self.server
        deflate_bits = None
        for extension in self.protocol.extensions:
            # Negotiated with server_no_context_takeover (see WebSocketServer):
            # our messages depend only on their payload and this window size.
            bits = getattr(extension, "local_max_window_bits", None)
            deflate_bits = bits or 15
        fmt = WireFormat.MSGPACK if self.protocol.subprotocol == MSGPACK_SUBPROTOCOL else None
        self.encoding = encoding_for(fmt or WireFormat.JSON, deflate_bits)
        self.opened_at = self._now()
        self._writable = True
        self.session = Session(
            server.policy, server.settings.limits, server.verify, time.time(), self.principal
        )
        server.node.hub.connect(self)
        log.info(
            "client %d connected from %s%s%s",
            self.id,
            self.remote,
            self._as_user(),
            _describe(self.encoding),
            extra=self._context(),
        )
        if self.session.state is SessionState.OPEN:
            # No token to wait for (auth is off, or it came with the handshake).
            self._perform([Authenticated(self.session.principal)])
        self._schedule_session()
        if server.settings.ping_interval > 0:
            server.deadlines.set(self, "ping", self.opened_at + server.settings.ping_interval)

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._message(bytes(frame.data), binary=opcode is Opcode.BINARY)
            else:
                self._fragments = [bytes(frame.data)]
                self._fragment_binary = opcode is Opcode.BINARY
        elif opcode is Opcode.CONT:
            if self._fragments is None:
                return
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                joined, self._fragments = b"".join(self._fragments), None
                self._message(joined, binary=self._fragment_binary)
        elif opcode is Opcode.PING:
            self._on_ping()
        elif opcode is Opcode.PONG and self._ping_sent_at is not None:
            now = self._now()
            self.latency = now - self._ping_sent_at
            self._ping_sent_at = None
            self.server.deadlines.clear(self, "pong")
            self.server.deadlines.set(self, "ping", now + self.server.settings.ping_interval)

    def _message(self, payload: bytes, *, binary: bool) -> None:
        if self._closing or self.session is None:
            return
        data: str | bytes = payload
        if not binary:
            try:
                data = payload.decode()
            except UnicodeDecodeError as exc:
                # websockets' parser leaves text validation to the application.
                self._fail(CloseCode.INVALID_DATA, f"invalid UTF-8 at position {exc.start}")
                return
        if self._task is not None:
            # A request is waiting on the broker or the database: answers keep their order.
            assert self._inbox is not None
            self._inbox.append(_Text(data))
            return
        self._perform(self._receive(data))

    def _receive(self, data: str | bytes) -> list[Action]:
        assert self.session is not None
        now = time.time()
        if isinstance(data, bytes) and self.encoding.format is WireFormat.MSGPACK:
            try:
                data = decode_msgpack_request(data).decode()
            except ValueError as exc:
                return self.session.receive_undecodable(str(exc), now)
        authenticating = self.session.state is SessionState.AUTHENTICATING
        actions = self.session.receive(data, now)
        for action in actions:
            if isinstance(action, SendReply) and action.reply.get("type") == "error":
                code = action.reply.get("code")
                if code in AUTH_ERROR_CODES:
                    stage = "auth" if authenticating else "refresh"
                    self.server.stats.auth_failures[stage, code] += 1
        self._schedule_session()
        return actions

    def _on_ping(self) -> None:
        """A PING came in and websockets queued its PONG: it costs a message."""
        if self._closing or self.session is None:
            return
        for action in self.session.receive_control(time.time()):
            if isinstance(action, CloseConnection):
                self._close(action.code, action.reason)
                return

    # -- deadlines (the server's shared timer) --------------------------------

    def on_deadline(self, kind: str, now: float) -> None:
        if kind == "handshake":
            if self.protocol.state is State.CONNECTING:
                self.server.stats.handshake_failures["timeout"] += 1
                log.info("client %s did not finish its handshake in time", self.remote)
                self.abort()
        elif kind == "close" or kind == "grace":
            self.abort()
        elif kind == "ping":
            self._ping(now)
        elif kind == "pong" and not self._closing:
            log.info("client %d (%s) did not answer its keepalive ping", self.id, self.remote)
            self._close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        elif kind == "session" and self.session is not None and not self._closing:
            authenticating = self.session.state is SessionState.AUTHENTICATING
            actions = self.session.on_timer(time.time())
            if authenticating and any(isinstance(a, CloseConnection) for a in actions):
                self.server.stats.auth_failures["auth", AUTH_TIMEOUT] += 1
            self._perform(actions)
            self._schedule_session()

    def _schedule_session(self) -> None:
        if self.session is None:
            return
        deadline = self.session.deadline
        if deadline is None:
            self.server.deadlines.clear(self, "session")
        else:
            delay = max(0.0, deadline - time.time())
            self.server.deadlines.set(self, "session", self._now() + delay)

    def _ping(self, now: float) -> None:
        if self._closing or self.protocol.state is not State.OPEN:
            return
        self.protocol.send_ping(_PING)
        self._ping_sent_at = now
        self._queue_protocol_writes()
        self.server.deadlines.set(self, "pong", now + self.server.settings.ping_timeout)

    # -- what the hub calls ---------------------------------------------------

    def deliver(self, publication: Publication, frame: bytes) -> bool:
        # The hub's inner loop: one call per publication per client, so kept flat.
        if publication.owner is not None:
            session = self.session
            if session is None or not session.may_see(publication):
                return False
        return self.write_frame(frame)

    def write_frame(self, frame: bytes) -> bool:
        """Queue a whole frame for the end of this loop iteration; False if it cannot go."""
        if not self._writable:
            return False
        if not self._pending:
            self._flusher.mark(self)
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if self._pending_bytes + self._buffered > self._limit:
            self._close_slow()
        return True

    def stream_lost(self, channel: str) -> None:
        if self._closing:
            return
        log.warning(
            "client %d (%s%s): the %s stream was lost under this instance; closing with %d "
            "so that the client reconnects and recovers",
            self.id,
            self.remote,
            self._as_user(),
            channel,
            CloseCode.STREAM_LOST,
        )
        self._fail(CloseCode.STREAM_LOST, f"stream of {channel[:64]} lost: reconnect and recover")

    # -- writing -------------------------------------------------------------

    def _queue_protocol_writes(self) -> None:
        """Queue what websockets wants sent (handshake answer, PONG, close, end of stream)."""
        for data in self.protocol.data_to_send():
            if not self._pending and not self._eof:
                self._flusher.mark(self)
            if data:
                self._pending.append(data)
                self._pending_bytes += len(data)
            else:
                self._eof = True  # half-close once what precedes is written
        # websockets' PONGs count: a client must not get them piled up unread.
        if not self._closing and self._pending_bytes + self._buffered > self._limit:
            self._close_slow()

    def flush(self) -> None:
        """Write everything queued, in one call (the ``Flusher`` calls this)."""
        pending, self._pending = self._pending, []
        size, self._pending_bytes = self._pending_bytes, 0
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if len(pending) == 1:
            transport.write(pending[0])
        elif pending:
            transport.write(b"".join(pending))
        self._flusher.bytes_written += size
        if self._eof:
            self._eof = False
            if transport.can_write_eof():
                try:
                    transport.write_eof()
                except (OSError, RuntimeError):
                    transport.close()
            else:
                transport.close()
            return
        self._buffered = buffered = transport.get_write_buffer_size()
        if buffered > self._limit and not self._closing:
            self._close_slow()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- carrying out the session's actions -----------------------------------

    def _perform(self, actions: list[Action]) -> None:
        """Carry out actions in order; from the first that must wait on, a task does."""
        for index, action in enumerate(actions):
            if self._closing:
                return
            if isinstance(action, _AWAITED):
                self._inbox = collections.deque()
                self._task = self.server.loop.create_task(self._continue(actions[index:]))
                return
            self._perform_now(action)

    def _perform_now(self, action: Action) -> int:
        """Carry out an action that needs no waiting; returns the bytes it wrote."""
        assert self.session is not None
        match action:
            case SendReply(reply):
                if reply.get("type") == "error":
                    self.server.stats.error_replies[str(reply.get("code"))] += 1
                    log.info(
                        "client %d (%s%s) request refused: %s: %s",
                        self.id,
                        self.remote,
                        self._as_user(),
                        reply["code"],
                        reply["message"],
                        extra=self._context(code=reply["code"]),
                    )
                return self.send_reply(reply)
            case SendPublication(publication):
                frame, size = self.encoding.publication_frame(publication)
                return size if self.write_frame(frame) else 0
            case RemoveSubscription(channel):
                self.server.node.unsubscribe(self, channel)
            case Authenticated(principal):
                if principal.user is None:
                    self.server.node.hub.admit(self, None)
                elif not self._admit(principal.user):
                    self.server.stats.refusals["per_user"] += 1
                    self._close(
                        CloseCode.TOO_MANY_CONNECTIONS,
                        f"too many connections for user {principal.user}",
                    )
            case CloseConnection(code, reason):
                self._close(code, reason)
        return 0

    async def _continue(self, actions: list[Action]) -> None:
        """Carry out actions that wait, and the client's requests that came meanwhile."""
        assert self.session is not None and self._inbox is not None
        queue = collections.deque(actions)
        try:
            while not self._closing:
                if not queue:
                    if not self._inbox:
                        return
                    queue.extend(self._receive(self._inbox.popleft().data))
                    continue
                action = queue.popleft()
                if not isinstance(action, _AWAITED):
                    self._perform_now(action)
                    continue
                outcome = await self._outcome(action)
                # From here to the next await nothing else runs: a subscription's
                # reply, snapshot and replay go out before any live publication.
                sent = 0
                for step in outcome:
                    if self._closing:
                        return
                    sent += self._perform_now(step)
                self.session.charge_reply(sent, time.time())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "client %d (%s): a request failed",
                self.id,
                self.remote,
                extra=self._context(code="internal"),
            )
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._task = None
            self._inbox = None

    async def _outcome(self, action: _Awaited) -> list[Action]:
        """Ask the node or the store; the session turns the answer into replies."""
        assert self.session is not None
        session, node = self.session, self.server.node
        try:
            match action:
                case AddSubscription(subscription, _, since, snapshot):
                    start = await node.subscribe(self, subscription, since=since, snapshot=snapshot)
                    return session.subscription_started(action, start)
                case SendHistory(request, read_limit):
                    since = request.since
                    history = await node.history(
                        request.channel,
                        since=since.offset if since is not None else None,
                        limit=read_limit,
                    )
                    return session.history_found(action, history)
                case MarkNotificationsRead(ids, user):
                    notifications = self.server.notifications
                    if notifications is None:
                        return session.request_failed(
                            action,
                            ErrorCode.STORAGE_UNAVAILABLE,
                            "notifications are not stored on this server",
                        )
                    return session.marked_read(
                        action, await notifications.mark_read(list(ids), user)
                    )
                case PublishBroadcast(channel, event_type, data):
                    delivered = await node.publish(channel, event_type, data, datetime.now(UTC))
                    log.info(
                        "client %d (%s%s) broadcast on %s, delivered to %d",
                        self.id,
                        self.remote,
                        self._as_user(),
                        channel,
                        delivered,
                        extra=self._context(channel=channel),
                    )
                    return session.broadcast_done(action, delivered)
        except SlurmcastError as exc:
            return session.request_failed(action, exc.code, exc.message)
        raise AssertionError(f"unhandled action {action!r}")  # pragma: no cover

    def send_reply(self, reply: dict[str, Any]) -> int:
        """Write one reply; returns its size in bytes (0 when it could not be written).

        The size is the message's before compression: a reply that compresses
        well cost as much to build and deflate as one that does not.
        """
        frame, size = self.encoding.reply(reply)
        return size if self.write_frame(frame) else 0

    def _admit(self, user: str) -> bool:
        """Count this connection for ``user``, unless the user is at the limit."""
        hub = self.server.node.hub
        if hub.user_of(self) == user:
            # A refresh: this connection is one of the user's already.
            hub.admit(self, user)
            return True
        limit = self.server.settings.max_connections_per_user
        if hub.connections_of(user) >= limit:
            log.warning(
                "client %d (%s) refused: user %s already has %d connections",
                self.id,
                self.remote,
                user,
                limit,
                extra=self._context(user=user, code="too_many_connections"),
            )
            return False
        hub.admit(self, user)
        log.info(
            "client %d (%s) authenticated as %s",
            self.id,
            self.remote,
            user,
            extra=self._context(user=user),
        )
        return True

    # -- closing ---------------------------------------------------------------

    def _close(self, code: CloseCode, reason: str) -> None:
        """Start the closing handshake (the client's answer, or the close timeout, ends it)."""
        log.info(
            "client %d (%s%s) closed by the server: %d %s",
            self.id,
            self.remote,
            self._as_user(),
            code,
            reason,
        )
        self._start_close(code, reason)

    def close_going_away(self) -> None:
        """The server is shutting down."""
        self._start_close(CloseCode.GOING_AWAY, "server shutting down")

    def _start_close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self.server.stats.closes[code] += 1
        self._closing = True
        self._writable = False
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._queue_protocol_writes()
        elif self.protocol.state is State.CONNECTING:
            self.abort()
            return
        self.server.deadlines.set(self, "close", self._now() + self.server.settings.close_timeout)

    def _close_slow(self) -> None:
        log.warning(
            "client %d (%s%s) is a slow consumer: %d bytes queued (limit %d); closing it with %d",
            self.id,
            self.remote,
            self._as_user(),
            self._pending_bytes + self._buffered,
            self._limit,
            CloseCode.SLOW_CONSUMER,
        )
        self._fail(CloseCode.SLOW_CONSUMER, "slow consumer: too much unread data")

    def _fail(self, code: CloseCode, reason: str) -> None:
        # The close frame is queued behind what the client has not read; if it
        # does not read it within the grace period the TCP connection is cut.
        # Either way nobody else waits: nothing here is awaited.
        if self._closing and "grace" in self.deadline_tokens:
            return
        if not self._closing:
            self.server.stats.closes[code] += 1
        self._closing = True
        self._writable = False
        if self.protocol.state is State.OPEN:
            self.protocol.fail(code, reason)
            self._queue_protocol_writes()
        self.server.deadlines.set(
            self, "grace", self._now() + self.server.settings.slow_client_grace
        )

    # -- helpers ---------------------------------------------------------------

    def _now(self) -> float:
        return self.server.loop.time()

    def _user(self) -> str | None:
        user = self.session.user if self.session is not None else None
        if user is None and self.principal is not None:
            user = self.principal.user
        return user

    def _as_user(self) -> str:
        user = self._user()
        return f", user {user}" if user is not None else ""

    def _context(self, **fields: Any) -> dict[str, Any]:
        """The log context of this connection (``--log-format json`` fields)."""
        fields.setdefault("user", self._user())
        return context(client=self.id, remote=self.remote, **fields)


def _describe(encoding: Encoding) -> str:
    parts = []
    if encoding.format is WireFormat.MSGPACK:
        parts.append("msgpack")
    if encoding.deflate_bits is not None:
        parts.append("deflate")
    return f" ({', '.join(parts)})" if parts else ""


def format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
