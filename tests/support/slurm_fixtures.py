"""Where the recorded Slurm outputs are, which version folders hold which kind, and reading them.

``tests/fixtures/slurm/<release>/`` holds real outputs of one Slurm release
(README.md in each says where they come from): CLI captures (``collector_*``,
``cli_*``, the 22.05 samples) and slurmrestd replies (``rest_<api>_*``), whose
documents have the structure of the CLI's JSON of the same release.

Every test finds and reads these files through this module: the releases and
API versions recorded (``VERSIONS``, ``versions_with``, ``rest_releases``,
``rest_apis``, ``rest_recordings``), the files themselves (``folder``,
``files``, ``rest_path``) and their contents (``fixture_bytes``, ``fixture_text``,
``fixture_json``, ``rest_document``, ``rest_items``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
VERSIONS = sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())
#: The oldest release recorded: the only one with CLI text captures (the collector's).
OLDEST = "22.05"


def folder(version: str) -> Path:
    """The fixture folder of ``version`` (a release such as ``"24.11"``)."""
    return FIXTURES / version


def files(version: str, *patterns: str, exclude: str = "") -> list[Path]:
    """The fixtures of ``version`` matching any glob pattern, minus names containing ``exclude``."""
    found = {path for pattern in patterns for path in folder(version).glob(pattern)}
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
#: slurmrestd job listings, one per API version (``/slurm/vX/jobs``; slurmdbd's excluded).
REST_JOB_LISTING = "rest_v*_jobs.json"


def job_listings(version: str) -> list[Path]:
    return files(version, *JOB_LISTINGS, exclude="slurmdb")


# -- reading one recorded file -------------------------------------------------


def fixture_bytes(version: str, name: str) -> bytes:
    """The bytes of the recorded file ``name`` of ``version``."""
    return (folder(version) / name).read_bytes()


def fixture_text(version: str, name: str) -> str:
    """The text of the recorded file ``name`` of ``version``."""
    return (folder(version) / name).read_text()


def fixture_json(version: str, name: str) -> dict[str, Any]:
    """The recorded JSON document ``name`` of ``version``."""
    loaded = orjson.loads(fixture_bytes(version, name))
    assert isinstance(loaded, dict), f"{version}/{name} is not a JSON object"
    return loaded


# -- slurmrestd recordings: rest_<api>_<what>.json -----------------------------


def rest_apis(version: str) -> list[str]:
    """The API versions whose job listing ``version`` recorded, oldest first."""
    return [path.name.split("_")[1] for path in files(version, REST_JOB_LISTING, exclude="slurmdb")]


def rest_releases() -> list[str]:
    """The releases with at least one recorded slurmrestd job listing."""
    return versions_with(REST_JOB_LISTING, exclude="slurmdb")


def rest_recordings(*, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(release, api) of every recorded slurmrestd job listing, releases in ``skip`` left out."""
    return [
        (release, api)
        for release in rest_releases()
        if release not in skip
        for api in rest_apis(release)
    ]


def rest_path(version: str, api: str, what: str) -> Path:
    """The recorded reply ``rest_<api>_<what>.json`` (``what``: ``jobs``, ``nodes``, ...)."""
    return folder(version) / f"rest_{api}_{what}.json"


def rest_document(version: str, api: str, what: str) -> dict[str, Any]:
    """The recorded reply ``rest_<api>_<what>.json`` as a JSON document."""
    return fixture_json(version, rest_path(version, api, what).name)


def rest_items(version: str, api: str, what: str) -> list[dict[str, Any]]:
    """The records of a recorded listing: its ``jobs`` or ``nodes`` (``what``) array."""
    return list(rest_document(version, api, what)[what])
