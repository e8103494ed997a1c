"""Reason codes explained: every code Slurm has used, the specifics, the limit grammar."""

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from slurmcast.core.reasons import REASON_SUMMARIES, explain_reason
from slurmcast.core.records import JobState

from support.builders import job

# Slurm's src/common/job_state_reason.c (25.x), names only.
# fmt: off
CURRENT_CODES = (
    "None", "Prolog", "Priority", "Dependency", "Resources", "PartitionNodeLimit",
    "PartitionTimeLimit", "PartitionDown", "PartitionInactive", "JobHeldAdmin", "JobHeldUser",
    "BeginTime", "Licenses", "AssociationJobLimit", "AssociationResourceLimit",
    "AssociationTimeLimit", "Reservation", "ReqNodeNotAvail", "FrontEndDown", "SchedDefer",
    "NodeDown", "BadConstraints", "SystemFailure", "JobLaunchFailure", "NonZeroExitCode",
    "RaisedSignal", "TimeLimit", "InactiveLimit", "InvalidAccount", "InvalidQOS",
    "QOSUsageThreshold", "QOSJobLimit", "QOSResourceLimit", "QOSTimeLimit", "Cleaning",
    "QOSNotAllowed", "AccountNotAllowed", "DependencyNeverSatisfied", "QOSGrpCpuLimit",
    "QOSGrpCPUMinutesLimit", "QOSGrpCPURunMinutesLimit", "QOSGrpJobsLimit", "QOSGrpMemLimit",
    "QOSGrpNodeLimit", "QOSGrpSubmitJobsLimit", "QOSGrpWallLimit", "QOSMaxCpuPerJobLimit",
    "QOSMaxCpuMinutesPerJobLimit", "QOSMaxNodePerJobLimit", "QOSMaxWallDurationPerJobLimit",
    "QOSMaxCpuPerUserLimit", "QOSMaxJobsPerUserLimit", "QOSMaxNodePerUserLimit",
    "QOSMaxSubmitJobPerUserLimit", "QOSMinCpuNotSatisfied", "AssocGrpCpuLimit",
    "AssocGrpCPUMinutesLimit", "AssocGrpCPURunMinutesLimit", "AssocGrpJobsLimit",
    "AssocGrpMemLimit", "AssocGrpNodeLimit", "AssocGrpSubmitJobsLimit", "AssocGrpWallLimit",
    "AssocMaxJobsLimit", "AssocMaxCpuPerJobLimit", "AssocMaxCpuMinutesPerJobLimit",
    "AssocMaxNodePerJobLimit", "AssocMaxWallDurationPerJobLimit", "AssocMaxSubmitJobLimit",
    "JobHoldMaxRequeue", "JobArrayTaskLimit", "BurstBufferResources", "BurstBufferStageIn",
    "BurstBufferOperation", "AssocGrpUnknown", "AssocGrpUnknownMinutes",
    "AssocGrpUnknownRunMinutes", "AssocMaxUnknownPerJob", "AssocMaxUnknownPerNode",
    "AssocMaxUnknownMinutesPerJob", "AssocMaxCpuPerNode", "AssocGrpMemMinutes",
    "AssocGrpMemRunMinutes", "AssocMaxMemPerJob", "AssocMaxMemPerNode", "AssocMaxMemMinutesPerJob",
    "AssocGrpNodeMinutes", "AssocGrpNodeRunMinutes", "AssocMaxNodeMinutesPerJob", "AssocGrpEnergy",
    "AssocGrpEnergyMinutes", "AssocGrpEnergyRunMinutes", "AssocMaxEnergyPerJob",
    "AssocMaxEnergyPerNode", "AssocMaxEnergyMinutesPerJob", "AssocGrpGRES", "AssocGrpGRESMinutes",
    "AssocGrpGRESRunMinutes", "AssocMaxGRESPerJob", "AssocMaxGRESPerNode",
    "AssocMaxGRESMinutesPerJob", "AssocGrpLicense", "AssocGrpLicenseMinutes",
    "AssocGrpLicenseRunMinutes", "AssocMaxLicensePerJob", "AssocMaxLicenseMinutesPerJob",
    "AssocGrpBB", "AssocGrpBBMinutes", "AssocGrpBBRunMinutes", "AssocMaxBBPerJob",
    "AssocMaxBBPerNode", "AssocMaxBBMinutesPerJob", "QOSGrpUnknown", "QOSGrpUnknownMinutes",
    "QOSGrpUnknownRunMinutes", "QOSMaxUnknownPerJob", "QOSMaxUnknownPerNode",
    "QOSMaxUnknownPerUser", "QOSMaxUnknownMinutesPerJob", "QOSMinUnknown", "QOSMaxCpuPerNode",
    "QOSGrpMemoryMinutes", "QOSGrpMemoryRunMinutes", "QOSMaxMemoryPerJob", "QOSMaxMemoryPerNode",
    "QOSMaxMemoryPerUser", "QOSMaxMemoryMinutesPerJob", "QOSMinMemory", "QOSGrpNodeMinutes",
    "QOSGrpNodeRunMinutes", "QOSMaxNodeMinutesPerJob", "QOSMinNode", "QOSGrpEnergy",
    "QOSGrpEnergyMinutes", "QOSGrpEnergyRunMinutes", "QOSMaxEnergyPerJob", "QOSMaxEnergyPerNode",
    "QOSMaxEnergyPerUser", "QOSMaxEnergyMinutesPerJob", "QOSMinEnergy", "QOSGrpGRES",
    "QOSGrpGRESMinutes", "QOSGrpGRESRunMinutes", "QOSMaxGRESPerJob", "QOSMaxGRESPerNode",
    "QOSMaxGRESPerUser", "QOSMaxGRESMinutesPerJob", "QOSMinGRES", "QOSGrpLicense",
    "QOSGrpLicenseMinutes", "QOSGrpLicenseRunMinutes", "QOSMaxLicensePerJob",
    "QOSMaxLicensePerUser", "QOSMaxLicenseMinutesPerJob", "QOSMinLicense", "QOSGrpBB",
    "QOSGrpBBMinutes", "QOSGrpBBRunMinutes", "QOSMaxBBPerJob", "QOSMaxBBPerNode", "QOSMaxBBPerUser",
    "QOSMinBB", "DeadLine", "MaxBBPerAccount", "MaxCpuPerAccount", "MaxEnergyPerAccount",
    "MaxGRESPerAccount", "MaxNodePerAccount", "MaxLicensePerAccount", "MaxMemoryPerAccount",
    "MaxUnknownPerAccount", "MaxJobsPerAccount", "MaxSubmitJobsPerAccount", "PartitionConfig",
    "AccountingPolicy", "FedJobLock", "OutOfMemory", "MaxMemPerLimit", "AssocGrpBilling",
    "AssocGrpBillingMinutes", "AssocGrpBillingRunMinutes", "AssocMaxBillingPerJob",
    "AssocMaxBillingPerNode", "AssocMaxBillingMinutesPerJob", "QOSGrpBilling",
    "QOSGrpBillingMinutes", "QOSGrpBillingRunMinutes", "QOSMaxBillingPerJob",
    "QOSMaxBillingPerNode", "QOSMaxBillingPerUser", "QOSMaxBillingMinutesPerJob",
    "MaxBillingPerAccount", "QOSMinBilling", "ReservationDeleted", "ReservationInvalid",
    "Constraints", "MaxBBRunMinsPerAccount", "MaxBillingRunMinsPerAccount",
    "MaxCpuRunMinsPerAccount", "MaxEnergyRunMinsPerAccount", "MaxGRESRunMinsPerAccount",
    "MaxNodeRunMinsPerAccount", "MaxLicenseRunMinsPerAccount", "MaxMemoryRunMinsPerAccount",
    "MaxUnknownRunMinsPerAccount", "MaxBBRunMinsPerUser", "MaxBillingRunMinsPerUser",
    "MaxCpuRunMinsPerUser", "MaxEnergyRunMinsPerUser", "MaxGRESRunMinsPerUser",
    "MaxNodeRunMinsPerUser", "MaxLicenseRunMinsPerUser", "MaxMemoryRunMinsPerUser",
    "MaxUnknownRunMinsPerUser", "MaxPoweredUpNodes", "MpiPortsBusy",
)

