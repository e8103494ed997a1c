"""The WebSocket listener (port 5011 by default)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from websockets.asyncio.server import Server, ServerConnection, serve

from slurmcast.errors import CloseCode
from slurmcast.hub import Hub
from slurmcast.transport.ws_connection import ClientConnection

log = logging.getLogger("slurmcast.ws")


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    host: str
    port: int
    max_message_size: int
    client_buffer_limit: int
    ping_interval: float
    ping_timeout: float
    slow_client_grace: float = 5.0
    close_timeout: float = 5.0


class WebSocketServer:
    def __init__(self, hub: Hub, settings: WebSocketSettings) -> None:
        self.hub = hub
        self.settings = settings
        self._server: Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        s = self.settings
        self._server = await serve(
            self._handle,
            s.host,
            s.port,
            # No permessage-deflate: frames are prepared once and shared by all
            # clients, which per-connection compression contexts would forbid.
            compression=None,
            max_size=s.max_message_size,
            ping_interval=s.ping_interval,
            ping_timeout=s.ping_timeout,
            close_timeout=s.close_timeout,
            server_header=None,
        )
        log.info("WebSocket server listening on ws://%s:%d", s.host, self.port)

    async def _handle(self, ws: ServerConnection) -> None:
        s = self.settings
        await ClientConnection(ws, self.hub, s.client_buffer_limit, s.slow_client_grace).serve()

    async def stop(self) -> None:
        """Refuse new clients, close open ones with 1001, wait for their handlers."""
        if self._server is None:
            return
        self._server.close(code=CloseCode.GOING_AWAY, reason="server shutting down")
        await self._server.wait_closed()
        log.info("WebSocket server stopped")
