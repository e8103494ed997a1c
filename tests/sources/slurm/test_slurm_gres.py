"""GRES GPU counts and TRES lookups."""

from __future__ import annotations

import pytest

from slurmcast.errors import SourceError
from slurmcast.sources.slurm.gres import gpu_count, gpu_count_all, tres_get


@pytest.mark.parametrize(
    ("gres", "expected"),
    [
        ("gpu:2", 2),
        ("gpu:tesla:2(S:0)", 2),
        ("gpu:a100:4,shard:8", 4),
        ("gpu:1(IDX:0)", 1),
        ("gpu:tesla:0(IDX:N/A)", 0),
        ("gpu:2(IDX:0-1)", 2),
        ("gpu:a100:2(S:0-1),gpu:v100:1(S:0)", 3),
        ("gpu:4(IDX:0,2-3),shard:8(-/5,5/5,3/5,0/5)", 4),
        ("gpu(IDX:0-1)", 2),
        ("gpu:a100(CNT:2)(IDX:0-1)", 2),
        ("gpu", 1),
        ("gres:gpu:1", 1),
        ("gres/gpu:4", 4),
        ("shard:8", 0),
        ("mps:100", 0),
        ("(null)", 0),
        ("N/A", 0),
        ("", 0),
    ],
)
def test_gpu_count(gres: str, expected: int) -> None:
    assert gpu_count(gres) == expected


@pytest.mark.parametrize("gres", ["gpu:tesla:x", "gpu:a:b:c", "gpu(IDX:x-y)"])
def test_gpu_count_rejects_garbage(gres: str) -> None:
    with pytest.raises(SourceError):
        gpu_count(gres)


def test_gpu_count_all_sums_per_node_details() -> None:
    assert gpu_count_all(["gpu:1(IDX:0)", "gpu:2(IDX:0-1)", None]) == 3
    assert gpu_count_all([]) == 0


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("cpu", "2"),
        ("mem", "1G"),
        ("node", "1"),
        ("gres/gpu", "1"),
        ("gres/gpu:a100", "1"),
        ("billing", "2"),
        ("license", None),
    ],
)
def test_tres_get(key: str, expected: str | None) -> None:
    tres = "cpu=2,mem=1G,node=1,billing=2,gres/gpu=1,gres/gpu:a100=1"
    assert tres_get(tres, key) == expected


def test_tres_get_matches_whole_keys() -> None:
    assert tres_get("gres/gpumem=40G,mem=1G", "mem") == "1G"
    assert tres_get("gres/gpumem=40G", "mem") is None
    assert tres_get("", "mem") is None
