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
import contextlib
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from benchlib import (
    SetupError,
    check_fd_limit,
    log,
    machine_info,
    machine_line,
    pin_self,
    write_json,
)
from rawws import QUIET, RawClient, SlurmcastServer

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


class BenchClient(RawClient):
    """One client that remembers its position; after a close it reconnects with
    jittered backoff and resubscribes ``since`` it, then checks the offsets it gets.
    """

    def __init__(self, port: int, total: int, tally: Tally, rng: random.Random) -> None:
        super().__init__()
        self.port, self.total, self.tally, self.rng = port, total, tally, rng
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

    def refused(self, head: bytes) -> None:
        self.fail(f"handshake refused: {head[:40]!r}")

    def opened(self, head: bytes) -> None:
        request: dict[str, Any] = {"type": "subscribe", "channel": "jobs"}
        if self.position is not None:
            request["since"] = self.position
        self.send(request)

    def frame(self, first: int, payload: bytes, size: int) -> bool:
        opcode = first & 0x0F
        if opcode == 0x1:
            self.message(orjson.loads(payload))
        elif opcode == 0x8:
            if self.transport is not None:
                self.transport.close()
            return False
        elif opcode == 0x9:  # ping: pong with the same payload
            self.pong(payload)
        return True

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


def server_args(prefix: str) -> list[str]:
    # History has to outlive the process for a recovery to be possible.
    return ["--broker", "redis", "--redis-url", REDIS_URL, "--redis-prefix", prefix, *QUIET]


async def publish(
    server: SlurmcastServer, session: aiohttp.ClientSession, data: dict[str, Any]
) -> None:
    url = f"http://127.0.0.1:{server.http_port}/broadcast"
    async with session.post(url, json={"channel": "jobs", "message": data}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"POST /broadcast answered {resp.status}")


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
    server = SlurmcastServer("restart", server_args(prefix))
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
                await publish(server, session, {"n": n})
            log(f"{clients} clients subscribed in {result['connect_s']} s; restarting the server")
            overflows_before = listen_overflows()
            sigterm = time.monotonic()
            gone = await server.stop()
            answering = await server.start(session, "second")
            cpu_before = server.cpu_seconds()
            for n in range(gap):
                await publish(server, session, {"n": 100 + n})

            async def live() -> None:
                n = 0
                while True:
                    await publish(server, session, {"live": True, "n": 1000 + n})
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
            result["server_cpu_s"] = round(server.cpu_seconds() - cpu_before, 3)
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
