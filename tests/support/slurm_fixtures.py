"""Where the recorded Slurm outputs are, and which version folders hold which kind.

``tests/fixtures/slurm/<release>/`` holds real outputs of one Slurm release
(README.md in each says where they come from): CLI captures (``collector_*``,
``cli_*``, the 22.05 samples) and slurmrestd replies (``rest_<api>_*``), whose
documents have the structure of the CLI's JSON of the same release.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
VERSIONS = sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())


def files(version: str, *patterns: str, exclude: str = "") -> list[Path]:
    """The fixtures of ``version`` matching any glob pattern, minus names containing ``exclude``."""
    found = {path for pattern in patterns for path in (FIXTURES / version).glob(pattern)}
    return sorted(path for path in found if not (exclude and exclude in path.name))


def versions_with(*patterns: str, exclude: str = "") -> list[str]:
    """The versions that have at least one fixture matching a pattern."""
    return [version for version in VERSIONS if files(version, *patterns, exclude=exclude)]


#: Job listings: ``squeue --json`` and ``/slurm/vX/jobs`` (not one job, not slurmdbd's).
JOB_LISTINGS = ("*squeue_json*.json", "rest_v*_jobs.json")
#: Node listings, one record per node: 22.05 ``sinfo --json``, ``/slurm/vX/nodes``.
NODE_LISTINGS = ("collector_sinfo_json*.json", "sinfo_N_json*.json", "rest_v*_nodes.json")
#: Accounting: ``sacct --json`` and ``/slurmdb/vX/jobs`` or ``/slurmdb/vX/job/<id>``.
ACCOUNTING_JSON = ("sacct_json*.json", "rest_v*_slurmdb_job*.json")


def job_listings(version: str) -> list[Path]:
    return files(version, *JOB_LISTINGS, exclude="slurmdb")
