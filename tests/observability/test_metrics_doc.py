"""docs/metrics.md names every series ``GET /metrics`` exports, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from slurmcast.sinks.config import SinksConfig

from support.fakeslurm import FakeSlurm
from support.metrics import scrape
from support.server import running_server

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
FAST = {"jobs_interval": 0.2, "nodes_interval": 0.2, "metrics_interval": 0.2}
#: Samples of a family: a histogram's buckets, count and sum; a counter's _total.
SUFFIXES = re.compile(r"_(?:bucket|count|sum|total|created)$")


async def test_the_metrics_doc_lists_every_exported_series(tmp_path: Path) -> None:
    fake = FakeSlurm(tmp_path)
    async with running_server(
        source="slurm",
        slurm_bin_dir=str(fake.bin),
        slurm_format="delimited",
        metrics_per_user=True,
        # Notification delivery's series exist only with a [sinks] table.
        sinks=SinksConfig(slack=True),
        **FAST,
    ) as app:
        result = await scrape(app)
    exported = {name for name in result.types if name.startswith("slurmcast_")}
    documented = {
        SUFFIXES.sub("", name) for name in re.findall(r"`(slurmcast_[a-z0-9_]+)`", DOC.read_text())
    }
    assert exported - documented == set(), "exported but not in docs/metrics.md"
    assert documented - exported == set(), "in docs/metrics.md but not exported"
