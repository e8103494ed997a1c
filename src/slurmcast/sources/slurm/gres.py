"""GRES and TRES strings: GPU counts and ``key=value`` resource lists.

GRES (``reference/slurm.md`` section 7): ``name[:type]:count[(...)]`` entries
joined by commas, e.g. ``gpu:2``, ``gpu:tesla:2(S:0)``, ``gpu:a100:4,shard:8``,
used counts ``gpu:1(IDX:0)`` / ``gpu:tesla:0(IDX:N/A)``, job requests
``gres:gpu:1`` (22.05) or ``gres/gpu:1`` (23.02+). ``shard`` and ``mps`` are
slices of GPUs, never extra GPUs. TRES: ``cpu=2,mem=1G,node=1,gres/gpu=1``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from slurmcast.errors import SourceError

_NO_GRES = frozenset({"", "(null)", "N/A", "none", "None"})


def tres_get(tres: str, key: str) -> str | None:
    """The value of ``key`` in a TRES string, without splitting the whole string.

    Args:
        tres: e.g. ``"cpu=2,mem=1G,node=1,billing=2,gres/gpu=1"``.
        key: e.g. ``"mem"``; matched whole (``mem`` never matches ``gres/gpumem``).

    Returns:
        The value text, or None when absent.
    """
    if not tres:
        return None
    prefix = key + "="
    if tres.startswith(prefix):
        start = len(prefix)
    else:
        found = tres.find("," + prefix)
        if found < 0:
            return None
        start = found + 1 + len(prefix)
    end = tres.find(",", start)
    return tres[start:] if end < 0 else tres[start:end]


def gpu_count(gres: str) -> int:
    """Total GPUs in a GRES string (node ``Gres``/``GresUsed``, job ``gres_detail`` entry).

    Args:
        gres: the GRES string; ``(null)``, ``N/A`` and ``""`` mean none.

    Returns:
        The number of ``gpu`` units, summed over types.

    Raises:
        SourceError: a GPU count is not a number.
    """
    if "gpu" not in gres:
        return 0
    return _gpu_count_cached(gres.strip())


def gpu_count_all(entries: Iterable[object]) -> int:
    """Sum :func:`gpu_count` over a list of GRES strings (job ``gres_detail``, one per node).

    Args:
        entries: the strings; non-strings are ignored.

    Returns:
        The total.

    Raises:
        SourceError: a GPU count is not a number.
    """
    return sum(gpu_count(entry) for entry in entries if isinstance(entry, str))


@lru_cache(maxsize=4096)
def _gpu_count_cached(gres: str) -> int:
    if gres in _NO_GRES:
        return 0
    total = 0
    for entry in _split_entries(gres):
        main, _, detail = entry.partition("(")
        main = main.strip()
        if main.startswith(("gres:", "gres/")):
            main = main[5:]
        fields = main.split(":")
        if fields[0] != "gpu":
            continue
        if len(fields) > 1 and fields[-1].isdigit():
            total += int(fields[-1])
        elif len(fields) > 2:
            raise SourceError(f"bad GPU count in GRES {gres[:80]!r}")
        else:
            # "gpu" or "gpu:type" without a count: Slurm means one, unless the
            # detail says how many ("(CNT:2)", "(IDX:0-1)").
            total += _count_from_detail(detail, gres)
    return total


def _split_entries(gres: str) -> list[str]:
    """Split at commas outside parentheses: ``gpu:2(IDX:0,2),shard:8``."""
    if "(" not in gres:
        return gres.split(",")
    entries: list[str] = []
    depth = 0
    start = 0
    for index, char in enumerate(gres):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            entries.append(gres[start:index])
            start = index + 1
    entries.append(gres[start:])
    return entries


def _count_from_detail(detail: str, gres: str) -> int:
    for group in detail.replace(")(", "|").rstrip(")").split("|"):
        key, _, value = group.partition(":")
        if key == "CNT" and value.isdigit():
            return int(value)
        if key == "IDX":
            return _count_indexes(value, gres)
    return 1


def _count_indexes(value: str, gres: str) -> int:
    """Count ``0-1,3`` style device indexes; ``N/A`` is none."""
    if value in ("N/A", ""):
        return 0
    count = 0
    for part in value.split(","):
        low, dash, high = part.partition("-")
        try:
            count += (int(high) - int(low) + 1) if dash else (1 if int(low) >= 0 else 0)
        except ValueError:
            raise SourceError(f"bad GPU index list in GRES {gres[:80]!r}") from None
    return count
