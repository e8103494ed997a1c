"""``HttpServer``: the API's listener, its connections screened by a ``ConnectionGuard``."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.log import server_logger

from slurmcast.http.connections import ConnectionGuard, ConnectionLimits, QuietClientErrors
from slurmcast.http.middleware import refuse_odd_expectations

log = logging.getLogger("slurmcast.http")


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a ``ConnectionGuard`` first."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=128
        )


class HttpServer:
    """The API's listener.

    Args:
        limits: deadlines and the per-address limit of its connections
            (``ConnectionGuard``; counted in ``connections.stats()``).
    """

    def __init__(
        self, app: web.Application, host: str, port: int, limits: ConnectionLimits | None = None
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.connections = ConnectionGuard(limits or ConnectionLimits())
        self._runner: web.AppRunner | None = None
        self._site: GuardedSite | None = None

    @property
    def port(self) -> int:
        assert self._site is not None and self._site._server is not None, "not started"
        sockets = getattr(self._site._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1])

    async def start(self) -> None:
        # aiohttp's keep-alive timer is left alone: the guard closes idle
        # connections long before it would.
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            logger=QuietClientErrors(server_logger),
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        # Around the application, so as to see every request, found or not;
        # read by each connection's protocol when it is made, i.e. after this.
        server.request_handler = self.connections.track(
            refuse_odd_expectations(server.request_handler)
        )
        self._site = GuardedSite(self._runner, self.host, self.requested_port, self.connections)
        await self._site.start()
        log.info("HTTP API listening on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            log.info("HTTP API stopped")
