"""Choosing the slurmrestd API version, from real OpenAPI descriptions."""

from __future__ import annotations

import pytest

from slurmcast.errors import ConfigError
from slurmcast.sources.slurmrestd.versions import SUPPORTED, Offered, choose, offered_by

from support.slurm_fixtures import fixture_json


def _offered(release: str) -> Offered:
    return offered_by(fixture_json(release, "openapi_v3.json"))


@pytest.mark.parametrize(
    ("release", "slurm", "newest"),
    [
        ("22.05", {"v0.0.36", "v0.0.37", "v0.0.38"}, "v0.0.38"),
        ("24.05", {"v0.0.39", "v0.0.40", "v0.0.41"}, "v0.0.41"),
        ("24.11", {"v0.0.40", "v0.0.41", "v0.0.42"}, "v0.0.42"),
    ],
)
def test_auto_picks_the_newest_version_both_sides_read(
    release: str, slurm: set[str], newest: str
) -> None:
    offered = _offered(release)
    assert offered.slurm == slurm and offered.slurmdb == slurm
    choice = choose(offered)
    assert (choice.slurm, choice.slurmdb) == (newest, newest)


def test_paths_keep_the_servers_spelling() -> None:
    # 24.05+ describe their paths with a trailing slash; 22.05 without.
    assert choose(_offered("24.11")).path("slurm", "jobs") == "/slurm/v0.0.42/jobs/"
    assert choose(_offered("22.05")).path("slurmdb", "jobs") == "/slurmdb/v0.0.38/jobs"


def test_an_explicit_version_is_used_when_served() -> None:
    choice = choose(_offered("24.11"), "v0.0.40")
    assert (choice.slurm, choice.slurmdb) == ("v0.0.40", "v0.0.40")


def test_a_version_the_server_lacks_names_what_it_serves() -> None:
    with pytest.raises(ConfigError) as info:
        choose(_offered("22.05"), "v0.0.41")
    assert "v0.0.41" in info.value.message
    assert "v0.0.36, v0.0.37, v0.0.38" in info.value.message


def test_no_common_version() -> None:
    future = Offered(slurm=frozenset({"v0.0.45", "v0.0.46"}), slurmdb=frozenset(), paths={})
    with pytest.raises(ConfigError, match=r"serves API versions v0\.0\.45, v0\.0\.46"):
        choose(future)


def test_accounting_at_another_version_or_none() -> None:
    offered = Offered(
        slurm=frozenset({"v0.0.42"}), slurmdb=frozenset({"v0.0.41", "v0.0.40"}), paths={}
    )
    assert choose(offered).slurmdb == "v0.0.41"
    without = Offered(slurm=frozenset({"v0.0.42"}), slurmdb=frozenset(), paths={})
    assert choose(without).slurmdb is None


def test_supported_range() -> None:
    assert SUPPORTED[0] == "v0.0.36" and SUPPORTED[-1] == "v0.0.44"
