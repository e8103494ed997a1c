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
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from slurmcast.core.session import AddSubscription, RemoveSubscription, SendReply, Session
from slurmcast.errors import CloseCode
from slurmcast.hub import Hub
from slurmcast.transport.frames import text_frame

log = logging.getLogger("slurmcast.ws")

_ids = itertools.count(1)


class ClientConnection:
    """Adapter between a websockets connection, its Session and the Hub."""

    __slots__ = ("_closing", "buffer_limit", "hub", "id", "remote", "session", "slow_grace", "ws")

    def __init__(
        self, ws: ServerConnection, hub: Hub, buffer_limit: int, slow_grace: float
    ) -> None:
        self.ws = ws
        self.hub = hub
        self.buffer_limit = buffer_limit
        self.slow_grace = slow_grace
        self.session = Session()
        self.id = next(_ids)
        self.remote = _format_address(ws.remote_address)
        self._closing = False

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

    def send_reply(self, reply: dict[str, Any]) -> None:
        self.write_frame(text_frame(orjson.dumps(reply)))

    async def serve(self) -> None:
        """Read frames until the client goes away; always leaves the hub clean."""
        self.hub.connect(self)
        log.info("client %d connected from %s", self.id, self.remote)
        loop = asyncio.get_running_loop()
        try:
            async for frame in self.ws:
                for action in self.session.receive(frame, loop.time()):
                    self._perform(action)
        except ConnectionClosed:
            pass
        finally:
            channels = self.hub.disconnect(self)
            close = self.ws.close_code
            log.info(
                "client %d disconnected from %s (code %s, was subscribed to %s)",
                self.id,
                self.remote,
                close,
                ", ".join(channels) or "nothing",
            )

    def _perform(self, action: SendReply | AddSubscription | RemoveSubscription) -> None:
        match action:
            case SendReply(reply):
                if reply.get("type") == "error":
                    log.info(
                        "client %d (%s) request rejected: %s: %s",
                        self.id,
                        self.remote,
                        reply["code"],
                        reply["message"],
                    )
                self.send_reply(reply)
            case AddSubscription(channel):
                self.hub.subscribe(self, channel.value)
            case RemoveSubscription(channel):
                self.hub.unsubscribe(self, channel.value)

    def _close_slow(self) -> None:
        self._closing = True
        transport = self.ws.transport
        log.warning(
            "client %d (%s) is a slow consumer: %d bytes queued (limit %d); closing it with %d",
            self.id,
            self.remote,
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


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
