"""One WebSocket client: feeds its frames to a Session, carries out the actions.

Outgoing messages (replies and publications alike) are written straight to
the connection's transport as prepared frames, never awaited. The transport's
write buffer is this client's bounded queue: when it grows past the limit the
client is not keeping up, and it alone is closed with 4008.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from slurmcast.core.policy import AccessPolicy
from slurmcast.core.publication import Publication
from slurmcast.core.session import (
    Action,
    AddSubscription,
    Authenticated,
    CloseConnection,
    PublishBroadcast,
    RemoveSubscription,
    SendReply,
    Session,
)
from slurmcast.errors import CloseCode
from slurmcast.hub import Hub
from slurmcast.transport.frames import text_frame

log = logging.getLogger("slurmcast.ws")

_ids = itertools.count(1)

#: Publishes an admin's broadcast: (channel, message, now) -> delivered count.
Publisher = Callable[[str, Mapping[str, Any], datetime], Awaitable[int]]


class ClientConnection:
    """Adapter between a websockets connection, its Session and the Hub."""

    __slots__ = (
        "_closing",
        "buffer_limit",
        "hub",
        "id",
        "max_per_user",
        "policy",
        "publish",
        "remote",
        "session",
        "slow_grace",
        "ws",
    )

    def __init__(
        self,
        ws: ServerConnection,
        hub: Hub,
        session: Session,
        *,
        buffer_limit: int,
        slow_grace: float,
        publish: Publisher,
        max_per_user: int,
    ) -> None:
        self.ws = ws
        self.hub = hub
        self.session = session
        self.policy: AccessPolicy = session.policy
        self.buffer_limit = buffer_limit
        self.slow_grace = slow_grace
        self.publish = publish
        self.max_per_user = max_per_user
        self.id = next(_ids)
        self.remote = format_address(ws.remote_address)
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
        if transport.get_write_buffer_size() > self.buffer_limit:
            self._close_slow()
        return True

    def may_see(self, publication: Publication) -> bool:
        return self.policy.may_see(self.session.principal, publication.channel, publication.owner)

    # -- the connection's life ---------------------------------------------------

    def send_reply(self, reply: dict[str, Any]) -> None:
        self.write_frame(text_frame(orjson.dumps(reply)))

    async def serve(self) -> None:
        """Read frames until the client goes away; always leaves the hub clean."""
        self.hub.connect(self)
        log.info("client %d connected from %s%s", self.id, self.remote, self._as_user())
        try:
            if self.session.user is not None:
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
            channels = self.hub.disconnect(self)
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
                case AddSubscription(channel):
                    self.hub.subscribe(self, channel)
                case RemoveSubscription(channel):
                    self.hub.unsubscribe(self, channel)
                case Authenticated(principal):
                    if principal.user is None:
                        continue
                    if not self._admit(principal.user):
                        await self._close(
                            CloseCode.TOO_MANY_CONNECTIONS,
                            f"too many connections for user {principal.user}",
                        )
                        return
                case PublishBroadcast(channel, message, request_id):
                    delivered = await self.publish(channel, message, datetime.now(UTC))
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

    def _admit(self, user: str) -> bool:
        """Count this connection for ``user``, unless the user is at the limit."""
        if self.hub.connections_of(user) >= self.max_per_user:
            log.warning(
                "client %d (%s) refused: user %s already has %d connections",
                self.id,
                self.remote,
                user,
                self.max_per_user,
            )
            return False
        self.hub.set_user(self, user)
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
        # The close frame is queued behind what the client has not read; if it
        # does not read it within the grace period the TCP connection is cut.
        # Either way nobody else waits: nothing here is awaited.
        self.ws.protocol.fail(CloseCode.SLOW_CONSUMER, "slow consumer: too much unread data")
        self.ws.send_data()
        asyncio.get_running_loop().call_later(self.slow_grace, transport.abort)


def format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
