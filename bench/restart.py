"""Restart benchmark: N subscribed clients, the server restarted, how long until all are back.

Issue 14's goal: with 10k clients, a restart ends with every client
reconnected, recovered from its last position (``since``) and receiving live
messages within 3 s.

What runs (server on core 0, everything else in this process on core 1):

1. ``slurmcast serve --broker redis`` (history must outlive the process for
   a recovery to be possible; a fresh ``--redis-prefix``, deleted afterwards),
   N lean clients (asyncio protocols over raw sockets on uvloop, the client
   of the measurement must not be the bottleneck) subscribed to ``jobs``,
   and a few messages so that every client holds a position;
2. SIGTERM: the server closes every client with 1001 and exits; each client
   reconnects as slurmcast's client libraries do after a 1001, with a fully
   jittered exponential backoff (first ceiling 0.5 s) kept under 2 s while
   the server is down (``backoff.RESTART_MAXIMUM``), and
   subscribes with ``since`` its last position;
3. the same server command starts again on the same ports; as soon as it
   answers, ``--gap`` messages are published (the ones clients missed while
   it was down, to be recovered), then live messages, by default 10 per
   second (the rate of issue 14's latency goal), each to every client back;
4. a client is *back* once its ``subscribed`` reply said ``recovered: true``,
   it got every offset after its old position without a gap or a duplicate,
   and a live message after its recovery.

Reported: seconds from SIGTERM to the old process's exit, to the new one
answering, and to the last client back (also counted from the new server
answering); how many clients were back at 1, 2 and 3 s after it answered;
failed reconnection attempts (the server was still down); and the server's
CPU during the reconnection.

Usage::

    .venv/bin/python bench/restart.py                  # 10000 clients
    .venv/bin/python bench/restart.py --clients 2000 --json-out bench/results/restart.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import signal
import struct
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson
from benchlib import (
    LOG_DIR,
    REPO_DIR,
    SERVER_CORE,
    SetupError,
    check_fd_limit,
    free_port,
    log,
    machine_info,
    machine_line,
    pin_self,
    proc_cpu_seconds,
    write_json,
)

from slurmcast.client.backoff import RESTART_MAXIMUM, backoff_delay

#: SlurmcastClient's defaults.
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 30.0
GOAL_SECONDS = 3.0
REDIS_URL = "redis://127.0.0.1:6379/0"


# --------------------------------------------------------------------------- a lean client


@dataclass(slots=True)
class Tally:
    """What every client reports to the benchmark."""

    connected: int = 0
    back: int = 0
    failed_attempts: int = 0
    back_times: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)
    all_back: asyncio.Event = field(default_factory=asyncio.Event)


class BenchClient(asyncio.Protocol):
    """One WebSocket client: handshake by hand, text frames only, zero masks.

    It remembers its position; after a close it reconnects with jittered
    backoff and resubscribes ``since`` it, then checks the offsets it gets.
    """

    def __init__(self, port: int, total: int, tally: Tally, rng: random.Random) -> None:
        self.port, self.total, self.tally, self.rng = port, total, tally, rng
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.open = False
        self.position: dict[str, Any] | None = None
        self.restarting = False
        self.recovered = False
        self.is_back = False
        self.attempt = 0

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.create_connection(lambda: self, "127.0.0.1", self.port)
                return
            except OSError:
                self.tally.failed_attempts += 1
                delay = backoff_delay(
                    self.attempt,
                    initial=BACKOFF_INITIAL,
                    maximum=BACKOFF_MAX,
                    rng=self.rng,
                    restart_maximum=RESTART_MAXIMUM if self.restarting else None,
                )
                self.attempt += 1
                await asyncio.sleep(delay)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        self.buffer, self.open = b"", False
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def send(self, message: dict[str, Any]) -> None:
        payload = orjson.dumps(message)
        length = len(payload)
        header = (
            bytes((0x81, 0x80 | length))
            if length < 126
            else struct.pack("!BBH", 0x81, 0xFE, length)
        )
        assert self.transport is not None
        self.transport.write(header + b"\0\0\0\0" + payload)  # a zero mask leaves it as is

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.fail(f"handshake refused: {self.buffer[:40]!r}")
                return
            self.buffer, self.open = self.buffer[end + 4 :], True
            request: dict[str, Any] = {"type": "subscribe", "channel": "jobs"}
            if self.position is not None:
                request["since"] = self.position
            self.send(request)
        while len(self.buffer) >= 2:
            first, second = self.buffer[0], self.buffer[1] & 0x7F
            start = 2
            if second == 126:
                if len(self.buffer) < 4:
                    return
                (second,) = struct.unpack("!H", self.buffer[2:4])
                start = 4
            elif second == 127:
                if len(self.buffer) < 10:
                    return
                (second,) = struct.unpack("!Q", self.buffer[2:10])
                start = 10
            if len(self.buffer) < start + second:
                return
            payload = self.buffer[start : start + second]
            self.buffer = self.buffer[start + second :]
            opcode = first & 0x0F
            if opcode == 0x1:
                self.message(orjson.loads(payload))
            elif opcode == 0x8:
                if self.transport is not None:
                    self.transport.close()
                return
            elif opcode == 0x9:  # ping: pong with the same payload
                self.pong(payload)

    def pong(self, payload: bytes) -> None:
        assert self.transport is not None and len(payload) < 126
        self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)

    def message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribed":
            if not self.restarting:
                self.position = message["position"]
                self.tally.connected += 1
                if self.tally.connected == self.total:
                    self.tally.all_connected.set()
            else:
                self.recovered = bool(message.get("recovered"))
                if not self.recovered:
                    self.fail(f"not recovered: {message}")
            return
        if kind == "error":
            self.fail(f"error: {message}")
            return
        offset, epoch = message.get("offset"), message.get("epoch")
        if offset is None or self.position is None:
            return
        if epoch != self.position["epoch"] or offset != self.position["offset"] + 1:
            self.fail(f"gap or duplicate: {self.position} then {offset}/{epoch}")
            return
        self.position = {"offset": offset, "epoch": epoch}
        live = (message.get("data") or {}).get("live")
        if self.restarting and self.recovered and live and not self.is_back:
            self.is_back = True
            self.tally.back += 1
            self.tally.back_times.append(time.monotonic())
            if self.tally.back == self.total:
                self.tally.all_back.set()

    def fail(self, text: str) -> None:
        if len(self.tally.errors) < 20:
            self.tally.errors.append(text)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.restarting = True
        self.recovered = False
        if self.is_back:
            return  # the measurement is over for this one
        asyncio.get_running_loop().create_task(self.reconnect())

    async def reconnect(self) -> None:
        self.attempt = 0
        delay = backoff_delay(
            0,
            initial=BACKOFF_INITIAL,
            maximum=BACKOFF_MAX,
            rng=self.rng,
            restart_maximum=RESTART_MAXIMUM,
        )
        self.attempt = 1
        await asyncio.sleep(delay)
        await self.connect()


# --------------------------------------------------------------------------- the server


class Server:
    def __init__(self, ws_port: int, http_port: int, prefix: str) -> None:
        self.ws_port, self.http_port, self.prefix = ws_port, http_port, prefix
        self.proc: asyncio.subprocess.Process | None = None
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        args = ["--host", "127.0.0.1", "--ws-port", str(self.ws_port)]
        args += ["--http-port", str(self.http_port), "--log-level", "WARNING"]
        args += ["--broker", "redis", "--redis-url", REDIS_URL, "--redis-prefix", self.prefix]
        args += ["--jobs-interval", "3600", "--nodes-interval", "3600"]
        args += ["--metrics-interval", "3600", "--ping-interval", "600"]
        args += ["--max-connections-per-ip", "100000", "--max-connections", "100000"]
        return [sys.executable, "-m", "slurmcast", "serve", *args]

    async def start(self, session: aiohttp.ClientSession, name: str) -> float:
        """Start; returns the monotonic time it first answered /health."""
        with (LOG_DIR / f"restart-{name}.log").open("wb") as log_file:
            self.proc = await asyncio.create_subprocess_exec(
                "taskset",
                "-c",
                str(SERVER_CORE),
                *self.command(),
                stdout=log_file,
                stderr=log_file,
                cwd=REPO_DIR,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise SetupError(f"the server exited at start; see {LOG_DIR}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"http://127.0.0.1:{self.http_port}/health") as resp:
                    if resp.status == 200:
                        return time.monotonic()
            await asyncio.sleep(0.02)
        raise SetupError("the server did not answer /health within 30 s")

    async def publish(self, session: aiohttp.ClientSession, data: dict[str, Any]) -> None:
        url = f"http://127.0.0.1:{self.http_port}/broadcast"
        async with session.post(url, json={"channel": "jobs", "message": data}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"POST /broadcast answered {resp.status}")

    async def stop(self) -> float:
        """SIGTERM; returns the monotonic time the process was gone."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), 30)
        return time.monotonic()