# Spellings from 20.11-22.05 that later releases renamed or dropped, and reason texts that
# are not in that table but appear in squeue/sacct output.
OLDER_CODES = (
    "QOSGrpCPUMinsLimit", "QOSGrpCPURunMinsLimit", "QOSGrpMemoryLimit", "QOSGrpNodesLimit",
    "QOSMaxCpusPerJobLimit", "QOSMaxCpusMinsPerJobLimit", "QOSMaxNodesPerJobLimit",
    "QOSMaxCpusPerUserLimit", "QOSMaxNodesPerUserLimit", "QOSMinCPUsNotSatisfied",
    "AssocGrpCPUMinsLimit", "AssocGrpCPURunMinsLimit", "AssocGrpMemoryLimit", "AssocGrpNodesLimit",
    "AssocMaxCpusPerJobLimit", "AssocMaxCpusMinsPerJobLimit", "AssocMaxNodesPerJobLimit",
    "BlockMaxError", "BlockFreeAction", "PowerNotAvail", "PowerReserved", "WaitingForScheduling",
    "launch failed requeued held", "BeginTime",
)
# fmt: on

EVERY_CODE = tuple(dict.fromkeys(code for code in CURRENT_CODES + OLDER_CODES if code != "None"))

# Specifics a job can carry; each test takes what it needs.
FULL: dict[str, Any] = {
    "partition": "gpu",
    "qos": "normal",
    "account": "physics",
    "dependency": "afterok:4(unfulfilled)",
    "reservation": "maint",
    "reason_detail": "ReqNodeNotAvail, UnavailableNodes:node[003-004]",
    "expected_start_time": datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    "time_limit_min": 120,
}

