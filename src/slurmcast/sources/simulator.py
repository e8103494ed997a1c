"""A deterministic simulated Slurm cluster, and the ``Source`` that serves it.

``SimulatedCluster`` is pure: no asyncio, no clock reads, no I/O. Its state at
simulated time T depends only on its parameters (seed, start, tunables) and T,
never on how often or in what steps it was advanced. Time moves in whole
1-second ticks; every event (arrival, job end, node change) happens on a tick,
and ticks where nothing happens are skipped, which is the same as running
them: an idle tick draws no random number and changes nothing.

``SimulatorSource`` maps wall-clock time onto simulated time (``speed``
simulated seconds per wall second) and implements ``slurmcast.ports.Source``.

Exit codes follow ``sacct``'s ``ExitCode`` (``code:signal``): COMPLETED 0,
FAILED 1/2/127/137/139, TIMEOUT 0 with signal 15 (SIGTERM at the limit),
CANCELLED while running 0 with signal 15, CANCELLED while pending 0 and no
signal (it never ran), NODE_FAIL 0 and no signal, OUT_OF_MEMORY 0 with signal
9 (the OOM killer's SIGKILL; real ``sacct`` prints ``0:125`` there, a
Slurm-internal marker rather than a signal).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final

from slurmcast.core.snapshot import (
    NOT_RESPONDING,
    JobRecord,
    JobsSnapshot,
    JobState,
    JobUsage,
    NodeRecord,
    NodesSnapshot,
    NodeState,
)
from slurmcast.errors import SourceError

MIN_NODES: Final = 8
MAX_NODES: Final = 32
#: Above this many pending ticks, ``SimulatorSource`` advances in a worker thread.
INLINE_TICKS: Final = 5000

_DAY_S: Final = 86_400
_CPU_NODE: Final = (64, 262_144, 0)  # cpus, memory MiB, gpus
_GPU_NODE: Final = (64, 524_288, 4)
_NEVER: Final = 2**62
_ONE_SECOND: Final = timedelta(seconds=1)
# Heap event kinds; the number is also the processing order within a tick.
_END, _CANCEL, _NODE_BACK, _ELIGIBLE, _EXPIRE = range(5)

_RESERVE_AFTER_S: Final = 600
_LIMITS_MIN: Final = (5, 10, 15, 30, 60, 120, 240, 360, 480, 720, 1440)
_LOG_RUNTIME_S: Final = (math.log(20.0), math.log(4 * 3600.0))
_LOG_CANCEL_DELAY_S: Final = (math.log(30.0), math.log(3 * 3600.0))
_OUTCOMES: Final = (
    JobState.COMPLETED, JobState.FAILED, JobState.TIMEOUT, JobState.OUT_OF_MEMORY,
    JobState.CANCELLED,
)  # fmt: skip
_OUTCOME_WEIGHTS: Final = (77, 10, 5, 2, 6)
_FAIL_CODES: Final = (1, 1, 1, 1, 2, 2, 127, 137, 139)
_CPU_CHOICES: Final = (1, 2, 4, 8, 16, 32, 64)
_CPU_WEIGHTS: Final = (62, 18, 9, 5.5, 3.5, 1.5, 0.5)
_MEM_PER_CPU_MB: Final = (1024, 2048, 3072, 4096)
_GPU_CHOICES: Final = (1, 2, 4)
_GPU_WEIGHTS: Final = (65, 25, 10)
_CPUS_PER_GPU: Final = (2, 4, 8, 16)
_MEM_PER_GPU_MB: Final = (32_768, 65_536, 98_304, 131_072)
_DRAIN_REASONS: Final = (
    "kernel update", "DIMM errors, replace memory", "InfiniBand link flapping",
    "firmware upgrade", "disk health check", "GPU ECC errors",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _User:
    name: str
    account: str
    weight: float
    gpu_share: float
    cpu_jobs: tuple[str, ...]
    gpu_jobs: tuple[str, ...] = ()


_USERS: Final = (
    _User("alice", "ml", 3, 0.12, ("preprocess", "jupyter"), ("train_resnet", "finetune_llm")),
    _User("bob", "genomics", 3, 0.0, ("bwa_align", "gatk_call", "samtools_sort", "fastqc")),
    _User("carol", "chemistry", 2, 0.04, ("md_sim", "gaussian_opt"), ("gromacs_md",)),
    _User("dave", "climate", 2, 0.0, ("wrf_run", "cdo_regrid", "postproc")),
    _User("erin", "ml", 2, 0.10, ("jupyter", "data_prep"), ("train_vit", "eval_bert")),
    _User("frank", "engineering", 1.5, 0.02, ("openfoam_cfd", "mesh_gen"), ("cuda_solver",)),
    _User("grace", "astro", 1.5, 0.03, ("gadget_nbody", "healpix_map"), ("gpu_fft",)),
    _User("heidi", "stats", 1, 0.0, ("r_bootstrap", "stan_mcmc", "jupyter")),
)
_USER_WEIGHTS: Final = tuple(u.weight for u in _USERS)


@dataclass(slots=True)
class _Job:
    job_id: str
    name: str
    user: _User
    partition: str
    cpus: int
    memory_mb: int
    gpus: int
    time_limit_min: int
    submit_tick: int
    runtime_s: int  # hidden plan: how long it would run if nothing intervenes
    outcome: JobState  # hidden plan: how it ends
    exit_code: int
    cancel_tick: int
    load: float  # busy fraction of its CPUs, for the node's cpu_load
    mem_use: float  # fraction of its memory request actually used
    eligible: bool = False
    start_tick: int | None = None
    end_tick: int = _NEVER
    end_state: JobState = JobState.COMPLETED
    node: _Node | None = None


@dataclass(slots=True)
class _Node:
    name: str
    partition: str
    cpus: int
    memory_mb: int
    gpus: int
    cpus_alloc: int = 0
    mem_alloc: int = 0
    gpus_alloc: int = 0
    jobs: dict[str, _Job] = field(default_factory=dict)  # a dict, not a set: ordered
    drain: bool = False
    down: bool = False
    reason: str | None = None

    @property
    def available(self) -> bool:
        return not (self.drain or self.down)

    def fits(self, job: _Job) -> bool:
        return (
            self.available
            and self.cpus - self.cpus_alloc >= job.cpus
            and self.memory_mb - self.mem_alloc >= job.memory_mb
            and self.gpus - self.gpus_alloc >= job.gpus
        )

    def state(self) -> NodeState:
        if self.down:
            return NodeState.DOWN
        if self.drain:
            return NodeState.DRAINING if self.cpus_alloc else NodeState.DRAINED
        if self.cpus_alloc == 0:
            return NodeState.IDLE
        return NodeState.ALLOCATED if self.cpus_alloc >= self.cpus else NodeState.MIXED


class SimulatedCluster:
    """A deterministic, pure simulation of a small Slurm cluster.

    Partitions ``cpu`` (about 3/4 of the nodes: 64 CPUs, 256 GiB) and ``gpu``
    (the rest, at least 2: 64 CPUs, 512 GiB, 4 GPUs). Jobs arrive as a Poisson
    process, wait PENDING, are placed on one node by a FIFO first-fit
    scheduler, and end in a pre-drawn outcome. Admins drain nodes and nodes
    fail (DOWN, NOT_RESPONDING) now and then; both come back after a while.

    Args:
        seed: seeds the only random generator.
        start: timezone-aware datetime, the simulated clock's origin.
        nodes: node count, 8 to 32.
        mean_interarrival_s: mean seconds between submissions; by default
            8 s at 16 nodes, scaled so the load per node is the same at any size.
        min_job_age_s: how long a finished job stays listed (Slurm's MinJobAge).
        drains_per_node_day: admin drains per node per simulated day.
        downs_per_node_day: node failures per node per simulated day.
        max_pending: bound on pending jobs, shared between partitions in
            proportion to their nodes; a submission to a full share is dropped
            (so a GPU backlog never blocks CPU submissions).
        archive_size: how many finished jobs ``final_record`` remembers.
        warmup_s: simulated seconds run before ``start``, so that the cluster
            is already busy at ``start``.
    """

    def __init__(
        self,
        seed: int,
        start: datetime,
        nodes: int = 16,
        *,
        mean_interarrival_s: float | None = None,
        min_job_age_s: int = 300,
        drains_per_node_day: float = 0.2,
        downs_per_node_day: float = 0.1,
        max_pending: int = 200,
        archive_size: int = 20_000,
        warmup_s: int = 0,
    ) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be a timezone-aware datetime")
        if not MIN_NODES <= nodes <= MAX_NODES:
            raise ValueError(f"nodes must be between {MIN_NODES} and {MAX_NODES}, got {nodes}")
        if mean_interarrival_s is None:
            mean_interarrival_s = 8.0 * 16 / nodes
        if not mean_interarrival_s > 0:
            raise ValueError("mean_interarrival_s must be > 0")
        if min(min_job_age_s, warmup_s, drains_per_node_day, downs_per_node_day) < 0:
            raise ValueError("min_job_age_s, warmup_s and node event rates must be >= 0")
        if max_pending < 1 or archive_size < 1:
            raise ValueError("max_pending and archive_size must be >= 1")
        self._rng = random.Random(seed)
        self._origin = start.astimezone(UTC) - timedelta(seconds=warmup_s)
        self._tick = 0
        self._mean_interarrival = float(mean_interarrival_s)
        self._min_job_age = min_job_age_s
        self._drain_rate = drains_per_node_day
        self._down_rate = downs_per_node_day
        self._archive_size = archive_size

        gpu_nodes = max(2, nodes // 4)
        self._nodes: dict[str, _Node] = {}
        self._partitions: dict[str, list[_Node]] = {"cpu": [], "gpu": []}
        for i in range(nodes):
            partition = "cpu" if i < nodes - gpu_nodes else "gpu"
            cpus, mem, gpus = _CPU_NODE if partition == "cpu" else _GPU_NODE
            node = _Node(f"node{i + 1:03d}", partition, cpus, mem, gpus)
            self._nodes[node.name] = node
            self._partitions[partition].append(node)
        share = {p: len(ns) / nodes for p, ns in self._partitions.items()}
        self._max_pending = {p: max(1, int(max_pending * s)) for p, s in share.items()}
        # Never take more than a quarter of a partition (and at least one node) out.
        self._max_out = {p: max(1, len(ns) // 4) for p, ns in self._partitions.items()}

        self._next_id = 1000
        self._seq = 0
        self._heap: list[tuple[int, int, int, str]] = []
        self._pending: dict[str, dict[str, _Job]] = {p: {} for p in self._partitions}
        self._running: dict[str, _Job] = {}
        self._reserved: dict[str, tuple[_Job, _Node] | None] = dict.fromkeys(self._partitions)
        self._fresh: dict[str, None] = {}  # newly eligible job ids, in submit order
        self._dirty: dict[str, None] = {}  # nodes that may have gained usable room
        self._finished: dict[str, JobRecord] = {}  # still listed (younger than min_job_age)
        self._archive: OrderedDict[str, JobRecord] = OrderedDict()
        self._arrival_at = self._rng.expovariate(1.0 / self._mean_interarrival)
        self._node_event_tick = self._draw_node_event_tick()
        self.advance_to(start)

    @property
    def now(self) -> datetime:
        """The current simulated time (UTC)."""
        return self._origin + timedelta(seconds=self._tick)

    @property
    def node_count(self) -> int:
        """How many nodes the cluster has."""
        return len(self._nodes)

    def ticks_until(self, t: datetime) -> int:
        """How many 1-second ticks ``advance_to(t)`` would cover (0 for the past)."""
        return max(0, self._tick_of(t) - self._tick)

    def advance_to(self, t: datetime) -> None:
        """Run the simulation through the last whole second at or before ``t``.

        A time at or before the current simulated time is a no-op.
        """
        target = self._tick_of(t)
        while True:
            nxt = min(
                self._heap[0][0] if self._heap else _NEVER,
                math.ceil(self._arrival_at),
                self._node_event_tick,
            )
            if nxt > target:
                break
            self._tick = max(self._tick, nxt)
            self._step()
        self._tick = max(self._tick, target)

    def jobs_snapshot(self) -> JobsSnapshot:
        """Pending, running and recently finished jobs, keyed by job id."""
        records: list[JobRecord] = []
        for queue in self._pending.values():
            # As in Slurm: the first job waiting in a partition waits for
            # Resources, those queued behind it for Priority.
            for i, job in enumerate(queue.values()):
                reason = "Priority" if i else "Resources"
                records.append(self._record(job, JobState.PENDING, reason=reason))
        records.extend(self._record(job, JobState.RUNNING) for job in self._running.values())
        records.extend(self._finished.values())
        records.sort(key=lambda r: int(r.job_id))
        return JobsSnapshot(taken_at=self.now, jobs={r.job_id: r for r in records})

    def nodes_snapshot(self) -> NodesSnapshot:
        """Every node with its sinfo-style display state, keyed by node name."""
        nodes: dict[str, NodeRecord] = {}
        for node in self._nodes.values():
            load: float | None = None
            free: int | None = None
            if not node.down:
                load = round(0.02 + sum(j.cpus * j.load for j in node.jobs.values()), 2)
                used = sum(int(j.memory_mb * j.mem_use) for j in node.jobs.values())
                free = max(0, node.memory_mb - node.memory_mb // 32 - used)  # OS keeps ~3%
            nodes[node.name] = NodeRecord(
                name=node.name,
                state=node.state(),
                cpus_total=node.cpus,
                cpus_allocated=node.cpus_alloc,
                memory_total_mb=node.memory_mb,
                memory_allocated_mb=node.mem_alloc,
                gpus_total=node.gpus,
                gpus_allocated=node.gpus_alloc,
                flags=frozenset({NOT_RESPONDING}) if node.down else frozenset(),
                partitions=(node.partition,),
                reason=node.reason,
                cpu_load=load,
                memory_free_mb=free,
            )
        return NodesSnapshot(taken_at=self.now, nodes=nodes)

    def final_record(self, job_id: str) -> JobRecord | None:
        """The final record of a finished job, listed or not; None if unknown or unfinished."""
        return self._archive.get(job_id)

    # -- time and events ------------------------------------------------------

    def _tick_of(self, t: datetime) -> int:
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError("t must be a timezone-aware datetime")
        return (t - self._origin) // _ONE_SECOND

    def _push(self, tick: int, kind: int, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (tick, kind, self._seq, key))

    def _step(self) -> None:
        now = self._tick
        while self._heap and self._heap[0][0] <= now:
            _, kind, _, key = heapq.heappop(self._heap)
            if kind == _END:
                job = self._running.get(key)
                if job is not None and job.end_tick == now:  # else it already ended
                    self._finish(job, job.end_state)
            elif kind == _CANCEL:
                job = self._pending_job(key)
                if job is not None:  # a running job's cancel is its planned end
                    self._finish(job, JobState.CANCELLED)
            elif kind == _NODE_BACK:
                self._node_back(self._nodes[key])
            elif kind == _ELIGIBLE:
                job = self._pending_job(key)
                if job is not None:
                    job.eligible = True
                    self._fresh[key] = None
            else:
                self._finished.pop(key, None)
        if self._node_event_tick <= now:
            self._node_event()
        while math.ceil(self._arrival_at) <= now:
            self._submit()
            self._arrival_at += self._rng.expovariate(1.0 / self._mean_interarrival)
        self._schedule()

    def _pending_job(self, job_id: str) -> _Job | None:
        for queue in self._pending.values():
            if job_id in queue:
                return queue[job_id]
        return None

    # -- jobs -----------------------------------------------------------------

    def _submit(self) -> None:
        rng, now = self._rng, self._tick
        user = rng.choices(_USERS, weights=_USER_WEIGHTS)[0]
        if user.gpu_jobs and rng.random() < user.gpu_share:
            partition, name = "gpu", rng.choice(user.gpu_jobs)
            gpus = rng.choices(_GPU_CHOICES, weights=_GPU_WEIGHTS)[0]
            cpus = min(_GPU_NODE[0], gpus * rng.choice(_CPUS_PER_GPU))
            memory = gpus * rng.choice(_MEM_PER_GPU_MB)
        else:
            partition, name, gpus = "cpu", rng.choice(user.cpu_jobs), 0
            cpus = rng.choices(_CPU_CHOICES, weights=_CPU_WEIGHTS)[0]
            memory = min(_CPU_NODE[1], cpus * rng.choice(_MEM_PER_CPU_MB))
        if len(self._pending[partition]) >= self._max_pending[partition]:
            return
        runtime = round(math.exp(rng.uniform(*_LOG_RUNTIME_S)))
        outcome = rng.choices(_OUTCOMES, weights=_OUTCOME_WEIGHTS)[0]
        if outcome is JobState.FAILED:
            # Most failures (bad input, missing module) happen early in the run.
            runtime = max(5, round(runtime * rng.uniform(0.02, 1.0) ** 2))
        if outcome is JobState.TIMEOUT:
            # The user under-estimated: the planned runtime exceeds the limit.
            runtime = max(runtime, rng.randint(6 * 60, 3600))
            limit = max(m for m in _LIMITS_MIN if m * 60 < runtime)
        else:
            needed_min = runtime * rng.uniform(1.1, 3.0) / 60
            limit = next((m for m in _LIMITS_MIN if m >= needed_min), _LIMITS_MIN[-1])
        exit_code = rng.choice(_FAIL_CODES) if outcome is JobState.FAILED else 0
        cancel_delay = round(math.exp(rng.uniform(*_LOG_CANCEL_DELAY_S)))
        cancel_tick = now + cancel_delay if outcome is JobState.CANCELLED else _NEVER
        load = rng.uniform(0.7, 1.0)
        mem_use = 1.0 if outcome is JobState.OUT_OF_MEMORY else rng.uniform(0.25, 0.95)
        job_id = str(self._next_id)
        self._next_id += 1
        self._pending[partition][job_id] = _Job(
            job_id, name, user, partition, cpus, memory, gpus, limit, now,
            runtime, outcome, exit_code, cancel_tick, load, mem_use,
        )  # fmt: skip
        # Slurm looks at a new job on a later scheduling pass, not in the
        # submit call; this also makes every job observable as PENDING.
        self._push(now + 1, _ELIGIBLE, job_id)
        if cancel_tick != _NEVER:
            self._push(cancel_tick, _CANCEL, job_id)

    def _schedule(self) -> None:
        """FIFO first fit per partition, with one reservation against starvation.

        Incremental: a pending job that is not fresh failed to fit every node
        it may use at its last try, and only nodes in ``_dirty`` have gained
        room since, so it only tries those; fresh jobs try every node.

        Plain first fit starves wide jobs (small ones keep filling the holes),
        so once a partition's oldest job has waited ``_RESERVE_AFTER_S`` the
        emptiest node is kept for it until it starts, like the reservation
        Slurm's backfill scheduler makes for its top job.
        """
        while self._fresh or self._dirty:
            fresh, dirty_names = self._fresh, self._dirty
            self._fresh, self._dirty = {}, {}
            for partition, queue in self._pending.items():
                dirty = [
                    node
                    for name in dirty_names
                    if (node := self._nodes[name]).partition == partition
                    and node.available
                    and node.cpus_alloc < node.cpus
                ]
                if dirty:
                    jobs = list(queue.values())
                else:
                    jobs = [queue[job_id] for job_id in fresh if job_id in queue]
                for job in jobs:
                    if not job.eligible:
                        continue
                    reserved = self._reserved[partition]
                    kept = None if reserved is None or reserved[0] is job else reserved[1]
                    for node in self._partitions[partition] if job.job_id in fresh else dirty:
                        if node is not kept and node.fits(job):
                            self._start(job, node)
                            break
                self._reserve(partition)

    def _reserve(self, partition: str) -> None:
        head = next(iter(self._pending[partition].values()), None)
        if (
            head is None
            or self._reserved[partition] is not None
            or not head.eligible
            or self._tick - head.submit_tick < _RESERVE_AFTER_S
        ):
            return
        usable = [n for n in self._partitions[partition] if n.available]
        if usable:
            self._reserved[partition] = (head, max(usable, key=lambda n: n.cpus - n.cpus_alloc))

    def _release(
        self, partition: str, *, job: _Job | None = None, node: _Node | None = None
    ) -> None:
        """Drop the partition's reservation if ``job`` holds it or it is on ``node``."""
        reserved = self._reserved[partition]
        if reserved is not None and (reserved[0] is job or reserved[1] is node):
            self._reserved[partition] = None
            self._dirty[reserved[1].name] = None  # usable by every job again

    def _start(self, job: _Job, node: _Node) -> None:
        now = self._tick
        del self._pending[job.partition][job.job_id]
        self._release(job.partition, job=job)
        node.cpus_alloc += job.cpus
        node.mem_alloc += job.memory_mb
        node.gpus_alloc += job.gpus
        node.jobs[job.job_id] = job
        job.node, job.start_tick = node, now
        limit_end = now + job.time_limit_min * 60
        if job.outcome is JobState.CANCELLED:
            end, state = job.cancel_tick, JobState.CANCELLED
        elif job.outcome is JobState.TIMEOUT:
            end, state = limit_end, JobState.TIMEOUT
        else:
            end, state = now + job.runtime_s, job.outcome
        if end > limit_end:
            end, state = limit_end, JobState.TIMEOUT
        job.end_tick, job.end_state = end, state
        self._running[job.job_id] = job
        self._push(end, _END, job.job_id)

    def _finish(self, job: _Job, state: JobState) -> None:
        now = self._tick
        node = job.node
        if node is not None:
            del self._running[job.job_id], node.jobs[job.job_id]
            node.cpus_alloc -= job.cpus
            node.mem_alloc -= job.memory_mb
            node.gpus_alloc -= job.gpus
            self._dirty[node.name] = None
        else:
            del self._pending[job.partition][job.job_id]
            self._release(job.partition, job=job)
        job.end_tick = now
        code, signal = 0, None
        if state is JobState.FAILED:
            code = job.exit_code
        elif state is JobState.OUT_OF_MEMORY:
            signal = 9
        elif state is JobState.TIMEOUT or (state is JobState.CANCELLED and node is not None):
            signal = 15
        record = self._record(job, state, exit_code=code, exit_signal=signal, usage=_usage(job))
        self._finished[job.job_id] = self._archive[job.job_id] = record
        if len(self._archive) > self._archive_size:
            self._archive.popitem(last=False)
        self._push(now + self._min_job_age, _EXPIRE, job.job_id)

    def _record(
        self,
        job: _Job,
        state: JobState,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
        exit_signal: int | None = None,
        usage: JobUsage | None = None,
    ) -> JobRecord:
        origin = self._origin
        start = None if job.start_tick is None else origin + timedelta(seconds=job.start_tick)
        return JobRecord(
            job_id=job.job_id,
            name=job.name,
            user=job.user.name,
            partition=job.partition,
            state=state,
            nodes=() if job.node is None else (job.node.name,),
            cpus=job.cpus,
            memory_mb=job.memory_mb,
            gpus=job.gpus,
            submit_time=origin + timedelta(seconds=job.submit_tick),
            start_time=start,
            end_time=origin + timedelta(seconds=job.end_tick) if state.is_terminal else None,
            exit_code=exit_code,
            exit_signal=exit_signal,
            reason=reason,
            time_limit_min=job.time_limit_min,
            account=job.user.account,
            qos="normal",
            usage=usage,
        )

    # -- nodes ----------------------------------------------------------------

    def _draw_node_event_tick(self) -> int:
        rate = (self._drain_rate + self._down_rate) * len(self._nodes) / _DAY_S
        if rate <= 0:
            return _NEVER
        return self._tick + max(1, math.ceil(self._rng.expovariate(rate)))

    def _node_event(self) -> None:
        rng, now = self._rng, self._tick
        goes_down = rng.random() * (self._drain_rate + self._down_rate) < self._down_rate
        node = rng.choice(list(self._nodes.values()))
        reason = rng.choice(_DRAIN_REASONS)
        back_after = rng.randint(5 * 60, 45 * 60) if goes_down else rng.randint(15 * 60, 90 * 60)
        self._node_event_tick = self._draw_node_event_tick()
        out = sum(not n.available for n in self._partitions[node.partition])
        if not node.available or out >= self._max_out[node.partition]:
            return
        self._release(node.partition, node=node)
        if goes_down:
            node.down, node.reason = True, "Not responding"
            for job in list(node.jobs.values()):
                self._finish(job, JobState.NODE_FAIL)
        else:
            node.drain, node.reason = True, reason
        self._push(now + back_after, _NODE_BACK, node.name)

    def _node_back(self, node: _Node) -> None:
        if node.drain and node.jobs:
            # The admin waits for the node to empty before the maintenance.
            self._push(self._tick + 600, _NODE_BACK, node.name)
            return
        node.down = node.drain = False
        node.reason = None
        self._dirty[node.name] = None


def _usage(job: _Job) -> JobUsage:
    """What accounting would have measured: the job's planned load and memory use.

    Derived from draws made at submission, so recording it changes nothing in
    the simulation itself.
    """
    if job.start_tick is None:
        return JobUsage(
            elapsed_s=0, cpus=job.cpus, cpu_time_s=0.0, memory_requested_mb=job.memory_mb
        )
    elapsed = job.end_tick - job.start_tick
    return JobUsage(
        elapsed_s=elapsed,
        cpus=job.cpus,
        cpu_time_s=round(elapsed * job.cpus * job.load, 1),
        memory_requested_mb=job.memory_mb,
        memory_peak_mb=int(job.memory_mb * job.mem_use),
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _timestamp(wall_clock: Callable[[], datetime]) -> float:
    return wall_clock().timestamp()


class SimulatorSource:
    """A ``Source`` backed by a ``SimulatedCluster`` running ``speed`` times wall time.

    Simulated time is the wall time at construction plus the ``clock()``
    seconds elapsed since then, times ``speed``. ``jobs()`` and ``nodes()``
    first advance the cluster to that time; a catch-up longer than
    ``INLINE_TICKS`` runs in a worker thread so the event loop stays free.
    ``warmup_s`` simulated seconds run before the start so the first
    snapshot already shows a busy cluster.
    """

    kind = "simulator"

    def __init__(
        self,
        seed: int,
        speed: float = 1.0,
        nodes: int = 16,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
        warmup_s: int = 3600,
        min_job_age_s: int = 300,
        node_events_per_day: float = 0.3,
        start: datetime | None = None,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be a finite number > 0, got {speed}")
        self._seed = seed
        self._speed = float(speed)
        self._clock: Callable[[], float]
        if start is not None:
            # A fixed start: simulated time follows the wall clock from it, so
            # every process given the same seed and start sees the same cluster
            # at the same moment (instances taking over each other's polling).
            self._wall0 = start.astimezone(UTC)
            self._clock = partial(_timestamp, wall_clock)
            self._clock0 = self._wall0.timestamp()
        else:
            self._clock = clock
            self._clock0 = clock()
            self._wall0 = wall_clock().astimezone(UTC)
        # Two drains for every failure: admins drain nodes more often than nodes die.
        self._cluster = SimulatedCluster(
            seed,
            self._wall0,
            nodes,
            min_job_age_s=min_job_age_s,
            warmup_s=warmup_s,
            drains_per_node_day=node_events_per_day * 2 / 3,
            downs_per_node_day=node_events_per_day / 3,
        )
        self._lock = asyncio.Lock()
        self._catch_up: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def cluster(self) -> SimulatedCluster:
        """The simulated cluster (for tests and tooling)."""
        return self._cluster

    def sim_now(self) -> datetime:
        """The simulated time for the current ``clock()`` reading."""
        return self._wall0 + timedelta(seconds=(self._clock() - self._clock0) * self._speed)

    async def start(self) -> None:
        """Nothing to detect: the simulator is always ready."""
        self._check_open()

    async def jobs(self) -> JobsSnapshot:
        """Advance to the current simulated time, then list the jobs."""
        async with self._lock:
            await self._advance()
            return self._cluster.jobs_snapshot()

    async def nodes(self) -> NodesSnapshot:
        """Advance to the current simulated time, then list the nodes."""
        async with self._lock:
            await self._advance()
            return self._cluster.nodes_snapshot()

    async def final_states(
        self, jobs: Mapping[str, JobRecord], since: datetime
    ) -> Mapping[str, JobRecord]:
        """The archived final records of those jobs (the archive needs no ``since``)."""
        async with self._lock:
            self._check_open()
            await self._wait_catch_up()
            records = {job_id: self._cluster.final_record(job_id) for job_id in jobs}
            return {job_id: r for job_id, r in records.items() if r is not None}

    @property
    def accounting_answers(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        """Kind, seed, speed, node count and the cluster's simulated time."""
        return {
            "kind": self.kind,
            "seed": self._seed,
            "speed": self._speed,
            "nodes": self._cluster.node_count,
            "sim_time": self._cluster.now.isoformat(),
        }

    async def close(self) -> None:
        """Refuse further calls (they raise ``SourceError``)."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise SourceError("simulator source is closed")

    async def _wait_catch_up(self) -> None:
        # A caller cancelled (say by a poll timeout) while a thread advanced
        # releases the lock, but the thread runs on: never touch the cluster
        # before it is done.
        if self._catch_up is not None:
            try:
                await asyncio.shield(self._catch_up)
            finally:
                if self._catch_up.done():
                    self._catch_up = None

    async def _advance(self) -> None:
        self._check_open()
        try:
            await self._wait_catch_up()
            target = self.sim_now()
            if self._cluster.ticks_until(target) > INLINE_TICKS:
                self._catch_up = asyncio.ensure_future(
                    asyncio.to_thread(self._cluster.advance_to, target)
                )
                await self._wait_catch_up()
            else:
                self._cluster.advance_to(target)
        except Exception as exc:  # the Source contract: only SourceError escapes
            raise SourceError(f"simulator failed to advance: {exc}") from exc
