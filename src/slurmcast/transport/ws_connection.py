"""One WebSocket client: feeds its frames to a Session, carries out the actions.

Outgoing messages (replies and publications alike) are written straight to
the connection's transport as prepared frames, never awaited. The transport's
write buffer is this client's bounded queue: when it grows past the limit the
client is not keeping up, and it alone is closed with 4008. The PONGs
websockets writes by itself count too: they go into the same buffer.

What a client asks for is paid for by the size of the answer (history,
snapshots, replays: ``Session.charge_reply``), and every PING frame costs a
message, so no request is cheap to send and expensive to serve.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State

from slurmcast.core import protocol
from slurmcast.core.filters import Filter, tags_for
from slurmcast.core.history import recover
from slurmcast.core.policy import AccessPolicy, Principal
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
    SendReply,
    Session,
    SessionState,
)
from slurmcast.core.views import Snapshot
from slurmcast.errors import CloseCode, ErrorCode, SlurmcastError
from slurmcast.node import Node
from slurmcast.transport.frames import text_frame

log = logging.getLogger("slurmcast.ws")

_ids = itertools.count(1)

#: Snapshot items per ``snapshot`` message: keeps frames well under clients' size limits.
SNAPSHOT_CHUNK = 500


class GatewayConnection(ServerConnection):
    """A websockets server connection that carries what its handshake decided.

    Attributes:
        principal: the identity its handshake token proved (None: none was
            given, or authentication is off). Kept here, not in a table of
            the server's, so a refused or abandoned handshake leaves nothing.
        address: the client's IP address, counted toward its limits from
            accept to close.
        remote: ``address:port``, for the log.
        on_ping: called for every PING frame received, after websockets has
            written its PONG: a PING costs the client like a message does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.principal: Principal | None = None
        self.address = self.remote = "unknown"
        self.on_ping: Callable[[], None] | None = None

    def note_peer(self) -> None:
        """Read the peer's address while the socket is sure to be there (at accept)."""
        try:
            self.remote = format_address(self.transport.get_extra_info("peername"))
        except (OSError, ValueError):  # uvloop, a socket already closed
            return
        self.address = self.remote.rsplit(":", 1)[0]

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        if self.on_ping is not None and isinstance(event, Frame) and event.opcode is Opcode.PING:
            self.on_ping()


class NotificationReader(Protocol):
    """What a connection needs of the notification store."""

    async def mark_read(self, ids: list[str], user: str | None) -> list[str]: ...


