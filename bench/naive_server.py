"""A deliberately naive fan-out server: the baseline for bench/fanout.py.

It speaks the same protocol as slurmcast, as far as the benchmark needs it:

* WebSocket (``--ws-port``): ``{"type":"subscribe","channel":"jobs"}`` (or
  ``"channels": [...]``) is answered with
  ``{"type":"subscribed","channel":"jobs","message":"Subscribed to jobs"}``;
  ``unsubscribe`` and ``ping`` work too.
* HTTP (``--http-port``): ``POST /broadcast`` with ``{"channel": ..., "message": {...}}``
  wraps the message in the same envelope,
  ``{"channel","type":"broadcast","timestamp":"...Z","data":{...}}``, serialises
  it once with orjson and then awaits ``send()`` for each subscriber in turn
  before answering ``{"success":true,"channel":...,"delivered":N}``.
  ``GET /health`` gives ``{"clients": N, "subscriptions": {...}}``.

The server is otherwise configured like slurmcast (same websockets library,
no compression, same size limit and keepalive, uvloop) so that the only
difference under test is the fan-out path: one awaited ``send()`` per
subscriber, each building its own frame, versus one prepared frame written to
every transport.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("naive")

CHANNELS = ("jobs", "nodes", "metrics", "notifications", "alerts")
ALL_CLIENTS = "all"


class NaiveHub:
    """Connected clients and, per channel, the clients subscribed to it."""

    def __init__(self) -> None:
        self.clients: set[ServerConnection] = set()
        self.subscribers: dict[str, set[ServerConnection]] = {name: set() for name in CHANNELS}

    async def handle(self, ws: ServerConnection) -> None:
        self.clients.add(ws)
        try:
            async for frame in ws:
                for reply in self._receive(ws, frame):
                    await ws.send(orjson.dumps(reply), text=True)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(ws)
            for members in self.subscribers.values():
                members.discard(ws)

    def _receive(self, ws: ServerConnection, frame: str | bytes) -> list[dict[str, Any]]:
        try:
            request = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return [_error("invalid_json", "message is not valid JSON")]
        if not isinstance(request, dict):
            return [_error("not_an_object", "message must be a JSON object")]
        kind = request.get("type")
        if kind == "ping":
            return [{"type": "pong"}]
        if kind not in ("subscribe", "unsubscribe"):
            return [_error("unknown_type", f"unknown message type {kind!r}")]
        names: Any = request["channels"] if "channels" in request else [request.get("channel")]
        if not isinstance(names, list) or not all(name in CHANNELS for name in names):
            return [_error("unknown_channel", f"unknown channel in {names!r}")]
        replies: list[dict[str, Any]] = []
        for name in names:
            if kind == "subscribe":
                self.subscribers[name].add(ws)
                replies.append(
                    {"type": "subscribed", "channel": name, "message": f"Subscribed to {name}"}
                )
            else:
                self.subscribers[name].discard(ws)
                replies.append(
                    {
                        "type": "unsubscribed",
                        "channel": name,
                        "message": f"Unsubscribed from {name}",
                    }
                )
        return replies

    async def broadcast(self, channel: str, message: dict[str, Any]) -> int:
        """The naive fan-out: serialise once, then await each subscriber's send()."""
        payload = orjson.dumps(
            {
                "channel": channel,
                "type": "broadcast",
                "timestamp": _iso_now(),
                "data": message,
            }
        )
        targets = self.clients if channel == ALL_CLIENTS else self.subscribers[channel]
        delivered = 0
        for ws in tuple(targets):
            try:
                await ws.send(payload, text=True)
            except ConnectionClosed:
                continue
            delivered += 1
        return delivered


def _iso_now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


HUB_KEY = web.AppKey("hub", NaiveHub)


async def broadcast_handler(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _json({"success": False, "code": "invalid_json", "message": "bad JSON"}, 400)
    if not isinstance(body, dict):
        return _json({"success": False, "code": "not_an_object", "message": "not an object"}, 400)
    channel = body.get("channel", ALL_CLIENTS)
    message = body.get("message")
    if channel != ALL_CLIENTS and channel not in CHANNELS:
        return _json({"success": False, "code": "unknown_channel", "message": "no channel"}, 400)
    if not isinstance(message, dict):
        return _json({"success": False, "code": "invalid_field", "message": "bad message"}, 400)
    delivered = await request.app[HUB_KEY].broadcast(channel, message)
    return _json({"success": True, "channel": channel, "delivered": delivered})


async def health_handler(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    return _json(
        {
            "status": "ok",
            "server": "naive",
            "clients": len(hub.clients),
            "subscriptions": {name: len(members) for name, members in hub.subscribers.items()},
        }
    )


async def run(host: str, ws_port: int, http_port: int, ping_interval: float) -> None:
    hub = NaiveHub()
    app = web.Application()
    app[HUB_KEY] = hub
    app.router.add_post("/broadcast", broadcast_handler)
    app.router.add_get("/health", health_handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, http_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The same settings slurmcast uses (see slurmcast.transport.ws_server).
    async with serve(
        hub.handle,
        host,
        ws_port,
        compression=None,
        max_size=65536,
        ping_interval=ping_interval,
        ping_timeout=20.0,
        close_timeout=5.0,
        server_header=None,
    ):
        await site.start()
        log.info("naive server on ws://%s:%d and http://%s:%d", host, ws_port, host, http_port)
        await stop.wait()
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ws-port", type=int, default=5111)
    parser.add_argument("--http-port", type=int, default=5112)
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a slurmcast dependency on POSIX
        asyncio.run(run(args.host, args.ws_port, args.http_port, args.ping_interval))
    else:
        uvloop.run(run(args.host, args.ws_port, args.http_port, args.ping_interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