PLACEHOLDER = re.compile(r"\{\w*\}")


def explain(code: str, job_id: str = "7", **fields: Any) -> str | None:
    return explain_reason(job(job_id, reason=code, **fields))


def explained(code: str, job_id: str = "7", **fields: Any) -> str:
    """``explain`` for a code the test expects a sentence for."""
    text = explain(code, job_id, **fields)
    assert text is not None, code
    return text


def assert_sentence(text: str | None, code: str) -> None:
    assert text is not None and text != code
    assert text[0].isupper() and text.endswith(".")
    assert not PLACEHOLDER.search(text)
    assert "  " not in text and " ;" not in text and " ." not in text and ".." not in text


@pytest.mark.parametrize("code", EVERY_CODE)
def test_every_code_has_its_own_sentence(code: str) -> None:
    assert_sentence(explain(code, **FULL), code)


@pytest.mark.parametrize("code", EVERY_CODE)
def test_every_code_reads_well_without_specifics(code: str) -> None:
    text = explained(code)
    assert_sentence(text, code)
    assert "None" not in text


def test_summaries_are_the_sentences_without_specifics() -> None:
    assert "Priority" in REASON_SUMMARIES and "QOSMaxJobsPerUserLimit" not in REASON_SUMMARIES
    for code, summary in REASON_SUMMARIES.items():
        assert_sentence(summary, code)
        assert explain(code, job_id="", partition="") == summary
    assert REASON_SUMMARIES["JobHeldUser"] == (
        "The job is on hold at its owner's request; release it with `scontrol release <job_id>`."
    )


def test_summaries_are_for_slurm_codes_and_the_rest_are_limits() -> None:
    assert set(REASON_SUMMARIES) <= set(EVERY_CODE)
    # Every code without a summary is a limit of the grammar.
    for code in set(EVERY_CODE) - set(REASON_SUMMARIES):
        assert re.search(r"allows|limit|requires", explained(code, **FULL)), code


@pytest.mark.parametrize("code", ["", "None", "none", " None "])
def test_no_reason(code: str) -> None:
    assert explain(code) is None
    assert explain_reason(job("7")) is None


def test_unknown_code_falls_back_to_itself() -> None:
    assert explain("SomethingNew") == "SomethingNew"
    assert explain("QOSMaxFlopsPerJob") == "QOSMaxFlopsPerJob"


@pytest.mark.parametrize(
    "code", ["qosmaxjobsperuserlimit", "QOSMAXJOBSPERUSERLIMIT", "QosMaxJobsPerUserLimit"]
)
def test_grammar_codes_match_without_case(code: str) -> None:
    assert explain(code, qos="normal") == explain("QOSMaxJobsPerUserLimit", qos="normal")