class ClientConnection:
    """Adapter between a websockets connection, its Session and the Hub."""

    __slots__ = (
        "_closing",
        "buffer_limit",
        "filters",
        "hub",
        "id",
        "max_per_user",
        "node",
        "notifications",
        "policy",
        "remote",
        "session",
        "slow_grace",
        "ws",
    )

    def __init__(
        self,
        ws: ServerConnection,
        node: Node,
        session: Session,
        *,
        buffer_limit: int,
        slow_grace: float,
        max_per_user: int,
        notifications: NotificationReader | None = None,
    ) -> None:
        self.ws = ws
        self.node = node
        self.hub = node.hub
        self.notifications = notifications
        self.filters: dict[str, Filter] = {}
        self.session = session
        self.policy: AccessPolicy = session.policy
        self.buffer_limit = buffer_limit
        self.slow_grace = slow_grace
        self.max_per_user = max_per_user
        self.id = next(_ids)
        self.remote = ws.remote if isinstance(ws, GatewayConnection) else _remote(ws)
        self._closing = False

    # -- what the hub calls ----------------------------------------------------

    def write_frame(self, frame: bytes) -> bool:
        """Write a prepared frame without waiting; False if the client cannot take it."""
        if self._closing or self.ws.protocol.state is not State.OPEN:
            return False
        transport = self.ws.transport
        if transport.is_closing():
            return False
        transport.write(frame)
        self._check_buffer()
        return True

    def on_ping(self) -> None:
        """A PING frame came in and websockets wrote its PONG (see GatewayConnection)."""
        if self._closing:
            return
        for action in self.session.receive_control(time.time()):
            if isinstance(action, CloseConnection):
                log.info(
                    "client %d (%s%s) closed by the server: %d %s",
                    self.id,
                    self.remote,
                    self._as_user(),
                    action.code,
                    action.reason,
                )
                # Called from the protocol's data callback: nothing can be
                # awaited here, so the close is the non-blocking one.
                self._fail(action.code, action.reason)
                return
        self._check_buffer()

    def _check_buffer(self) -> None:
        if not self._closing and self.ws.transport.get_write_buffer_size() > self.buffer_limit:
            self._close_slow()

    def accepts(self, publication: Publication) -> bool:
        """Visibility first (a user's own jobs), then the subscription's filter."""
        if publication.owner is not None and not self.policy.may_see(
            self.session.principal, publication.channel, publication.owner
        ):
            return False
        wanted = self.filters.get(publication.channel)
        return wanted is None or wanted.matches(publication.tags)

    def deliver(self, publication: Publication, frame: bytes) -> bool:
        return self.accepts(publication) and self.write_frame(frame)

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

    # -- the connection's life ---------------------------------------------------

    def send_reply(self, reply: dict[str, Any]) -> int:
        """Write one reply; returns its size in bytes (0 when it could not be written)."""
        frame = text_frame(orjson.dumps(reply))
        return len(frame) if self.write_frame(frame) else 0

    async def serve(self) -> None:
        """Read frames until the client goes away; always leaves the hub clean."""
        self.hub.connect(self)
        log.info("client %d connected from %s%s", self.id, self.remote, self._as_user())
        try:
            if self.session.state is SessionState.OPEN:
                # No token to wait for (auth is off, or it came with the handshake).
                await self._perform([Authenticated(self.session.principal)])
            while not self._closing:
                deadline = self.session.deadline
                try:
                    if deadline is None:
                        frame = await self.ws.recv()
                    else:
                        # recv() may be cancelled safely: no data is lost.
                        async with asyncio.timeout(max(0.0, deadline - time.time())):
                            frame = await self.ws.recv()
                except TimeoutError:
                    actions = self.session.on_timer(time.time())
                else:
                    actions = self.session.receive(frame, time.time())
                await self._perform(actions)
        except ConnectionClosed:
            pass
        finally:
            channels = self.node.disconnect(self)
            log.info(
                "client %d disconnected from %s%s (code %s, was subscribed to %s)",
                self.id,
                self.remote,
                self._as_user(),
                self.ws.close_code,
                ", ".join(channels) or "nothing",
            )

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case SendReply(reply):
                    if reply.get("type") == "error":
                        log.info(
                            "client %d (%s%s) request refused: %s: %s",
                            self.id,
                            self.remote,
                            self._as_user(),
                            reply["code"],
                            reply["message"],
                        )
                    self.send_reply(reply)
                case AddSubscription():
                    await self._subscribe(action)
                case RemoveSubscription(channel):
                    self.filters.pop(channel, None)
                    self.node.unsubscribe(self, channel)
                case SendHistory(request):
                    await self._send_history(request)
                case MarkNotificationsRead(ids, user, request_id):
                    await self._mark_read(ids, user, request_id)
                case Authenticated(principal):
                    if principal.user is None:
                        self.hub.admit(self, None)
                        continue
                    if not self._admit(principal.user):
                        await self._close(
                            CloseCode.TOO_MANY_CONNECTIONS,
                            f"too many connections for user {principal.user}",
                        )
                        return
                case PublishBroadcast(channel, message, request_id):
                    try:
                        delivered = await self.node.publish(
                            channel, "broadcast", dict(message), datetime.now(UTC)
                        )
                    except SlurmcastError as exc:
                        self.send_reply(protocol.error(exc.code, exc.message, request_id))
                        continue
                    log.info(
                        "client %d (%s%s) broadcast on %s, delivered to %d",
                        self.id,
                        self.remote,
                        self._as_user(),
                        channel,
                        delivered,
                    )
                    published: dict[str, Any] = {
                        "type": "published",
                        "channel": channel,
                        "delivered": delivered,
                    }
                    if request_id is not None:
                        published["id"] = request_id
                    self.send_reply(published)
                case CloseConnection(code, reason):
                    log.info(
                        "client %d (%s%s) closed by the server: %d %s",
                        self.id,
                        self.remote,
                        self._as_user(),
                        code,
                        reason,
                    )
                    await self._close(code, reason)
                    return

    async def _subscribe(self, action: AddSubscription) -> None:
        channel = action.channel
        if action.filter is not None and action.filter.conditions:
            self.filters[channel] = action.filter
        else:
            self.filters.pop(channel, None)
        try:
            start = await self.node.subscribe(
                self, channel, since=action.since, snapshot=action.snapshot
            )
        except SlurmcastError as exc:
            self.session.forget(channel)
            self.filters.pop(channel, None)
            self.send_reply(protocol.error(exc.code, exc.message, action.request_id))
            return
        # From here to the end nothing is awaited: the reply, the snapshot and
        # the replayed publications go out before any live publication.
        sent = self.send_reply(
            protocol.subscribed(
                channel, action.request_id, position=start.position, recovered=start.recovered
            )
        )
        if start.snapshot is not None:
            sent += self._send_snapshot(start.snapshot, action.filter)
        for publication in start.publications:
            if self.accepts(publication):
                frame = text_frame(publication.wire())
                if self.write_frame(frame):
                    sent += len(frame)
        self.session.charge_reply(sent, time.time())

    def _send_snapshot(self, snapshot: Snapshot, wanted: Filter | None) -> int:
        """Send a snapshot in parts; returns the bytes written."""
        principal = self.session.principal
        items = [
            item
            for item in snapshot.items
            if self.policy.may_see(principal, snapshot.channel, _owner(item))
            and (wanted is None or wanted.matches(tags_for(snapshot.channel, item)))
        ]
        chunks = [items[i : i + SNAPSHOT_CHUNK] for i in range(0, len(items), SNAPSHOT_CHUNK)]
        sent = 0
        for number, chunk in enumerate(chunks or [[]], start=1):
            sent += self.send_reply(
                {
                    "type": "snapshot",
                    "channel": snapshot.channel,
                    "position": snapshot.position.to_dict(),
                    "data": chunk,
                    "part": number,
                    "parts": max(len(chunks), 1),
                }
            )
        return sent

    async def _send_history(self, request: protocol.History) -> None:
        since = request.since
        try:
            history = await self.node.history(
                request.channel,
                since=since.offset if since is not None else None,
                limit=request.limit,
            )
        except SlurmcastError as exc:
            self.send_reply(protocol.error(exc.code, exc.message, request.request_id))
            return
        shown = [
            orjson.Fragment(p.wire())
            for p in history.publications
            if self.accepts(p) and (request.filter is None or request.filter.matches(p.tags))
        ]
        reply: dict[str, Any] = {
            "type": "history",
            "channel": request.channel,
            "position": history.top.to_dict(),
            "publications": shown,
        }
        if since is not None:
            # Whether these are all the messages after `since` (same epoch, still stored).
            reply["complete"] = recover(since, history, ()).recovered
        if request.request_id is not None:
            reply["id"] = request.request_id
        self.session.charge_reply(self.send_reply(reply), time.time())

    async def _mark_read(
        self, ids: tuple[str, ...], user: str | None, request_id: protocol.RequestId | None
    ) -> None:
        if self.notifications is None:
            self.send_reply(
                protocol.error(
                    ErrorCode.STORAGE_UNAVAILABLE,
                    "notifications are not stored on this server",
                    request_id,
                )
            )
            return
        try:
            marked = await self.notifications.mark_read(list(ids), user)
        except SlurmcastError as exc:
            self.send_reply(protocol.error(exc.code, exc.message, request_id))
            return
        reply: dict[str, Any] = {"type": "marked_read", "ids": marked}
        if request_id is not None:
            reply["id"] = request_id
        self.send_reply(reply)

    def _admit(self, user: str) -> bool:
        """Count this connection for ``user``, unless the user is at the limit."""
        if self.hub.user_of(self) == user:
            # A refresh: this connection is one of the user's already.
            self.hub.admit(self, user)
            return True
        if self.hub.connections_of(user) >= self.max_per_user:
            log.warning(
                "client %d (%s) refused: user %s already has %d connections",
                self.id,
                self.remote,
                user,
                self.max_per_user,
            )
            return False
        self.hub.admit(self, user)
        log.info("client %d (%s) authenticated as %s", self.id, self.remote, user)
        return True

    async def _close(self, code: CloseCode, reason: str) -> None:
        self._closing = True
        await self.ws.close(code, reason)

    def _as_user(self) -> str:
        user = self.session.user
        return f", user {user}" if user is not None else ""

    def _close_slow(self) -> None:
        self._closing = True
        transport = self.ws.transport
        log.warning(
            "client %d (%s%s) is a slow consumer: %d bytes queued (limit %d); closing it with %d",
            self.id,
            self.remote,
            self._as_user(),
            transport.get_write_buffer_size(),
            self.buffer_limit,
            CloseCode.SLOW_CONSUMER,
        )
        self._fail(CloseCode.SLOW_CONSUMER, "slow consumer: too much unread data")

    def _fail(self, code: CloseCode, reason: str) -> None:
        # The close frame is queued behind what the client has not read; if it
        # does not read it within the grace period the TCP connection is cut.
        # Either way nobody else waits: nothing here is awaited.
        self._closing = True
        self.ws.protocol.fail(code, reason)
        self.ws.send_data()
        asyncio.get_running_loop().call_later(self.slow_grace, self.ws.transport.abort)


def _owner(item: dict[str, Any]) -> str | None:
    user = item.get("user")
    return user if isinstance(user, str) else None


def _remote(ws: ServerConnection) -> str:
    try:
        return format_address(ws.remote_address)
    except (OSError, ValueError):  # uvloop, once the socket is closed
        return "unknown"


def format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
