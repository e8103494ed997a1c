"""A deterministic, pure simulation of a small Slurm cluster: ``SimulatedCluster``.

No asyncio, no clock reads, no I/O. Its state at simulated time T depends only
on its parameters (seed, start, tunables) and T, never on how often or in what
steps it was advanced. Time moves in whole 1-second ticks; every event
(arrival, job end, node change) happens on a tick, and ticks where nothing
happens are skipped, which is the same as running them: an idle tick draws no
random number and changes nothing.

Exit codes follow ``sacct``'s ``ExitCode`` (``code:signal``): COMPLETED 0,
FAILED 1/2/127/137/139, TIMEOUT 0 with signal 15 (SIGTERM at the limit),
CANCELLED while running 0 with signal 15, CANCELLED while pending 0 and no
signal (it never ran), NODE_FAIL 0 and no signal, OUT_OF_MEMORY 0 with signal
9 (the OOM killer's SIGKILL; real ``sacct`` prints ``0:125`` there, a
Slurm-internal marker rather than a signal).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Final

from slurmcast.core.records import (
    JobRecord,
    JobsListing,
    JobState,
    NodesListing,
)
from slurmcast.sources.simulator.model import (
    CPU_NODE,
    GPU_NODE,
    NEVER,
    Job,
    Node,
    job_record,
    job_usage,
    node_record,
)
from slurmcast.sources.simulator.workload import draw_job, draw_request

MIN_NODES: Final = 8
MAX_NODES: Final = 32

_DAY_S: Final = 86_400
_ONE_SECOND: Final = timedelta(seconds=1)
# Heap event kinds; the number is also the processing order within a tick.
_END, _CANCEL, _NODE_BACK, _ELIGIBLE, _EXPIRE = range(5)

_RESERVE_AFTER_S: Final = 600

_DRAIN_REASONS: Final = (
    "kernel update", "DIMM errors, replace memory", "InfiniBand link flapping",
    "firmware upgrade", "disk health check", "GPU ECC errors",
)  # fmt: skip


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
        self._nodes: dict[str, Node] = {}
        self._partitions: dict[str, list[Node]] = {"cpu": [], "gpu": []}
        for i in range(nodes):
            partition = "cpu" if i < nodes - gpu_nodes else "gpu"
            cpus, mem, gpus = CPU_NODE if partition == "cpu" else GPU_NODE
            node = Node(f"node{i + 1:03d}", partition, cpus, mem, gpus)
            self._nodes[node.name] = node
            self._partitions[partition].append(node)
        share = {p: len(ns) / nodes for p, ns in self._partitions.items()}
        self._max_pending = {p: max(1, int(max_pending * s)) for p, s in share.items()}
        # Never take more than a quarter of a partition (and at least one node) out.
        self._max_out = {p: max(1, len(ns) // 4) for p, ns in self._partitions.items()}

        self._next_id = 1000
        self._seq = 0
        self._heap: list[tuple[int, int, int, str]] = []
        self._pending: dict[str, dict[str, Job]] = {p: {} for p in self._partitions}
        self._running: dict[str, Job] = {}
        self._reserved: dict[str, tuple[Job, Node] | None] = dict.fromkeys(self._partitions)
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
                self._heap[0][0] if self._heap else NEVER,
                math.ceil(self._arrival_at),
                self._node_event_tick,
            )
            if nxt > target:
                break
            self._tick = max(self._tick, nxt)
            self._step()
        self._tick = max(self._tick, target)

    def jobs_snapshot(self) -> JobsListing:
        """Pending, running and recently finished jobs, keyed by job id."""
        origin = self._origin
        records: list[JobRecord] = []
        for queue in self._pending.values():
            # As in Slurm: the first job waiting in a partition waits for
            # Resources, those queued behind it for Priority.
            for i, job in enumerate(queue.values()):
                reason = "Priority" if i else "Resources"
                records.append(job_record(job, JobState.PENDING, origin, reason=reason))
        records.extend(job_record(job, JobState.RUNNING, origin) for job in self._running.values())
        records.extend(self._finished.values())
        records.sort(key=lambda r: int(r.job_id))
        return JobsListing(taken_at=self.now, jobs={r.job_id: r for r in records})

    def nodes_snapshot(self) -> NodesListing:
        """Every node with its sinfo-style display state, keyed by node name."""
        nodes = {name: node_record(node) for name, node in self._nodes.items()}
        return NodesListing(taken_at=self.now, nodes=nodes)

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

    def _pending_job(self, job_id: str) -> Job | None:
        for queue in self._pending.values():
            if job_id in queue:
                return queue[job_id]
        return None

    # -- jobs -----------------------------------------------------------------

    def _submit(self) -> None:
        request = draw_request(self._rng)
        if len(self._pending[request.partition]) >= self._max_pending[request.partition]:
            return
        job_id = str(self._next_id)
        self._next_id += 1
        job = draw_job(self._rng, request, job_id, self._tick)
        self._pending[job.partition][job_id] = job
        # Slurm looks at a new job on a later scheduling pass, not in the
        # submit call; this also makes every job observable as PENDING.
        self._push(job.submit_tick + 1, _ELIGIBLE, job_id)
        if job.cancel_tick != NEVER:
            self._push(job.cancel_tick, _CANCEL, job_id)

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

    def _release(self, partition: str, *, job: Job | None = None, node: Node | None = None) -> None:
        """Drop the partition's reservation if ``job`` holds it or it is on ``node``."""
        reserved = self._reserved[partition]
        if reserved is not None and (reserved[0] is job or reserved[1] is node):
            self._reserved[partition] = None
            self._dirty[reserved[1].name] = None  # usable by every job again

    def _start(self, job: Job, node: Node) -> None:
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

    def _finish(self, job: Job, state: JobState) -> None:
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
        record = job_record(
            job, state, self._origin, exit_code=code, exit_signal=signal, usage=job_usage(job)
        )
        self._finished[job.job_id] = self._archive[job.job_id] = record
        if len(self._archive) > self._archive_size:
            self._archive.popitem(last=False)
        self._push(now + self._min_job_age, _EXPIRE, job.job_id)

    # -- nodes ----------------------------------------------------------------

    def _draw_node_event_tick(self) -> int:
        rate = (self._drain_rate + self._down_rate) * len(self._nodes) / _DAY_S
        if rate <= 0:
            return NEVER
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

    def _node_back(self, node: Node) -> None:
        if node.drain and node.jobs:
            # The admin waits for the node to empty before the maintenance.
            self._push(self._tick + 600, _NODE_BACK, node.name)
            return
        node.down = node.drain = False
        node.reason = None
        self._dirty[node.name] = None
