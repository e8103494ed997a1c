"""What the simulated users submit: who, to which partition, how big, and how each job will end.

A submission is drawn in two steps because the cluster drops it between them
when the partition's pending queue is full: ``draw_request`` (the user and the
resources asked for), then ``draw_job`` (the hidden plan: runtime, outcome,
limit). The order of the draws is part of the simulation's determinism.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from slurmcast.core.records import JobState
from slurmcast.sources.simulator.model import CPU_NODE, GPU_NODE, NEVER, Job, User

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

_USERS: Final = (
    User("alice", "ml", 3, 0.12, ("preprocess", "jupyter"), ("train_resnet", "finetune_llm")),
    User("bob", "genomics", 3, 0.0, ("bwa_align", "gatk_call", "samtools_sort", "fastqc")),
    User("carol", "chemistry", 2, 0.04, ("md_sim", "gaussian_opt"), ("gromacs_md",)),
    User("dave", "climate", 2, 0.0, ("wrf_run", "cdo_regrid", "postproc")),
    User("erin", "ml", 2, 0.10, ("jupyter", "data_prep"), ("train_vit", "eval_bert")),
    User("frank", "engineering", 1.5, 0.02, ("openfoam_cfd", "mesh_gen"), ("cuda_solver",)),
    User("grace", "astro", 1.5, 0.03, ("gadget_nbody", "healpix_map"), ("gpu_fft",)),
    User("heidi", "stats", 1, 0.0, ("r_bootstrap", "stan_mcmc", "jupyter")),
)
_USER_WEIGHTS: Final = tuple(u.weight for u in _USERS)


@dataclass(frozen=True, slots=True)
class Request:
    """A submission before its plan is drawn: who asks for what, where."""

    user: User
    partition: str
    name: str
    cpus: int
    memory_mb: int
    gpus: int


def draw_request(rng: random.Random) -> Request:
    """The next submission's user, partition, job name and resources."""
    user = rng.choices(_USERS, weights=_USER_WEIGHTS)[0]
    if user.gpu_jobs and rng.random() < user.gpu_share:
        partition, name = "gpu", rng.choice(user.gpu_jobs)
        gpus = rng.choices(_GPU_CHOICES, weights=_GPU_WEIGHTS)[0]
        cpus = min(GPU_NODE[0], gpus * rng.choice(_CPUS_PER_GPU))
        memory = gpus * rng.choice(_MEM_PER_GPU_MB)
    else:
        partition, name, gpus = "cpu", rng.choice(user.cpu_jobs), 0
        cpus = rng.choices(_CPU_CHOICES, weights=_CPU_WEIGHTS)[0]
        memory = min(CPU_NODE[1], cpus * rng.choice(_MEM_PER_CPU_MB))
    return Request(user, partition, name, cpus, memory, gpus)


def draw_job(rng: random.Random, request: Request, job_id: str, now: int) -> Job:
    """The pending job for ``request`` submitted at tick ``now``, with its hidden plan."""
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
    cancel_tick = now + cancel_delay if outcome is JobState.CANCELLED else NEVER
    load = rng.uniform(0.7, 1.0)
    mem_use = 1.0 if outcome is JobState.OUT_OF_MEMORY else rng.uniform(0.25, 0.95)
    r = request
    return Job(
        job_id, r.name, r.user, r.partition, r.cpus, r.memory_mb, r.gpus, limit, now,
        runtime, outcome, exit_code, cancel_tick, load, mem_use,
    )  # fmt: skip
