"""Stand-in Slurm commands that replay recorded real outputs.

Each command is a small shell script in a temporary bin directory; what it
prints (or how it fails) is read from files the test controls, so a test can
change the cluster between two polls. ``FakeSlurm(root)`` serves the real
Slurm 22.05 recordings of tests/fixtures/slurm/22.05/;
``FakeSlurm.recording(root, "25.11", "v0.0.44")`` a newer release's.

Newer releases were recorded as JSON only (slurmrestd replies, which are the
CLI's JSON documents: ``/slurm/vX/jobs`` is ``squeue --json``, ``/slurm/vX/nodes``
is ``scontrol show nodes --json``). For the delimited format the fake renders
those same records as the text tools of that release print them (``rc:signal``
exit codes since 23.02, ``StateComplete`` words, ``A/I/O/T`` CPU counts): the
records are real, their text layout is derived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from slurmcast.sources.slurm.jobs import SQUEUE_DELIMITER, SQUEUE_FIELDS
from slurmcast.sources.slurm.nodes import SINFO_DELIMITER, SINFO_FIELDS
from slurmcast.sources.slurm.sacct import SACCT_FIELDS
from slurmcast.sources.slurm.values import exit_from_json, number, to_int

from support.slurm_fixtures import OLDEST, files, folder, rest_path

#: The 22.05 CLI captures ``FakeSlurm(root)`` serves.
FIXTURES = folder(OLDEST)

SCRIPT = """#!/bin/sh
state='{state}'
name='{name}'
echo "$*" >> "$state/$name.calls"
if [ -f "$state/$name.fail" ]; then cat "$state/$name.fail" >&2; exit 1; fi
if [ -f "$state/$name.hang" ]; then exec sleep 30; fi
case "$*" in
  --version) cat "$state/version.txt"; exit 0 ;;
  "show config") cat "$state/config.txt"; exit 0 ;;
  *--json*) cat "$state/$name.json"; exit 0 ;;
