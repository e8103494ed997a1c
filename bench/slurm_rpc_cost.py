"""What watching a cluster costs slurmctld: RPCs per minute, by source and client count.

Runs ``slurmcast serve`` (default intervals) against the local Slurm of
../shared/slurm for a fixed time, with N WebSocket clients subscribed to every
channel, and reads slurmctld's own RPC counters (``sdiag``, reset before each
run) and slurmdbd's accounting requests. Needs root and the local cluster
running (``bash ../shared/slurm/start-local-slurm.sh``).

    .venv/bin/python bench/slurm_rpc_cost.py     # slurm and slurmrestd, 0 and 50 clients
    .venv/bin/python bench/slurm_rpc_cost.py --seconds 120 --clients 0,200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
SLURMCAST = Path(sys.executable).with_name("slurmcast")
RESTD_SOCKET = "unix:///run/slurm-local/restd/slurmrestd.socket"
_LINE = re.compile(r"^\s+(\S+)\s+\(\s*\d+\)\s+count:(\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rpc_counts() -> Counter[str]:
    """slurmctld's RPC counts by message type since the last ``sdiag --reset``."""
    text = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    section = text.split("by message type", 1)[1].split("by user", 1)[0]
    counts: Counter[str] = Counter()
    for line in section.splitlines():
        match = _LINE.match(line)
        if match:
            counts[match.group(1)] += int(match.group(2))
    return counts


async def watch(ws_port: int, clients: int, seconds: float) -> int:
    """Keep ``clients`` subscribers connected for ``seconds``; return the messages they got."""
    received = 0

    async def one() -> None:
        nonlocal received
        async with websockets.connect(f"ws://127.0.0.1:{ws_port}/", max_queue=None) as ws:
            channels = ["jobs", "nodes", "metrics", "notifications", "alerts"]
            await ws.send(json.dumps({"type": "subscribe", "channels": channels}))
            async for _ in ws:
                received += 1

    tasks = [asyncio.create_task(one()) for _ in range(clients)]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return received


def slurmcast_args(source: str) -> list[str]:
    if source == "slurmrestd":
        return ["--source", "slurmrestd", "--slurmrestd-url", RESTD_SOCKET]
    return ["--source", "slurm"]


async def run_case(source: str, clients: int, seconds: float) -> dict[str, object]:
    ws_port, http_port = free_port(), free_port()
    env = dict(os.environ, SLURMCAST_DATA_DIR=tempfile.mkdtemp(prefix="slurm-rpc-"))
    command = [str(SLURMCAST), "serve", "--host", "127.0.0.1", "--ws-port", str(ws_port)]
    command += ["--http-port", str(http_port), *slurmcast_args(source)]
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(100):  # the servers listen once the first poll is done
            await asyncio.sleep(0.2)
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", ws_port)) == 0:
                    break
        await asyncio.to_thread(subprocess.run, ["sdiag", "--reset"], check=True)
        received = await watch(ws_port, clients, seconds)
        counts = await asyncio.to_thread(rpc_counts)
    finally:
        process.terminate()
        await process.wait()
    per_minute = {name: round(n * 60 / seconds, 1) for name, n in sorted(counts.items())}
    # REQUEST_STATS_INFO is this script's own sdiag.
    ours = {
        name: count
        for name, count in per_minute.items()
        if name.startswith("REQUEST_") and name != "REQUEST_STATS_INFO"
    }
    return {
        "source": source,
        "clients": clients,
        "seconds": seconds,
        "rpcs_per_minute": round(sum(ours.values()), 1),
        "by_type": ours,
        "messages_received": received,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", default="slurm,slurmrestd")
    parser.add_argument("--clients", default="0,50")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (sdiag --reset)", file=sys.stderr)
        return 2
    for source in args.sources.split(","):
        for clients in (int(c) for c in args.clients.split(",")):
            result = await run_case(source, clients, args.seconds)
            print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
