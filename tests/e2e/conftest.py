"""The local real Slurm, started once for every live test of the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.localslurm import local_slurm_or_skip


@pytest.fixture(scope="session")
def local_slurm() -> Iterator[Path]:
    yield from local_slurm_or_skip()
