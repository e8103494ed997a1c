"""How long a jobs poll of a big cluster costs, and how long it holds up the event loop.

Generates realistic ``squeue --json`` (shaped like a recorded job of Slurm
22.05 or 25.11, pretty-printed as squeue prints it) and delimited outputs
(22.05's raw exit statuses or 23.02+'s ``rc:signal``) for N jobs,
serves them through stand-in ``squeue`` scripts, and runs the real path:
``SlurmCliSource.jobs()`` (subprocess, pipe, parse in a worker thread) then
the monitor's diff against the previous poll (1 % of jobs changed state, 0.5 %
new). Meanwhile a ticker task measures how late the event loop wakes it up:
the longest stall is what every connected client would have waited.

    .venv/bin/python bench/slurm_parse.py            # 10k and 100k jobs, both formats, both shapes
    .venv/bin/python bench/slurm_parse.py --jobs 100000 --format delimited --shape 25.11
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from slurmcast.core.diff import diff_jobs, needs_final_state  # noqa: E402
from slurmcast.gcpause import paused  # noqa: E402
from slurmcast.monitors.poller import OFF_LOOP_DIFF_JOBS  # noqa: E402
from slurmcast.sources.slurm.jobs import SQUEUE_DELIMITER, SQUEUE_FIELDS  # noqa: E402
from slurmcast.sources.slurm_cli import SlurmCliSource, SlurmSettings  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "slurm"
#: A recorded job listing per shape: 22.05 (plain numbers, string states, raw exit
#: statuses) and 25.11 (``{set, infinite, number}`` numbers and times, state lists,
#: exit code objects).
SHAPES = {
    "22.05": (FIXTURES / "22.05" / "collector_squeue_json.json", "slurm-wlm 22.05.8"),
    "25.11": (FIXTURES / "25.11" / "rest_v0.0.44_jobs.json", "slurm 25.11.0"),
}
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
NAMES = ["train_resnet", "md_sim", "bwa_align", "wrf_run", "jupyter", "eval_bert", "vasp"]
TICK = 0.005


@dataclass
class Result:
    jobs: int
    fmt: str
    shape: str
    output_mb: float
    poll_wall_s: float
    parse_cpu_s: float
    diff_cpu_s: float
    max_stall_ms: float
    p99_stall_ms: float
    events: int


def job_states(count: int, seed: int) -> Iterator[tuple[int, str, int]]:
    """(job id, state, node index) for a realistic queue: mostly pending and running."""
    rng = random.Random(seed)
    for index in range(count):
        roll = rng.random()
        state = "RUNNING" if roll < 0.55 else "PENDING" if roll < 0.97 else "COMPLETED"
        yield 1000 + index, state, rng.randrange(1, 2001)


def json_output(states: list[tuple[int, str, int]], shape: str) -> bytes:
    document = json.loads(SHAPES[shape][0].read_text())
    modern = shape != "22.05"
    template = next(j for j in document["jobs"] if "RUNNING" in j["job_state"])
    jobs = []
    for job_id, state, node in states:
        job = copy.deepcopy(template)
        job["job_id"] = job_id
        job["job_state"] = [state] if modern else state
        job["name"] = NAMES[job_id % len(NAMES)]
        job["user_name"] = USERS[job_id % len(USERS)]
        job["nodes"] = f"node{node:04d}" if state != "PENDING" else ""
        if not modern:
            job["exit_code"] = 0
        jobs.append(job)
    document["jobs"] = jobs
    # squeue --json pretty-prints with two-space indents.
    return json.dumps(document, indent=2).encode()


def delimited_output(states: list[tuple[int, str, int]], shape: str) -> bytes:
    lines = []
    for job_id, state, node in states:
        started = state != "PENDING"
        values = {
            "JobID": str(job_id),
            "State": state,
            "UserName": USERS[job_id % len(USERS)],
            "Account": "physics",
            "Partition": "cpu",
            "QOS": "normal",
            "NumCPUs": "4",
            "NumNodes": "1",
            "NumTasks": "4",
            "tres-alloc": "cpu=4,mem=16G,node=1,billing=4",
            "SubmitTime": "2026-11-28T04:06:18",
            "StartTime": "2026-11-28T04:06:19" if started else "N/A",
            "EndTime": "2026-11-28T05:06:19" if started else "N/A",
            "TimeLimit": "1:00:00",
            # 22.05 prints the raw wait status, 23.02 and later rc:signal.
            "exit_code": "0" if shape == "22.05" else "0:0",
            "Reason": "None" if started else "Priority",
            "Dependency": "(null)",
            "Reservation": "(null)",
            "NodeList": f"node{node:04d}" if started else "",
            "ReasonList": f"node{node:04d}" if started else "(Priority)",
            "Name": NAMES[job_id % len(NAMES)],
        }
        lines.append(SQUEUE_DELIMITER.join(values.get(field, "N/A") for field in SQUEUE_FIELDS))
    return ("\n".join(lines) + "\n").encode()


def evolve(states: list[tuple[int, str, int]], seed: int) -> list[tuple[int, str, int]]:
    """The next poll: 1 % of jobs change state, 0.5 % are new, finished ones leave."""
    rng = random.Random(seed)
    nxt = []
    for job_id, state, node in states:
        if state == "COMPLETED" and rng.random() < 0.5:
            continue
        if rng.random() < 0.01:
            state = {"PENDING": "RUNNING", "RUNNING": "COMPLETED"}.get(state, state)
        nxt.append((job_id, state, node))
    top = max(job_id for job_id, _, _ in states)
    nxt += [(top + 1 + i, "PENDING", 0) for i in range(len(states) // 200)]
    return nxt


def fake_squeue(bin_dir: Path, output: Path, shape: str) -> None:
    script = bin_dir / "squeue"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in --version) echo "{SHAPES[shape][1]}"; exit 0;; esac\n'
        f"exec cat '{output}'\n"
    )
    script.chmod(0o755)
    config = bin_dir / "scontrol"
    config.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--json*) echo \'{"nodes": []}\'; exit 0;; esac\n'
        "echo 'AccountingStorageType = accounting_storage/slurmdbd'\n"
        "echo 'MinJobAge = 300 sec'\n"
    )
    config.chmod(0o755)
    sinfo = bin_dir / "sinfo"
    sinfo.write_text("#!/bin/sh\necho '{\"nodes\": []}'\n")
    sinfo.chmod(0o755)


class StallMeter:
    """Wakes every TICK seconds and records how late each wake-up was."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            self.lateness.append(max(0.0, loop.time() - due))

    def __enter__(self) -> StallMeter:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def thread_cpu(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a parser so the CPU it used in its worker thread is recorded."""
    spent: list[float] = []

    def wrapper(*args: Any) -> Any:
        start = time.thread_time()
        try:
            return func(*args)
        finally:
            spent.append(time.thread_time() - start)

    wrapper.spent = spent  # type: ignore[attr-defined]
    return wrapper


async def measure(count: int, fmt: str, shape: str, work: Path) -> Result:
    import slurmcast.sources.slurm_cli as cli

    first, second = list(job_states(count, 1)), None
    second = evolve(first, 2)
    render = json_output if fmt == "json" else delimited_output
    out1, out2 = work / f"{fmt}-{count}-1", work / f"{fmt}-{count}-2"
    out1.write_bytes(render(first, shape))
    out2.write_bytes(render(second, shape))
    bin_dir = work / f"bin-{fmt}-{count}"
    bin_dir.mkdir()
    fake_squeue(bin_dir, out1, shape)
    source = SlurmCliSource(
        SlurmSettings(bin_dir=str(bin_dir), timeout=600, output_format=fmt, json_max_jobs=10**9)
    )
    await source.start()
    parser_name = "parse_squeue_json" if fmt == "json" else "parse_squeue_delimited"
    original = getattr(cli, parser_name)
    wrapped = thread_cpu(original)
    setattr(cli, parser_name, wrapped)
    try:
        previous = await source.jobs()
        fake_squeue(bin_dir, out2, shape)
        gc.collect()
        with StallMeter() as meter:
            started = time.perf_counter()
            current = await source.jobs()
            diff_start = time.process_time()
            # What ClusterMonitor.poll_jobs does with a large queue (no job vanishes here).
            if len(current.jobs) + len(previous.jobs) > OFF_LOOP_DIFF_JOBS:
                await asyncio.to_thread(paused(needs_final_state), previous.jobs, current.jobs)
                events, _ = await asyncio.to_thread(
                    paused(diff_jobs), previous.jobs, current.jobs, {}
                )
            else:
                needs_final_state(previous.jobs, current.jobs)
                events, _ = diff_jobs(previous.jobs, current.jobs, {})
            diff_cpu = time.process_time() - diff_start
            wall = time.perf_counter() - started
    finally:
        setattr(cli, parser_name, original)
    lateness = sorted(meter.lateness) or [0.0]
    return Result(
        jobs=count,
        fmt=fmt,
        shape=shape,
        output_mb=out2.stat().st_size / 1e6,
        poll_wall_s=wall,
        parse_cpu_s=wrapped.spent[-1],
        diff_cpu_s=diff_cpu,
        max_stall_ms=lateness[-1] * 1000,
        p99_stall_ms=lateness[int(len(lateness) * 0.99) - 1] * 1000 if len(lateness) > 1 else 0,
        events=len(events),
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="10000,100000", help="comma-separated job counts")
    parser.add_argument("--format", default="json,delimited", help="json, delimited or both")
    parser.add_argument("--shape", default="22.05,25.11", help="Slurm output shapes to generate")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median reported)")
    args = parser.parse_args()
    counts = [int(c) for c in args.jobs.split(",")]
    formats = args.format.split(",")
    shapes = args.shape.split(",")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, tick {TICK * 1000:g} ms")
    header = (
        f"{'shape':<6} {'format':<10} {'jobs':>7} {'output':>9} {'poll wall':>10} "
        f"{'parse CPU':>10} {'diff CPU':>9} {'parse+diff':>11} {'max stall':>10} "
        f"{'p99 stall':>10} {'events':>7}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for shape, fmt, count in [(s, f, c) for s in shapes for f in formats for c in counts]:
            runs = []
            for attempt in range(args.repeat):
                work = Path(tmp) / f"{shape}-{fmt}-{count}-{attempt}"
                work.mkdir()
                runs.append(await measure(count, fmt, shape, work))
            r = sorted(runs, key=lambda x: x.parse_cpu_s + x.diff_cpu_s)[len(runs) // 2]
            worst = max(x.max_stall_ms for x in runs)
            print(
                f"{shape:<6} {fmt:<10} {count:>7} {r.output_mb:>7.1f}MB {r.poll_wall_s:>9.2f}s "
                f"{r.parse_cpu_s:>9.2f}s {r.diff_cpu_s:>8.3f}s "
                f"{r.parse_cpu_s + r.diff_cpu_s:>10.2f}s {worst:>8.1f}ms "
                f"{statistics.median(x.p99_stall_ms for x in runs):>8.1f}ms {r.events:>7}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
