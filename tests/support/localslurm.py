"""The local real Slurm 22.05 of ../shared/slurm, for the live tests.

Started once per test session by the ``local_slurm`` fixture (tests/e2e/conftest.py)
with MinJobAge=5, so finished jobs leave squeue within seconds and final states
must come from accounting; stopped at the end. Needs root; on a machine without
the scripts the live tests are skipped, unless SLURMCAST_REQUIRE_SLURM=1 (CI).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Generous: a loaded 2-core machine runs slurmctld, slurmdbd, MariaDB and four slurmd.
SLOW = 120.0
#: slurmrestd as start-local-slurm.sh starts it: a unix socket (no token) and TCP with JWT.
RESTD_SOCKET = Path("/run/slurm-local/restd/slurmrestd.socket")
RESTD_URL = "http://127.0.0.1:6820"


def scripts_dir() -> Path | None:
    candidates: list[str | Path] = [
        os.environ.get("SLURMCAST_LOCAL_SLURM", ""),
        ROOT.parent / "shared" / "slurm",
        "/work/shared/slurm",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "start-local-slurm.sh").exists():
            return Path(candidate)
    return None


def run(*args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        list(args), capture_output=True, text=True, timeout=600, env=env, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def start_slurm(scripts: Path) -> None:
    env = dict(os.environ, SLURM_LOCAL_MIN_JOB_AGE="5")
    run("bash", str(scripts / "start-local-slurm.sh"), env=env)


def local_slurm_or_skip() -> Iterator[Path]:
    scripts = scripts_dir()
    reason = None
    if scripts is None:
        reason = "the local Slurm scripts (../shared/slurm) are not on this machine"
    elif os.geteuid() != 0:
        reason = "starting the local Slurm needs root"
    if reason is not None:
        if os.environ.get("SLURMCAST_REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    assert scripts is not None
    start_slurm(scripts)
    try:
        yield scripts
    finally:
        run("bash", str(scripts / "stop-local-slurm.sh"), check=False)


def sbatch(*args: str) -> str:
    out = run("sbatch", "--parsable", "--output=/dev/null", *args)
    return out.strip().split(";")[0]