@pytest.mark.parametrize("code", ["jobhelduser", "JOBHELDUSER", "Launch Failed Requeued Held"])
def test_fixed_codes_match_without_case(code: str) -> None:
    assert "`scontrol release 7`" in explained(code)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "QOSMaxJobsPerUserLimit",
            "You already have as many running jobs as QOS normal allows per user; "
            "this job starts when one of them ends.",
        ),
        (
            "AssocGrpCpuLimit",
            "The CPUs in use by all running jobs of account physics have reached the account's "
            "limit; this job starts when some of them finish.",
        ),
        (
            "AssocGrpCPUMinutesLimit",
            "Account physics has used up its CPU-minutes allowance; "
            "the job waits until usage decays or an administrator raises the limit.",
        ),
        (
            "AssocGrpCPURunMinutesLimit",
            "The remaining run time of running jobs of account physics, in CPU-minutes, has "
            "reached the account's limit; this job starts as they progress and finish.",
        ),
        (
            "QOSMaxWallDurationPerJobLimit",
            "The job's time limit (2h) is longer than QOS normal allows per job; lower it with "
            "`scontrol update JobId=7 TimeLimit=<new limit>` or it will not start.",
        ),
        (
            "MaxJobsPerAccount",
            "Account physics already has as many running jobs as QOS normal allows per account; "
            "this job starts when one of them ends.",
        ),
        (
            "QOSMinCpuNotSatisfied",
            "The job asks for fewer CPUs than QOS normal requires per job; "
            "it will not start unless the request is increased.",
        ),
        (
            "QOSMaxNodePerJobLimit",
            "The job asks for more nodes than QOS normal allows per job; "
            "it will not start unless the request is reduced.",
        ),
        (
            "QOSGrpMemLimit",
            "The memory in use by all running jobs in QOS normal has reached the QOS's limit; "
            "this job starts when some of them finish.",
        ),
        (
            "MaxCpuRunMinsPerUser",
            "The remaining run time of your running jobs, in CPU-minutes, has reached what "
            "QOS normal allows per user; this job starts as they progress and finish.",
        ),
    ],
)
def test_limit_grammar_sentences(code: str, expected: str) -> None:
    assert explain(code, qos="normal", account="physics", time_limit_min=120) == expected


@pytest.mark.parametrize(
    ("current", "older"),
    [
        ("QOSGrpCPUMinutesLimit", "QOSGrpCPUMinsLimit"),
        ("QOSGrpMemLimit", "QOSGrpMemoryLimit"),
        ("QOSGrpNodeLimit", "QOSGrpNodesLimit"),
        ("QOSMaxCpuPerJobLimit", "QOSMaxCpusPerJobLimit"),
        ("QOSMaxCpuMinutesPerJobLimit", "QOSMaxCpusMinsPerJobLimit"),
        ("QOSMinCpuNotSatisfied", "QOSMinCPUsNotSatisfied"),
        ("AssocGrpCPURunMinutesLimit", "AssocGrpCPURunMinsLimit"),
        ("AssocMaxNodePerJobLimit", "AssocMaxNodesPerJobLimit"),
        ("MaxCpuPerAccount", "MaxCpuPerAcct"),
    ],
)
def test_older_spellings_read_the_same(current: str, older: str) -> None:
    assert explain(older, **FULL) == explain(current, **FULL)


def test_qos_limit_without_qos_name() -> None:
    text = explain("QOSMaxJobsPerUserLimit")
    assert text == (
        "You already have as many running jobs as the QOS allows per user; "
        "this job starts when one of them ends."
    )
    assert explained("AssocGrpCPUMinutesLimit").startswith("The account has used up")


def test_unprefixed_limits_are_the_qos_s() -> None:
    assert "QOS normal allows per account" in explained("MaxNodePerAccount", **FULL)
    assert "QOS normal allows per user" in explained("MaxMemoryRunMinsPerUser", **FULL)


def test_per_node_and_submit_limits() -> None:
    assert explain("AssocMaxGRESPerNode", account="physics") == (
        "The job asks for more GPUs or other GRES per node than account physics allows; "
        "it will not start unless the request is reduced."
    )
    assert explain("QOSMaxSubmitJobPerUserLimit", qos="normal") == (
        "You already have as many jobs submitted as QOS normal allows per user; "
        "this job waits until some of them end."
    )


def test_partition_appears() -> None:
    for code in (
        "Priority",
        "Resources",
        "PartitionDown",
        "PartitionInactive",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "PartitionConfig",
    ):
        assert "partition gpu" in explained(code, partition="gpu").lower(), code
    assert explained("PartitionDown", partition="gpu").startswith("Partition gpu is down;")


