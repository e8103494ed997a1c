"""Why a job waits: Slurm's reason codes told in words a cluster user understands.

Slurm gives a pending job one reason code (``Priority``, ``QOSMaxJobsPerUserLimit``)
and, once a job ends, sometimes the reason it ended (``TimeLimit``). This module
turns a code into one or two short clauses, with the specifics the job record
carries: the partition, QOS, account, dependency, reservation, unavailable
nodes, forecast start and the command that helps where there is one.

About three quarters of Slurm's codes are accounting limits named by a pattern
(owner, Grp/Max/Min, resource, time, scope): they are parsed, not listed, so
every spelling Slurm has used since 20.11 reads the same. The rest are fixed
codes with a hand-written template each.

Longer than ~400 lines on purpose: one short template per fixed Slurm reason code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from slurmcast.core.records import JobRecord, JobState
from slurmcast.core.timefmt import format_duration

# Fixed codes. Fields: {job_id} {partition} {qos} {account} {reservation} are
# phrases that read well in any position ("QOS normal" or "the QOS");
# {dependency} {nodes} {time_limit} are parenthetical fragments, empty when
# unknown; {begin} is a whole clause. See _Words.
_TEMPLATES: Final[Mapping[str, str]] = {
    # Waiting for the scheduler or for resources.
    "Priority": (
        "Jobs with a higher priority are ahead of this job in {partition}; "
        "it starts when its turn comes."
    ),
    "Resources": (
        "The job waits for enough CPUs, memory, GPUs or nodes to become free in {partition}."
    ),
    "WaitingForScheduling": (
        "The scheduler has not looked at the job yet; it waits for the next scheduling pass."
    ),
    "Prolog": "The job waits for its prolog script to finish before it starts.",
    "Cleaning": "The job was requeued and waits for its previous run to finish cleaning up.",
    "Licenses": "The job waits for the licenses it asked for to become free.",
    "BeginTime": "The job has a begin time that has not come yet; {begin}.",
    "Dependency": (
        "The job waits for the jobs it depends on{dependency} to reach the required state."
    ),
    "DependencyNeverSatisfied": (
        "The job's dependency{dependency} can never be satisfied, so it will never start; "
        "cancel it or change the dependency."
    ),
    "JobArrayTaskLimit": (
        "The job array already runs as many tasks as its limit allows; "
        "this task starts when another one ends."
    ),
    "ReqNodeNotAvail": (
        "Nodes the job needs are down, drained or reserved{nodes}; "
        "it waits until they are available again."
    ),
    "FrontEndDown": "No front-end node is up to launch the job; it waits until one is back.",
    "FedJobLock": "The job waits for the other clusters of the federation to let it start here.",
    "MaxPoweredUpNodes": (
        "Starting the job would power up more nodes than the cluster allows at once; "
        "it waits until others power down."
    ),
    "MpiPortsBusy": (
        "All the ports Slurm reserves for MPI are in use; the job starts when some free up."
    ),
    "PowerNotAvail": (
        "The cluster's power cap leaves too little power for the job; it waits for more."
    ),
    "PowerReserved": (
        "The power the job needs is reserved for other jobs; it waits until some frees up."
    ),
    "BlockMaxError": (
        "The compute block the job needs has too many errors; it waits until it is fixed."
    ),
    "BlockFreeAction": "The job waits for a compute block to be freed.",
    "BurstBufferResources": "The job waits for burst buffer space to become free.",
    "BurstBufferStageIn": (
        "The job's files are being staged in to the burst buffer; it starts after that."
    ),
    # Partition.
    "PartitionDown": "{partition} is down; the job waits until an administrator brings it back up.",
    "PartitionInactive": (
        "{partition} is inactive; the job waits until an administrator reactivates it."
    ),
    "PartitionNodeLimit": (
        "The job's node count is outside what {partition} allows, "
        "or nodes it needs are down or drained."
    ),
    "PartitionTimeLimit": (
        "The job's time limit{time_limit} is longer than {partition} allows; "
        "lower it with `scontrol update JobId={job_id} TimeLimit=<new limit>` or it will not start."
    ),
    "PartitionConfig": (
        "The job's request does not fit the configuration of {partition}; "
        "change the request or the partition."
    ),
    "MaxMemPerLimit": (
        "The job asks for more memory per CPU or per node than {partition} allows; "
        "it will not start unless the request is reduced."
    ),
    # Holds.
    "JobHeldUser": (
        "The job is on hold at its owner's request; release it with `scontrol release {job_id}`."
    ),
    "JobHeldAdmin": (
        "An administrator has put the job on hold; only an administrator can release it."
    ),
    "JobHoldMaxRequeue": (
        "The job was requeued too many times and is on hold; "
        "fix the cause, then release it with `scontrol release {job_id}`."
    ),
    "launch failed requeued held": (
        "Slurm could not launch the job, so it requeued it on hold; "
        "release it with `scontrol release {job_id}` or ask an administrator."
    ),
    # Reservations.
    "Reservation": "The job waits for {reservation} to start or to have free nodes.",
    "ReservationDeleted": (
        "{reservation} was deleted, so the job is on hold; "
        "ask an administrator or release it with `scontrol release {job_id}`."
    ),
    "ReservationInvalid": (
        "{reservation} is invalid or not open to this job; "
        "change or remove the reservation or it will not start."
    ),
    # Accounting limits without a resource in their name.
    "AccountingPolicy": "An accounting limit holds the job; it starts when the limit allows it.",
    "AssociationJobLimit": (
        "The jobs of {account} have reached the account's job limit; "
        "this job starts when some of them end."
    ),
    "AssociationResourceLimit": (
        "The running jobs of {account} have reached the account's resource limit; "
        "this job starts when some of them finish."
    ),
    "AssociationTimeLimit": (
        "{account} has reached its time limit; "
        "the job waits until usage decays or an administrator raises the limit."
    ),
    "QOSJobLimit": (
        "The jobs in {qos} have reached the QOS's job limit; this job starts when some of them end."
    ),
    "QOSResourceLimit": (
        "The running jobs in {qos} have reached the QOS's resource limit; "
        "this job starts when some of them finish."
    ),
    "QOSTimeLimit": (
        "{qos} has reached its time limit; "
        "the job waits until usage decays or an administrator raises the limit."
    ),
    "QOSUsageThreshold": (
        "The fair-share of {account} has fallen below the minimum {qos} allows; "
        "the job waits until the account's usage decays."
    ),
    "QOSNotAllowed": (
        "{qos} is not allowed for the job's account or partition; "
        "change the QOS or the job will not start."
    ),
    "AccountNotAllowed": (
        "{account} may not use {partition}; change the account or the partition "
        "or the job will not start."
    ),
    "InvalidAccount": (
        "{account} is invalid or not open to you, so the job cannot run; use a valid account."
    ),
    "InvalidQOS": "{qos} is invalid or not open to you, so the job cannot run; use a valid QOS.",
    # Why a job ended or cannot run at all.
    "NonZeroExitCode": "The job ended with a non-zero exit code.",
    "RaisedSignal": "The job was ended by a signal.",
    "TimeLimit": "The job reached its time limit{time_limit} and was stopped.",
    "OutOfMemory": "The job used more memory than it asked for and was stopped.",
    "NodeDown": "A node allocated to the job went down.",
    "JobLaunchFailure": "Slurm could not launch the job on its nodes.",
    "SystemFailure": (
        "A system failure, not the job itself, ended the job or kept it from starting."
    ),
    "BadConstraints": (
        "The job's constraints can never be met by the nodes it may use, so it cannot run."
    ),
    "Constraints": "The job's constraints could not be met, so it cannot run.",
    "DeadLine": "The job could not finish before its deadline, so Slurm ended it.",
    "InactiveLimit": (
        "The job's srun or salloc was unresponsive for too long, so Slurm ended the job."
    ),
    "BurstBufferOperation": "A burst buffer operation for the job failed.",
    "SchedDefer": (
        "The job asked to start immediately, but the scheduler defers new jobs; it cannot run now."
    ),
}

# ReqNodeNotAvail because a maintenance reservation starts before the job's time
# limit would end: a shorter time limit is the user's way out, so say so.
_MAINTENANCE: Final = (
    "Nodes the job needs are reserved for maintenance{nodes}; it waits until the maintenance "
    "ends, unless a shorter time limit lets it finish before the maintenance starts."
)

_BY_KEY: Final[Mapping[str, str]] = {code.casefold(): code for code in _TEMPLATES}

_UNAVAILABLE_NODES: Final = re.compile(r"UnavailableNodes:([^\s)]+)", re.IGNORECASE)

# (Assoc|Association|QOS)?(Grp|Max|Min)<Resource>(Minutes|RunMinutes)?(Per...)?(Limit|NotSatisfied)?
# Slurm's capitalisation is inconsistent (Cpu/CPU, Mins/Minutes), so match without case.
_LIMIT: Final = re.compile(
    r"(?P<owner>assoc(?:iation)?|qos)?"
    r"(?P<kind>grp|max|min)"
    r"(?P<resource>submitjobs?|jobs?|cpus?|mem(?:ory)?|nodes?|wall(?:duration)?"
    r"|gres|license|bb|energy|billing|unknown)"
    r"(?P<time>runmin(?:ute)?s|min(?:ute)?s)?"
    r"(?:per(?P<scope>job|node|user|account|acct))?"
    r"(?:limit|notsatisfied)?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class _Resource:
    noun: str  # what the limit counts, as the user would call it
    plural: bool  # "CPUs have", "memory has"
    minutes: str  # the unit of a usage (resource x time) limit


# Keyed by stem, in matching order: "submitjob" before "job" (SubmitJobs, Jobs, Job).
_RESOURCES: Final[Mapping[str, _Resource]] = {
    "submitjob": _Resource("submitted jobs", True, "job-minutes"),
    "cpu": _Resource("CPUs", True, "CPU-minutes"),
    "mem": _Resource("memory", False, "memory-minutes"),
    "node": _Resource("nodes", True, "node-minutes"),
    "job": _Resource("running jobs", True, "job-minutes"),
    "wall": _Resource("run time", False, "run time"),
    "gres": _Resource("GPUs or other GRES", True, "GPU/GRES-minutes"),
    "license": _Resource("licenses", True, "license-minutes"),
    "bb": _Resource("burst buffer space", False, "burst-buffer-minutes"),
    "energy": _Resource("energy", False, "energy-minutes"),
    "billing": _Resource("billing units", True, "billing-minutes"),
    "unknown": _Resource("resources of an unknown type", True, "resource-minutes"),
}


@dataclass(frozen=True, slots=True)
class _Words:
    """The specifics of one job, each already phrased for a sentence."""

    job_id: str
    partition: str
    qos: str
    account: str
    reservation: str
    dependency: str
    nodes: str
    time_limit: str
    begin: str


def _named(kind: str, name: str | None) -> str:
    # Unnamed, the job's own account/QOS/... is simply "the account": the job is the subject.
    name = (name or "").strip()
    return f"{kind} {name}" if name else f"the {kind}"


def _words(job: JobRecord) -> _Words:
    detail = job.reason_detail or ""
    found = _UNAVAILABLE_NODES.search(detail)
    nodes = found.group(1).rstrip(",") if found else ""
    dependency = (job.dependency or "").strip()
    limit = format_duration(job.time_limit_min * 60) if job.time_limit_min else None
    start = job.expected_start_time
    return _Words(
        # A missing id reads as the placeholder a user substitutes in the command.
        job_id=job.job_id.strip() or "<job_id>",
        partition=_named("partition", job.partition),
        qos=_named("QOS", job.qos),
        account=_named("account", job.account),
        reservation=_named("reservation", job.reservation),
        dependency=f' ("{dependency}")' if dependency else "",
        nodes=f" ({nodes})" if nodes else "",
        time_limit=f" ({limit})" if limit else "",
        begin=(
            f"the scheduler expects it to start at {_utc_minute(start)}"
            if start is not None
            else "it waits until then"
        ),
    )


# A job with no specifics at all: what the summaries for documentation are made of.
_NO_WORDS: Final = _words(
    JobRecord(job_id="", name="", user="", partition="", state=JobState.PENDING)
)


def _utc_minute(moment: datetime) -> str:
    # Naive datetimes are UTC already, as everywhere in the snapshot model.
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _sentence(text: str) -> str:
    # Phrases such as "account physics" or "the QOS" may open a sentence.
    return text[:1].upper() + text[1:]


def _render(template: str, words: _Words) -> str:
    return _sentence(template.format(**asdict(words)))


#: For documentation: what each fixed (non-limit) code means, without a job's specifics.
REASON_SUMMARIES: Final[Mapping[str, str]] = MappingProxyType(
    {code: _render(template, _NO_WORDS) for code, template in _TEMPLATES.items()}
)


#: States of a job that has not started: its reason says why it waits.
_WAITING: Final = frozenset(
    {JobState.PENDING, JobState.REQUEUE_HOLD, JobState.REQUEUE_FED, JobState.RESV_DEL_HOLD}
)
#: Codes that tell why a job ended or cannot run at all, the only ones worth a
#: sentence once a job has started or finished. A job cancelled while waiting
#: keeps its last waiting reason (Priority), which would read as if it still waited.
_ENDING: Final = frozenset(
    code.casefold()
    for code in (
        "NonZeroExitCode", "RaisedSignal", "TimeLimit", "OutOfMemory", "NodeDown",
        "JobLaunchFailure", "SystemFailure", "BadConstraints", "Constraints", "InvalidAccount",
        "InvalidQOS", "DeadLine", "InactiveLimit", "BurstBufferOperation", "SchedDefer",
    )
)  # fmt: skip


def explain_reason(job: JobRecord) -> str | None:
    """A sentence saying why the job waits (or, for a finished job, why it ended the way it did).

    None when ``job.reason`` is None or ``"None"``, and for a job that has
    started or ended when its code is a waiting reason (it no longer waits). A
    code Slurm adds later and that fits no rule comes back unchanged: the code
    itself is still the best thing we can show.
    """
    if job.reason is None:
        return None
    code = job.reason.strip()
    if not code or code.casefold() == "none":
        return None
    if job.state not in _WAITING and code.casefold() not in _ENDING:
        return None
    words = _words(job)
    known = _BY_KEY.get(code.casefold())
    detail = (job.reason_detail or "").lower()
    if known == "ReqNodeNotAvail" and "reserved for maintenance" in detail:
        return _render(_MAINTENANCE, words)
    if known is not None:
        return _render(_TEMPLATES[known], words)
    parsed = _LIMIT.fullmatch(code)
    if parsed is None:
        return code
    return _sentence(_limit_sentence(parsed, words))


def _limit_sentence(parsed: re.Match[str], words: _Words) -> str:
    """The sentence for a code of the limit grammar."""
    by_account = (parsed["owner"] or "").lower().startswith("assoc")
    # Without an owner prefix (MaxJobsPerAccount, MaxCpuRunMinsPerUser) the limit is a QOS's.
    owner, owner_kind = (words.account, "account") if by_account else (words.qos, "QOS")
    members = f"of {owner}" if by_account else f"in {owner}"
    kind = parsed["kind"].lower()
    key = next(stem for stem in _RESOURCES if parsed["resource"].lower().startswith(stem))
    resource = _RESOURCES[key]
    time = (parsed["time"] or "").lower()
    usage = "run" if time.startswith("run") else "total" if time else ""
    scope = (parsed["scope"] or "").lower().replace("acct", "account")

    if kind == "min":
        fewer = "fewer" if resource.plural else "less"
        return (
            f"The job asks for {fewer} {resource.noun} than {owner} requires per job; "
            "it will not start unless the request is increased."
        )

    if kind == "grp":
        if usage == "total" or key == "wall":
            allowance = resource.minutes if usage else "run-time"
            return (
                f"{owner} has used up its {allowance} allowance; "
                "the job waits until usage decays or an administrator raises the limit."
            )
        if usage == "run":
            return (
                f"The remaining run time of running jobs {members}, in {resource.minutes}, has "
                f"reached the {owner_kind}'s limit; this job starts as they progress and finish."
            )
        if key == "job":
            return (
                f"The running jobs {members} have reached the {owner_kind}'s limit on running "
                "jobs; this job starts when one of them ends."
            )
        if key == "submitjob":
            return (
                f"The submitted jobs {members} have reached the {owner_kind}'s limit on "
                "submitted jobs; this job waits until some of them end."
            )
        have = "have" if resource.plural else "has"
        return (
            f"The {resource.noun} in use by all running jobs {members} {have} reached the "
            f"{owner_kind}'s limit; this job starts when some of them finish."
        )

    # Max. Without a scope, a count of jobs is a per-user limit (an association is
    # one user in one account) and anything else a per-job one.
    if not scope:
        scope = "user" if key in ("job", "submitjob") else "job"
    if scope in ("user", "account"):
        if scope == "user":
            holder, running = "you already have", "your running jobs"
        else:
            holder, running = f"{words.account} already has", f"the running jobs of {words.account}"
        if key == "job":
            return (
                f"{holder} as many running jobs as {owner} allows per {scope}; "
                "this job starts when one of them ends."
            )
        if key == "submitjob":
            return (
                f"{holder} as many jobs submitted as {owner} allows per {scope}; "
                "this job waits until some of them end."
            )
        if usage:
            return (
                f"The remaining run time of {running}, in {resource.minutes}, has reached what "
                f"{owner} allows per {scope}; this job starts as they progress and finish."
            )
        return (
            f"{running} already use all the {resource.noun} {owner} allows per {scope}; "
            "this job starts when some of them finish."
        )
    if scope == "node":
        return (
            f"The job asks for more {resource.noun} per node than {owner} allows; "
            "it will not start unless the request is reduced."
        )
    if key == "wall":
        return (
            f"The job's time limit{words.time_limit} is longer than {owner} allows per job; "
            f"lower it with `scontrol update JobId={words.job_id} TimeLimit=<new limit>` "
            "or it will not start."
        )
    if usage:
        return (
            f"The job's request times its time limit exceeds the {resource.minutes} {owner} "
            "allows per job; it will not start unless either is reduced."
        )
    return (
        f"The job asks for more {resource.noun} than {owner} allows per job; "
        "it will not start unless the request is reduced."
    )
