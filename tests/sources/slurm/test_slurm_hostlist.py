"""Slurm hostlist expansion and compression."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurmcast.errors import SourceError
from slurmcast.sources.slurm.hostlist import MAX_HOSTS, compress, expand

from support.slurm_fixtures import NODE_LISTINGS, files, job_listings, versions_with


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("node001", ("node001",)),
        ("node[001-003,007]", ("node001", "node002", "node003", "node007")),
        ("gpu-[1-2],cpu01", ("gpu-1", "gpu-2", "cpu01")),
        ("node[8-10]", ("node8", "node9", "node10")),
        ("node[08-10]", ("node08", "node09", "node10")),
        ("r[1-2]n[01-02]", ("r1n01", "r1n02", "r2n01", "r2n02")),
        ("node[1-2]-ib", ("node1-ib", "node2-ib")),
        ("node[001-010]", tuple(f"node{i:03d}" for i in range(1, 11))),
        ("a[1-3,5],b7", ("a1", "a2", "a3", "a5", "b7")),
        ("rack[1-2]-node[01-02]", ("rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02")),
        ("node[09-011],n1,n1", ("node09", "node10", "node11", "n1", "n1")),
        ("a,b,c", ("a", "b", "c")),
        ("n[1],m[3-4],x", ("n1", "m3", "m4", "x")),
        ("node[001-002],node[010-011]", ("node001", "node002", "node010", "node011")),
        ("", ()),
        ("(null)", ()),
        ("None assigned", ()),
        ("  node[1-2]  ", ("node1", "node2")),
    ],
)
def test_expand(expression: str, expected: tuple[str, ...]) -> None:
    assert expand(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "node[1-3",
        "node1-3]",
        "node[[1-2]]",
        "node[a-b]",
        "node[3-1]",
        "node[1-]",
        "node[]",
        f"node[0-{MAX_HOSTS}]",
        "a[0-999]b[0-9999]",
        # Within the library's bound per item, over it in total.
        f"a[1-{MAX_HOSTS}],b1",
    ],
)
def test_expand_rejects_malformed(expression: str) -> None:
    with pytest.raises(SourceError):
        expand(expression)


def test_expand_is_cached() -> None:
    assert expand("cache[001-100]") is expand("cache[001-100]")


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["node001", "node002", "node003", "node007"], "node[001-003,007]"),
        (["gpu-1", "gpu-2", "cpu01"], "cpu01,gpu-[1-2]"),
        (["node8", "node9", "node10"], "node[8-10]"),
        (["node3", "node1", "node2", "node1"], "node[1-3]"),
        (["node1"], "node1"),
        (["login", "node1"], "login,node1"),
        (["n01", "n1"], "n[1,01]"),
    ],
)
def test_compress(names: list[str], expected: str) -> None:
    assert compress(names) == expected


def test_compress_rejects_names_with_hostlist_syntax() -> None:
    with pytest.raises(SourceError):
        compress(["node[1]"])


_names = st.lists(
    st.builds(
        lambda prefix, number, width: f"{prefix}{str(number).zfill(width)}",
        st.sampled_from(["node", "gpu-", "r1n", "cpu"]),
        st.integers(min_value=0, max_value=150),
        st.integers(min_value=1, max_value=4),
    ),
    min_size=1,
    max_size=40,
)


@given(_names)
def test_compress_round_trips(names: list[str]) -> None:
    assert set(expand(compress(names))) == set(names)


@pytest.mark.parametrize("version", versions_with(*NODE_LISTINGS))
def test_every_job_node_list_in_fixtures_expands_to_known_nodes(version: str) -> None:
    known: set[str] = set()
    for path in files(version, *NODE_LISTINGS):
        known.update(node["name"] for node in orjson.loads(path.read_bytes())["nodes"])
    # Single-job and single-node captures were taken in other runs than the listings.
    lists = [
        job["nodes"]
        for path in job_listings(version)
        for job in orjson.loads(path.read_bytes())["jobs"]
        if job["nodes"]
    ]
    assert lists
    for node_list in lists:
        assert set(expand(node_list)) <= known