def test_qos_and_account_appear() -> None:
    assert "QOS normal" in explained("QOSJobLimit", qos="normal")
    assert "QOS normal" in explained("InvalidQOS", qos="normal")
    for code in (
        "AssociationJobLimit",
        "AssociationResourceLimit",
        "AssociationTimeLimit",
        "AssocGrpJobsLimit",
        "AssocMaxJobsLimit",
        "InvalidAccount",
    ):
        assert "account physics" in explained(code, account="physics").lower(), code


def test_dependency_is_quoted_whole() -> None:
    dependency = "afterany:12_*(unfulfilled),afterok:15(failed)"
    assert f'("{dependency}")' in explained("Dependency", dependency=dependency)
    text = explained("DependencyNeverSatisfied", dependency=dependency)
    assert f'"{dependency}"' in text
    assert "never start" in text and "cancel it or change the dependency" in text


@pytest.mark.parametrize("code", ["Reservation", "ReservationDeleted", "ReservationInvalid"])
def test_reservation_appears(code: str) -> None:
    assert "reservation maint" in explained(code, reservation="maint").lower()


def test_reservation_deleted_says_how_to_go_on() -> None:
    text = explained("ReservationDeleted", "42", reservation="maint")
    assert "on hold" in text and "administrator" in text and "`scontrol release 42`" in text


@pytest.mark.parametrize(
    ("detail", "nodes"),
    [
        ("ReqNodeNotAvail, UnavailableNodes:node[003-004]", "(node[003-004])"),
        ("(ReqNodeNotAvail, UnavailableNodes:gpu[01,05-07],big1)", "(gpu[01,05-07],big1)"),
        ("ReqNodeNotAvail, UnavailableNodes:", None),
        ("", None),
        (None, None),
    ],
)
def test_unavailable_nodes(detail: str | None, nodes: str | None) -> None:
    text = explained("ReqNodeNotAvail", reason_detail=detail)
    if nodes is None:
        assert text == REASON_SUMMARIES["ReqNodeNotAvail"]
    else:
        assert nodes in text


def test_nodes_reserved_for_maintenance_suggest_a_shorter_time_limit() -> None:
    text = explained("ReqNodeNotAvail", reason_detail="ReqNodeNotAvail, Reserved for maintenance")
    assert "maintenance" in text and "shorter time limit" in text


def test_begin_time_is_formatted_in_utc() -> None:
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert explained("BeginTime", expected_start_time=at).endswith("at 2026-03-01 09:30 UTC.")
    two_hours_east = datetime(2026, 3, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    assert "2026-03-01 09:30 UTC" in explained("BeginTime", expected_start_time=two_hours_east)
    assert explain("BeginTime") == REASON_SUMMARIES["BeginTime"]


def test_held_by_user_says_how_to_release() -> None:
    assert explain("JobHeldUser", "4242_7") == (
        "The job is on hold at its owner's request; release it with `scontrol release 4242_7`."
    )


@pytest.mark.parametrize(
    "code",
    ["PartitionTimeLimit", "QOSMaxWallDurationPerJobLimit", "AssocMaxWallDurationPerJobLimit"],
)
def test_time_limit_too_long_says_to_lower_it(code: str) -> None:
    text = explained(code, "9", time_limit_min=2880)
    assert "(2d)" in text and "lower it with `scontrol update JobId=9 TimeLimit=" in text


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("NonZeroExitCode", "exit code"),
        ("TimeLimit", "time limit"),
        ("OutOfMemory", "memory"),
        ("RaisedSignal", "signal"),
        ("NodeDown", "node"),
        ("JobLaunchFailure", "launch"),
        ("SystemFailure", "system failure"),
        ("BadConstraints", "constraints"),
        ("Constraints", "constraints"),
        ("InvalidAccount", "account"),
        ("InvalidQOS", "QOS"),
        ("DeadLine", "deadline"),
        ("InactiveLimit", "srun or salloc"),
        ("BurstBufferOperation", "burst buffer"),
        ("SchedDefer", "immediately"),
    ],
)
def test_finished_job_reasons(code: str, words: str) -> None:
    text = explained(code, state=JobState.FAILED)
    assert words in text


def test_docs_list_every_fixed_code_with_its_text() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "slurm.md").read_text()
    for code, text in REASON_SUMMARIES.items():
        assert f"| `{code}` | {text} |" in docs, code