esac
cat "$state/$name.txt"
"""

DELIMITER = SQUEUE_DELIMITER


class FakeSlurm:
    """A bin directory of fake squeue/sinfo/sacct/scontrol and the files they serve."""

    def __init__(self, root: Path, *, version_line: str = "slurm-wlm 22.05.8") -> None:
        self.bin = root / "bin"
        self.state = root / "state"
        self.bin.mkdir()
        self.state.mkdir()
        for name in ("squeue", "sinfo", "sacct", "scontrol"):
            script = self.bin / name
            script.write_text(SCRIPT.format(state=self.state, name=name))
            script.chmod(0o755)
        self.serve("version.txt", version_line + "\n")
        self.serve("squeue.json", FIXTURES / "collector_squeue_json.json")
        self.serve("squeue.txt", FIXTURES / "collector_squeue.txt")
        self.serve("sinfo.json", FIXTURES / "collector_sinfo_json.json")
        self.serve("sinfo.txt", FIXTURES / "collector_sinfo.txt")
        self.serve("sacct.txt", FIXTURES / "collector_sacct.txt")
        self.serve("scontrol.txt", FIXTURES / "collector_scontrol_show_node.txt")
        self.serve("config.txt", FIXTURES / "scontrol_show_config.txt")

    @classmethod
    def recording(cls, root: Path, release: str, api: str) -> FakeSlurm:
        """Commands of Slurm ``release`` (a fixture folder) printing its ``api`` recordings."""
        jobs = rest_path(release, api, "jobs")
        nodes = rest_path(release, api, "nodes")
        jobs_doc = orjson.loads(jobs.read_bytes())
        full = _release_of(jobs_doc) or release
        fake = cls(root, version_line=f"slurm {full}")
        fake.serve("config.txt", _config(full))
        fake.serve("squeue.json", jobs)
        fake.serve("scontrol.json", nodes)
        grouped = files(release, "cli_sinfo_json*.json")
        fake.serve("sinfo.json", grouped[0] if grouped else '{"errors": [], "sinfo": []}')
        fake.serve("squeue.txt", render_squeue(jobs_doc["jobs"]))
        fake.serve("sinfo.txt", render_sinfo(orjson.loads(nodes.read_bytes())["nodes"]))
        fake.serve("sacct.txt", render_sacct(jobs_doc["jobs"]))
        return fake

    def serve(self, name: str, source: Path | str) -> None:
        text = source.read_text() if isinstance(source, Path) else source
        (self.state / name).write_text(text)

    def fail(self, command: str, stderr: str) -> None:
        (self.state / f"{command}.fail").write_text(stderr)

    def hang(self, command: str) -> None:
        (self.state / f"{command}.hang").write_text("")

    def heal(self, command: str) -> None:
        for suffix in ("fail", "hang"):
            (self.state / f"{command}.{suffix}").unlink(missing_ok=True)

    def calls(self, command: str) -> list[str]:
        path = self.state / f"{command}.calls"
        return path.read_text().splitlines() if path.exists() else []


def squeue_line(job_id: str, state: str, *, exit_status: str = "0", name: str = "job") -> str:
    """One delimited squeue line (the collector's format) for a 1-CPU debug job."""
    nodes = "node001" if state != "PENDING" else ""
    values = {
        "JobID": job_id,
        "State": state,
        "UserName": "alice",
        "Account": "root",
        "Partition": "debug",
        "QOS": "normal",
        "NumCPUs": "1",
        "NumNodes": "1",
        "NumTasks": "1",
        "tres-alloc": "cpu=1,mem=100M,node=1,billing=1",
        "SubmitTime": "2026-11-28T04:06:18",
        "StartTime": "2026-11-28T04:06:19",
        "EndTime": "2027-11-28T04:06:19",
        "TimeLimit": "UNLIMITED",
        "exit_code": exit_status,
        "Reason": "None",
        "Dependency": "(null)",
        "Reservation": "(null)",
        "NodeList": nodes,
        "ReasonList": nodes or "(None)",
        "Name": name,
    }
    return DELIMITER.join(values.get(field, "N/A") for field in SQUEUE_FIELDS)


def sacct_line(job_id: str, state: str, exit_code: str, *, end: str = "2026-11-28T04:07:00") -> str:
    values = {
        "JobIDRaw": job_id,
        "State": state,
        "ExitCode": exit_code,
        "DerivedExitCode": "0:0",
        "Start": "2026-11-28T04:06:19",
        "End": end,
        "Elapsed": "00:00:41",
        "NodeList": "node001",
        "AllocCPUS": "1",
        "TotalCPU": "00:20.500",
        "MaxRSS": "",
        "ReqMem": "100M",
        "AllocTRES": "billing=1,cpu=1,mem=100M,node=1",
        "Reason": "None",
    }
    return "|".join(values[field] for field in SACCT_FIELDS)


# -- text renderings of JSON records (23.02+ conventions) ---------------------------


def render_squeue(jobs: Iterable[Mapping[str, Any]]) -> str:
    """``squeue -O <SQUEUE_FIELDS>`` lines for JSON job records."""
    lines = []
    for job in jobs:
        state = _state_word(job["job_state"])
        pair = exit_from_json(job.get("exit_code")) or (0, 0)
        reason = job.get("state_reason") or "None"
        description = job.get("state_description") or ""
        nodes = job.get("nodes") or ""
        values = {
            "JobID": str(to_int(job["job_id"])),
            "State": state,
            "UserName": job.get("user_name") or "",
            "Account": job.get("account") or "",
            "Partition": job.get("partition") or "",
            "QOS": job.get("qos") or "",
            "NumCPUs": _int_text(job.get("cpus")),
            "NumNodes": _int_text(job.get("node_count")),
            "NumTasks": _int_text(job.get("tasks")),
            "tres-alloc": job.get("tres_alloc_str") or job.get("tres_req_str") or "",
            "tres-per-job": job.get("tres_per_job") or "N/A",
            "tres-per-node": job.get("tres_per_node") or "N/A",
            "tres-per-socket": job.get("tres_per_socket") or "N/A",
            "tres-per-task": job.get("tres_per_task") or "N/A",
            "SubmitTime": _time_text(job.get("submit_time")),
            "StartTime": _time_text(job.get("start_time")),
            "EndTime": _time_text(job.get("end_time")),
            "TimeLimit": _limit_text(job.get("time_limit")),
            "exit_code": f"{pair[0]}:{pair[1]}",
            "Reason": description or reason,
            "Dependency": job.get("dependency") or "(null)",
            "Reservation": job.get("resv_name") or "(null)",
            "NodeList": nodes,
            "ReasonList": f"({description or reason})" if state == "PENDING" else nodes,
            "Name": job.get("name") or "",
        }
        lines.append(SQUEUE_DELIMITER.join(values[field] for field in SQUEUE_FIELDS))
    return "".join(line + "\n" for line in lines)


def render_sinfo(nodes: Iterable[Mapping[str, Any]]) -> str:
    """``sinfo -N -O <SINFO_FIELDS>`` lines (one per node and partition) for JSON node records."""
    lines = []
    for node in nodes:
        states = node["state"] if isinstance(node["state"], list) else [node["state"]]
        words = [word.lower() for word in states]
        cpus, alloc = to_int(node.get("cpus")) or 0, to_int(node.get("alloc_cpus")) or 0
        other = cpus - alloc if "down" in words or "drain" in words else 0
        load = number(node.get("cpu_load"))
        free = to_int(node.get("free_mem", node.get("free_memory")))
        values = {
            "StateComplete": "+".join(words),
            "CPUsState": f"{alloc}/{max(cpus - alloc - other, 0)}/{other}/{cpus}",
            "CPUsLoad": "N/A" if load is None else f"{load / 100:.2f}",
            "Memory": str(to_int(node.get("real_memory")) or 0),
            "AllocMem": str(to_int(node.get("alloc_memory")) or 0),
            "FreeMem": "N/A" if free is None else str(free),
            "Gres": node.get("gres") or "(null)",
            "GresUsed": node.get("gres_used") or "(null)",
            "Reason": node.get("reason") or "none",
        }
        for partition in node.get("partitions") or [""]:
            row = {"NodeList": node["name"], "Partition": partition, **values}
            lines.append(SINFO_DELIMITER.join(row[field] for field in SINFO_FIELDS))
    return "".join(line + "\n" for line in lines)


def render_sacct(jobs: Iterable[Mapping[str, Any]]) -> str:
    """``sacct -P <SACCT_FIELDS>`` job lines for the finished JSON job records."""
    lines = []
    for job in jobs:
        state = _state_word(job["job_state"])
        if state in ("PENDING", "RUNNING"):
            continue
        pair = exit_from_json(job.get("exit_code")) or (0, 0)
        start, end = to_int(job.get("start_time")) or 0, to_int(job.get("end_time")) or 0
        values = {
            "JobIDRaw": str(to_int(job["job_id"])),
            "State": state,
            "ExitCode": f"{pair[0]}:{pair[1]}",
            "DerivedExitCode": "0:0",
            "Start": _time_text(start),
            "End": _time_text(end),
            "Elapsed": _clock(max(end - start, 0)),
            "NodeList": job.get("nodes") or "None assigned",
            "AllocCPUS": _int_text(job.get("cpus")),
            "TotalCPU": "00:00:00",
            "MaxRSS": "",
            "ReqMem": "",
            "AllocTRES": job.get("tres_alloc_str") or "",
            "Reason": job.get("state_reason") or "None",
        }
        lines.append("|".join(values[field] for field in SACCT_FIELDS))
    return "".join(line + "\n" for line in lines)


def _state_word(raw: str | list[str]) -> str:
    words = [raw] if isinstance(raw, str) else raw
    # squeue prints a recognised flag instead of the base state (COMPLETING).
    return words[-1] if len(words) > 1 and words[-1] in ("COMPLETING",) else words[0]


def _int_text(value: object) -> str:
    found = to_int(value)
    return "N/A" if found is None else str(found)


def _time_text(value: object) -> str:
    seconds = to_int(value)
    if not seconds:
        return "N/A"
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat()


def _limit_text(value: object) -> str:
    if isinstance(value, dict) and value.get("infinite"):
        return "UNLIMITED"
    minutes = to_int(value)
    return "UNLIMITED" if minutes is None else _clock(minutes * 60)


def _clock(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def _config(release: str) -> str:
    # Only the lines the source reads at start-up (scontrol show config's layout).
    return (
        f"Configuration data as of {datetime.now(UTC).replace(tzinfo=None).isoformat()}\n"
        "AccountingStorageType   = accounting_storage/slurmdbd\n"
        "MinJobAge               = 300 sec\n"
        f"SLURM_VERSION           = {release}\n"
    )


def _release_of(document: Mapping[str, Any]) -> str | None:
    meta = document.get("meta") or {}
    for key in ("slurm", "Slurm"):
        release = (meta.get(key) or {}).get("release")
        if release:
            return str(release)
    return None
