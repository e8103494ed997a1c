"""Slurm hostlist expressions: ``node[001-003,007]`` to node names and back.

Slurm prints every node list in this compressed form (squeue ``%N``/``nodes``,
sinfo, sacct ``NodeList``, scontrol ``NodeList=``/``Partitions``). Expansion is
cached because a 100k-job queue repeats the same few thousand lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import product

from slurmcast.errors import SourceError

#: Largest number of names one expression may expand to; a corrupt range such
#: as ``n[0-99999999999]`` must fail rather than exhaust memory.
MAX_HOSTS = 1_000_000

#: Values Slurm prints instead of a node list when a job has no nodes.
EMPTY_NODE_LISTS = frozenset({"", "(null)", "None assigned", "N/A", "(None)", "None"})

_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


def expand(expression: str) -> tuple[str, ...]:
    """Expand a Slurm hostlist expression into node names, in Slurm's order.

    Handles several comma-separated items (``gpu-[1-2],cpu01``), ranges and
    single numbers inside brackets (``node[001-003,007]``), zero padding (the
    width of a range's lower bound, as Slurm does) and several bracket groups
    in one name (``r[1-2]n[01-02]`` gives ``r1n01, r1n02, r2n01, r2n02``).
    The values Slurm prints for "no nodes" (``""``, ``(null)``,
    ``None assigned``) expand to an empty tuple.

    Args:
        expression: the hostlist as Slurm printed it.

    Returns:
        The node names; duplicates are kept, as Slurm keeps them.

    Raises:
        SourceError: unbalanced or nested brackets, a non-numeric or reversed
            range, or more than ``MAX_HOSTS`` names.
    """
    return _expand_cached(expression.strip())


@lru_cache(maxsize=65536)
def _expand_cached(expression: str) -> tuple[str, ...]:
    if expression in EMPTY_NODE_LISTS:
        return ()
    if "[" not in expression and "]" not in expression:
        # Fast path: plain names ("node001" or "a,b,c") need no bracket parsing.
        return tuple(part for part in expression.split(",") if part)
    names: list[str] = []
    for item in _split_top_level(expression):
        names.extend(_expand_item(item, expression))
        if len(names) > MAX_HOSTS:
            raise SourceError(
                f"hostlist {expression[:80]!r} expands to more than {MAX_HOSTS} names"
            )
    return tuple(names)


def _split_top_level(expression: str) -> list[str]:
    """Split at commas that are outside brackets."""
    items: list[str] = []
    depth = 0
    start = 0
    for index, char in enumerate(expression):
        if char == "[":
            depth += 1
            if depth > 1:
                raise SourceError(f"nested brackets in hostlist {expression[:80]!r}")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise SourceError(f"unbalanced ']' in hostlist {expression[:80]!r}")
        elif char == "," and depth == 0:
            if index > start:
                items.append(expression[start:index])
            start = index + 1
    if depth != 0:
        raise SourceError(f"unbalanced '[' in hostlist {expression[:80]!r}")
    if start < len(expression):
        items.append(expression[start:])
    return items


def _expand_item(item: str, expression: str) -> list[str]:
    """Expand one comma-free-at-top-level item such as ``r[1-2]n[01-02]``."""
    pieces: list[list[str]] = []
    position = 0
    while position < len(item):
        open_at = item.find("[", position)
        if open_at < 0:
            pieces.append([item[position:]])
            break
        if open_at > position:
            pieces.append([item[position:open_at]])
        close_at = item.find("]", open_at)
        pieces.append(_expand_brackets(item[open_at + 1 : close_at], expression))
        position = close_at + 1
    total = 1
    for choices in pieces:
        total *= len(choices)
    if total > MAX_HOSTS:
        raise SourceError(f"hostlist {expression[:80]!r} expands to more than {MAX_HOSTS} names")
    return ["".join(parts) for parts in product(*pieces)]


def _expand_brackets(body: str, expression: str) -> list[str]:
    """Expand the inside of one bracket group: ``001-003,007``."""
    values: list[str] = []
    for part in body.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise SourceError(f"bad range {part!r} in hostlist {expression[:80]!r}")
        if not dash:
            values.append(low)
            continue
        first, last = int(low), int(high)
        if last < first:
            raise SourceError(f"reversed range {part!r} in hostlist {expression[:80]!r}")
        if last - first >= MAX_HOSTS:
            raise SourceError(
                f"hostlist {expression[:80]!r} expands to more than {MAX_HOSTS} names"
            )
        # Slurm pads every number of a range to the width of its lower bound.
        width = len(low)
        values.extend(str(number).zfill(width) for number in range(first, last + 1))
    return values


def compress(names: Iterable[str]) -> str:
    """Compress node names into a hostlist expression (inverse of :func:`expand`).

    Names sharing a prefix are merged into one bracket group with ranges of
    consecutive numbers of equal width; the order of first appearance of each
    prefix is kept and numbers are sorted within a prefix. Duplicates are
    dropped.

    Args:
        names: node names.

    Returns:
        An expression such that ``set(expand(result)) == set(names)``.
    """
    groups: dict[str, set[str]] = {}
    plain: dict[str, None] = {}
    order: list[tuple[bool, str]] = []
    for name in names:
        match = _TRAILING_NUMBER.match(name)
        if match is None:
            if name and name not in plain:
                plain[name] = None
                order.append((False, name))
            continue
        prefix, digits = match.group(1), match.group(2)
        if prefix not in groups:
            groups[prefix] = set()
            order.append((True, prefix))
        groups[prefix].add(digits)
    parts: list[str] = []
    for numbered, key in order:
        if not numbered:
            parts.append(key)
            continue
        digits_list = sorted(groups[key], key=lambda d: (int(d), len(d)))
        ranges = _ranges(digits_list)
        if len(ranges) == 1 and "-" not in ranges[0]:
            parts.append(f"{key}{ranges[0]}")
        else:
            parts.append(f"{key}[{','.join(ranges)}]")
    return ",".join(parts)


def _ranges(digits_list: list[str]) -> list[str]:
    """Runs of consecutive numbers that re-expand to exactly the same strings."""
    ranges: list[str] = []
    run_start = run_end = digits_list[0]
    for digits in digits_list[1:]:
        follows = int(digits) == int(run_end) + 1
        if follows and digits == str(int(digits)).zfill(len(run_start)):
            run_end = digits
            continue
        ranges.append(run_start if run_start == run_end else f"{run_start}-{run_end}")
        run_start = run_end = digits
    ranges.append(run_start if run_start == run_end else f"{run_start}-{run_end}")
    return ranges