def listen_overflows() -> int:
    """The kernel's count of connections dropped for a full accept queue (all sockets)."""
    with open("/proc/net/netstat") as netstat:
        lines = netstat.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            fields = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(fields.get("ListenOverflows", 0))
    return 0


async def delete_prefix(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.unlink(*keys)
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- the run


async def run(clients: int, gap: int, live_rate: float, timeout: float) -> dict[str, Any]:
    check_fd_limit(clients)
    prefix = f"slurmcast-bench-restart-{uuid.uuid4().hex[:8]}:"
    server = Server(free_port(), free_port(), prefix)
    tally = Tally()
    rng = random.Random(14)
    result: dict[str, Any] = {"clients": clients, "gap": gap, "live_rate": live_rate}
    async with aiohttp.ClientSession() as session:
        try:
            await server.start(session, "first")
            started = time.monotonic()
            pool = [BenchClient(server.ws_port, clients, tally, rng) for _ in range(clients)]
            for number, client in enumerate(pool):
                await client.connect()
                if number % 200 == 199:
                    await asyncio.sleep(0)  # let subscriptions be answered meanwhile
            try:
                await asyncio.wait_for(tally.all_connected.wait(), timeout)
            except TimeoutError:
                subscribed = f"{tally.connected} of {clients} subscribed"
                raise SetupError(f"{subscribed} after {timeout} s: {tally.errors[:3]}") from None
            result["connect_s"] = round(time.monotonic() - started, 3)
            for n in range(3):
                await server.publish(session, {"n": n})
            log(f"{clients} clients subscribed in {result['connect_s']} s; restarting the server")
            overflows_before = listen_overflows()
            sigterm = time.monotonic()
            gone = await server.stop()
            answering = await server.start(session, "second")
            cpu_before = proc_cpu_seconds(server.proc.pid) if server.proc else (0.0, 0.0)
            for n in range(gap):
                await server.publish(session, {"n": 100 + n})

            async def live() -> None:
                n = 0
                while True:
                    await server.publish(session, {"live": True, "n": 1000 + n})
                    n += 1
                    await asyncio.sleep(1 / live_rate)

            publisher = asyncio.create_task(live())
            try:
                await asyncio.wait_for(tally.all_back.wait(), timeout)
            except TimeoutError:
                tally.errors.append(f"only {tally.back} of {clients} back after {timeout} s")
            finally:
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher
            if server.proc is not None:
                cpu_after = proc_cpu_seconds(server.proc.pid)
                result["server_cpu_s"] = round(sum(cpu_after) - sum(cpu_before), 3)
            last = max(tally.back_times, default=float("nan"))
            result |= {
                "sigterm_to_exit_s": round(gone - sigterm, 3),
                "sigterm_to_answering_s": round(answering - sigterm, 3),
                "sigterm_to_all_back_s": round(last - sigterm, 3),
                "answering_to_all_back_s": round(last - answering, 3),
                "back": tally.back,
                "back_within": {
                    f"{s}s": sum(1 for t in tally.back_times if t - answering <= s)
                    for s in (1, 2, 3)
                },
                "failed_connection_attempts": tally.failed_attempts,
                # Handshakes the kernel dropped because the accept queue was full:
                # each costs its client a SYN retransmission (1 s, then 3 s, 7 s...).
                "listen_overflows": listen_overflows() - overflows_before,
                "errors": tally.errors,
            }
            result["goal_met"] = (
                not tally.errors
                and tally.back == clients
                and result["answering_to_all_back_s"] < GOAL_SECONDS
            )
        finally:
            if server.proc is not None and server.proc.returncode is None:
                await server.stop()
            await delete_prefix(prefix)
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Restart benchmark: N clients reconnecting and recovering after a restart.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument(
        "--gap", type=int, default=20, help="messages published before clients are back"
    )
    parser.add_argument(
        "--live-rate",
        type=float,
        default=10.0,
        help="live messages per second once the server is back (each goes to every client)",
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--json-out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pin_self()
    import uvloop

    try:
        result = uvloop.run(run(args.clients, args.gap, args.live_rate, args.timeout))
    except SetupError as exc:
        log(f"restart: {exc}")
        return 2
    report = {"machine": machine_info(), "result": result}
    write_json(report, args.json_out, args.json)
    if not args.json:
        print(machine_line(report["machine"]))
        for key, value in result.items():
            print(f"{key}: {value}")
        print(
            f"Goal (all back within {GOAL_SECONDS} s): {'MET' if result['goal_met'] else 'NOT MET'}"
        )
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
