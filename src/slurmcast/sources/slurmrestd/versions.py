"""Which slurmrestd API version to speak: the newest both sides know.

slurmrestd serves several versions of its API at once (22.05: v0.0.36 to
v0.0.38; 25.11: v0.0.41 to v0.0.44), each as ``/slurm/<v>/...`` for slurmctld
and ``/slurmdb/<v>/...`` for slurmdbd. Its OpenAPI description lists the paths
it serves; the parsers read every version from v0.0.36 to v0.0.44 (the
documents are the CLI's ``--json`` of the same release).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from slurmcast.errors import ConfigError

#: The versions slurmcast reads, oldest first.
SUPPORTED: Final[tuple[str, ...]] = tuple(f"v0.0.{n}" for n in range(36, 45))

_PATH: Final = re.compile(r"^/(slurm|slurmdb)/(v\d+\.\d+\.\d+)/(jobs|nodes|ping)/?$")


@dataclass(frozen=True, slots=True)
class Offered:
    """What one slurmrestd serves: versions with jobs and nodes, and with accounting jobs."""

    slurm: frozenset[str]
    slurmdb: frozenset[str]
    #: The path spelling of each endpoint (24.05+ describe them with a trailing slash).
    paths: Mapping[tuple[str, str, str], str]


@dataclass(frozen=True, slots=True)
class ApiChoice:
    """The versions to use: ``slurm`` for jobs and nodes, ``slurmdb`` for final states."""

    slurm: str
    slurmdb: str | None
    paths: Mapping[tuple[str, str, str], str]

    def path(self, plugin: str, endpoint: str) -> str:
        version = self.slurm if plugin == "slurm" else self.slurmdb
        assert version is not None
        return self.paths.get((plugin, version, endpoint), f"/{plugin}/{version}/{endpoint}")


def offered_by(openapi: Mapping[str, Any]) -> Offered:
    """The versions an OpenAPI description (``GET /openapi/v3``) serves."""
    found: dict[tuple[str, str, str], str] = {}
    paths = openapi.get("paths")
    for path in paths if isinstance(paths, Mapping) else ():
        match = _PATH.match(str(path))
        if match:
            plugin, version, endpoint = match.groups()
            found[(plugin, version, endpoint)] = str(path)
    slurm = {
        version
        for (plugin, version, endpoint) in found
        if plugin == "slurm" and endpoint == "jobs" and ("slurm", version, "nodes") in found
    }
    slurmdb = {v for (plugin, v, endpoint) in found if plugin == "slurmdb" and endpoint == "jobs"}
    return Offered(frozenset(slurm), frozenset(slurmdb), found)


def choose(offered: Offered, wanted: str = "auto") -> ApiChoice:
    """The version to speak.

    Args:
        offered: what the server serves.
        wanted: ``auto`` (the newest version both sides know) or a version
            such as ``v0.0.40``.

    Returns:
        The choice; ``slurmdb`` is the same version when the server offers it,
        else its newest accounting version slurmcast reads, else None (no
        accounting through slurmrestd).

    Raises:
        ConfigError: the wanted version is not served (the message names what
            is), or no version is common to both sides.
    """
    common = sorted(offered.slurm & set(SUPPORTED), key=_order)
    if wanted == "auto":
        if not common:
            raise ConfigError(
                f"slurmrestd serves API versions {_names(offered.slurm)}; slurmcast reads "
                f"{SUPPORTED[0]} to {SUPPORTED[-1]}: no version in common"
            )
        slurm = common[-1]
    elif wanted in offered.slurm:
        if wanted not in SUPPORTED:
            raise ConfigError(
                f"--slurmrestd-api {wanted}: slurmcast reads {SUPPORTED[0]} to {SUPPORTED[-1]}"
            )
        slurm = wanted
    else:
        raise ConfigError(
            f"--slurmrestd-api {wanted}: this slurmrestd serves {_names(offered.slurm)}"
        )
    db_common = sorted(offered.slurmdb & set(SUPPORTED), key=_order)
    slurmdb = slurm if slurm in offered.slurmdb else (db_common[-1] if db_common else None)
    return ApiChoice(slurm=slurm, slurmdb=slurmdb, paths=offered.paths)


def newest_first(versions: Iterable[str]) -> list[str]:
    return sorted(versions, key=_order, reverse=True)


def _order(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.lstrip("v").split("."))


def _names(versions: Iterable[str]) -> str:
    listed = sorted(versions, key=_order)
    return ", ".join(listed) if listed else "no jobs and nodes API"
