"""Stand-in Slurm commands that replay recorded real outputs.

Each command is a small shell script in a temporary bin directory; what it
prints (or how it fails) is read from files the test controls, so a test can
change the cluster between two polls. The outputs themselves are real Slurm
22.05 recordings from tests/fixtures/slurm/22.05/.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm" / "22.05"

SCRIPT = """#!/bin/sh
state='{state}'
name='{name}'
echo "$*" >> "$state/$name.calls"
if [ -f "$state/$name.fail" ]; then cat "$state/$name.fail" >&2; exit 1; fi
if [ -f "$state/$name.hang" ]; then exec sleep 30; fi
case "$*" in
  --version) echo "slurm-wlm 22.05.8"; exit 0 ;;
  "show config") cat "$state/config.txt"; exit 0 ;;
  --json) cat "$state/$name.json"; exit 0 ;;
esac
cat "$state/$name.txt"
"""

DELIMITER = "\x1f"


class FakeSlurm:
    """A bin directory of fake squeue/sinfo/sacct/scontrol and the files they serve."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.state = root / "state"
        self.bin.mkdir()
        self.state.mkdir()
        for name in ("squeue", "sinfo", "sacct", "scontrol"):
            script = self.bin / name
            script.write_text(SCRIPT.format(state=self.state, name=name))
            script.chmod(0o755)
        self.serve("squeue.json", FIXTURES / "collector_squeue_json.json")
        self.serve("squeue.txt", FIXTURES / "collector_squeue.txt")
        self.serve("sinfo.json", FIXTURES / "collector_sinfo_json.json")
        self.serve("sinfo.txt", FIXTURES / "collector_sinfo.txt")
        self.serve("sacct.txt", FIXTURES / "collector_sacct.txt")
        self.serve("scontrol.txt", FIXTURES / "collector_scontrol_show_node.txt")
        self.serve("config.txt", FIXTURES / "scontrol_show_config.txt")

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
    fields = [
        job_id,
        state,
        "alice",
        "root",
        "debug",
        "1",
        "1",
        "1",
        "cpu=1,mem=100M,node=1,billing=1",
        "N/A",
        "N/A",
        "N/A",
        "2026-11-28T04:06:18",
        "2026-11-28T04:06:19",
        "2027-11-28T04:06:19",
        "UNLIMITED",
        exit_status,
        "None",
        "node001" if state != "PENDING" else "",
        name,
    ]
    return DELIMITER.join(fields)


def sacct_line(job_id: str, state: str, exit_code: str, *, end: str = "2026-11-28T04:07:00") -> str:
    return "|".join(
        [job_id, state, exit_code, "0:0", "2026-11-28T04:06:19", end, "00:00:41", "node001", "None"]
    )
