"""Compression benchmark: server CPU and bytes per delivered message, with and without deflate.

Issue 14's goal: with permessage-deflate negotiated, the server's CPU per
delivered message is no higher than without it, because each publication is
compressed once for every client that negotiated the same parameters, not once
per client.

Each run starts ``slurmcast serve`` (memory broker, simulator, server on core 0)
and N lean clients in this process (core 1) that subscribe to ``jobs``:

* ``plain``: no client offers permessage-deflate;
* ``deflate``: every client offers it (``client_no_context_takeover``, as
  browsers and the client libraries do; the server always adds
  ``server_no_context_takeover``);
* ``mixed``: half of them do.

Then M job-update messages of realistic JSON (~310 bytes, no padding that
would compress unrealistically well) are published through ``POST /broadcast``,
two requests in flight, and the run waits until every client has every one.
Reported per mode: the server's CPU (user + system) per delivered message, the
bytes per delivered message on the wire (frame headers included), the ratio of
both to ``plain``; and the size of the ``jobs`` snapshot reply (the simulated
cluster's, parts included) with and without deflate. Modes alternate in each
repetition so that drift on the shared machine hits all of them alike.

Usage::

    .venv/bin/python bench/compression.py                     # 1000 clients, 200 messages
    .venv/bin/python bench/compression.py --clients 2000 --repeat 3 \
        --json-out bench/results/compression.json
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import zlib
from collections.abc import Sequence
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

MODES = ("plain", "deflate", "mixed")
OFFER = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
#: Messages that would take longer than this are a stuck run, not a measurement.
RUN_TIMEOUT = 120.0


class CountingClient(RawClient):
    """A client that counts the frames and bytes it receives after its subscribe reply.

    Frames are not inflated (the tests check what they hold); only the snapshot
    probe decodes its replies, to know where the snapshot ends.
    """

    def __init__(self, deflate: bool, done: asyncio.Event, expected: list[int]) -> None:
        super().__init__()
        self.deflate, self.done, self.expected = deflate, done, expected
        self.extra_headers = f"Sec-WebSocket-Extensions: {OFFER}\r\n" if deflate else ""
        self.negotiated = False
        self.frames = 0
        self.wire_bytes = 0
        self.subscribed = asyncio.Event()
        self.target = 0

    def opened(self, head: bytes) -> None:
        self.negotiated = b"permessage-deflate" in head.lower()
        self.send({"type": "subscribe", "channel": "jobs", "id": 1})

    def frame(self, first: int, payload: bytes, size: int) -> bool:
        if not self.subscribed.is_set():
            self.subscribed.set()  # the subscribe reply: counting starts after it
            return True
        self.frames += 1
        self.wire_bytes += size
        if self.frames == self.target:
            self.expected[0] -= 1
            if self.expected[0] == 0:
                self.done.set()
        return True


class SnapshotProbe(CountingClient):
    """Subscribes with ``snapshot: true`` and measures the reply and its parts."""

    def __init__(self, deflate: bool) -> None:
        super().__init__(deflate, asyncio.Event(), [1])

    def send(self, message: dict[str, Any]) -> None:
        super().send({**message, "snapshot": True})

    def frame(self, first: int, payload: bytes, size: int) -> bool:
        self.wire_bytes += size
        if first & 0x40:  # RSV1: compressed (no context takeover: a fresh inflater each)
            payload = zlib.decompressobj(-zlib.MAX_WBITS).decompress(payload + b"\0\0\xff\xff")
        if orjson.loads(payload).get("type") == "subscribed":
            self.done.set()
        return True


def compression_server() -> SlurmcastServer:
    # One poll at start (the snapshot probe needs jobs), then a quiet channel.
    return SlurmcastServer("compression", ["--compression", "deflate", *QUIET])


def job_update(seq: int, rng: random.Random) -> dict[str, Any]:
    """A job state change as the jobs channel carries it (~310 bytes of JSON)."""
    job_id = 4_200_000 + rng.randrange(100_000)
    return {
        "event": "job_update",
        "job_id": job_id,
        "seq": seq,
        "name": f"cfd-sweep-{rng.randrange(1000)}",
        "user": rng.choice(("alice", "bob", "carol", "dmitri", "eun-ji")),
        "account": rng.choice(("physics", "chem", "bio")),
        "partition": rng.choice(("compute", "gpu", "bigmem")),
        "state": rng.choice(("RUNNING", "COMPLETED", "FAILED", "PENDING")),
        "previous_state": "PENDING",
        "nodes": f"node[{rng.randrange(1, 50):02d}-{rng.randrange(50, 99):02d}]",
        "cpus": rng.choice((1, 8, 32, 128)),
        "gpus": rng.choice((0, 1, 4)),
        "start_time": f"2026-12-06T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
        "exit_code": rng.randrange(3),
    }


async def run_mode(mode: str, clients: int, messages: int, seed: int) -> dict[str, Any]:
    server = compression_server()
    done = asyncio.Event()
    expected = [clients]
    loop = asyncio.get_running_loop()
    pool: list[CountingClient] = []
    async with aiohttp.ClientSession() as session:
        try:
            await server.start(session)
            for n in range(clients):
                deflate = mode == "deflate" or (mode == "mixed" and n % 2 == 0)
                client = CountingClient(deflate, done, expected)
                client.target = messages
                await loop.create_connection(lambda c=client: c, "127.0.0.1", server.ws_port)
                pool.append(client)
            await asyncio.wait_for(
                asyncio.gather(*(c.subscribed.wait() for c in pool)), RUN_TIMEOUT
            )
            wanted = sum(1 for c in pool if c.deflate)
            negotiated = sum(1 for c in pool if c.negotiated)
            if negotiated != wanted:
                raise SetupError(f"{mode}: {negotiated} clients negotiated deflate, not {wanted}")
            rng = random.Random(seed)
            bodies = [
                orjson.dumps({"channel": "jobs", "message": job_update(n, rng)})
                for n in range(messages)
            ]
            url = f"http://127.0.0.1:{server.http_port}/broadcast"
            headers = {"Content-Type": "application/json"}
            cpu_before, started = server.cpu_seconds(), time.monotonic()

            async def publisher(parts: Sequence[bytes]) -> None:
                for body in parts:
                    async with session.post(url, data=body, headers=headers) as resp:
                        if resp.status != 200:
                            raise SetupError(f"POST /broadcast answered {resp.status}")

            await asyncio.gather(publisher(bodies[0::2]), publisher(bodies[1::2]))
            await asyncio.wait_for(done.wait(), RUN_TIMEOUT)
            elapsed, cpu = time.monotonic() - started, server.cpu_seconds() - cpu_before
            delivered = sum(c.frames for c in pool)
            wire = sum(c.wire_bytes for c in pool)
            return {
                "mode": mode,
                "clients": clients,
                "deflate_clients": negotiated,
                "delivered": delivered,
                "seconds": round(elapsed, 3),
                "server_cpu_us_per_message": round(cpu / delivered * 1e6, 3),
                "wire_bytes_per_message": round(wire / delivered, 1),
                "delivered_per_s": round(delivered / elapsed),
            }
        finally:
            for client in pool:
                if client.transport is not None:
                    client.transport.abort()
            await server.stop()


async def snapshot_sizes() -> dict[str, int]:
    server = compression_server()
    sizes: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        try:
            await server.start(session)
            loop = asyncio.get_running_loop()
            for deflate in (False, True):
                probe = SnapshotProbe(deflate)
                await loop.create_connection(lambda p=probe: p, "127.0.0.1", server.ws_port)
                await asyncio.wait_for(probe.done.wait(), RUN_TIMEOUT)
                sizes["deflate" if deflate else "plain"] = probe.wire_bytes
                assert probe.transport is not None
                probe.transport.abort()
        finally:
            await server.stop()
    return sizes


async def run(clients: int, messages: int, repeat: int) -> dict[str, Any]:
    check_fd_limit(clients)
    rows: list[dict[str, Any]] = []
    for rep in range(repeat):
        order = MODES if rep % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            row = await run_mode(mode, clients, messages, seed=rep)
            row["repetition"] = rep + 1
            log(
                f"{mode}: {row['server_cpu_us_per_message']} µs CPU and "
                f"{row['wire_bytes_per_message']} B per delivered message"
            )
            rows.append(row)
    summary: dict[str, Any] = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        summary[mode] = {
            "server_cpu_us_per_message": statistics.median(
                r["server_cpu_us_per_message"] for r in mine
            ),
            "wire_bytes_per_message": statistics.median(r["wire_bytes_per_message"] for r in mine),
        }
    for mode in MODES:
        for key in ("server_cpu_us_per_message", "wire_bytes_per_message"):
            summary[mode][key.replace("_per_message", "_ratio_to_plain")] = round(
                summary[mode][key] / summary["plain"][key], 3
            )
    snapshot = await snapshot_sizes()
    return {
        "rows": rows,
        "summary": summary,
        "snapshot_bytes": snapshot,
        "goal_met": summary["deflate"]["server_cpu_us_ratio_to_plain"] <= 1.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Server CPU and wire bytes per delivered message, with and without deflate.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    pin_self()
    import uvloop

    try:
        result = uvloop.run(run(args.clients, args.messages, args.repeat))
    except SetupError as exc:
        log(f"compression: {exc}")
        return 2
    report = {"machine": machine_info(), "result": result}
    write_json(report, args.json_out, args.json)
    if not args.json:
        print(machine_line(report["machine"]))
        print(f"{'mode':8} {'CPU µs/msg':>11} {'ratio':>6} {'bytes/msg':>10} {'ratio':>6}")
        for mode, row in result["summary"].items():
            print(
                f"{mode:8} {row['server_cpu_us_per_message']:11.2f} "
                f"{row['server_cpu_us_ratio_to_plain']:6.2f} "
                f"{row['wire_bytes_per_message']:10.1f} {row['wire_bytes_ratio_to_plain']:6.2f}"
            )
        sizes = result["snapshot_bytes"]
        print(f"jobs snapshot on the wire: {sizes['plain']} B plain, {sizes['deflate']} B deflate")
        print(f"Goal (deflate CPU/msg <= plain): {'MET' if result['goal_met'] else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
