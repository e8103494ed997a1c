"""Slurm hostlist expressions: ``node[001-003,007]`` to node names and back.

A typed adapter around python-hostlist (module ``hostlist``; GPL-2.0-or-later,
untyped), which expands as Slurm does: Slurm's order, duplicates kept, numbers
padded to the width of a range's lower bound, several bracket groups in one
name. The adapter adds what the callers rely on: ``SourceError`` for a bad
expression, the values Slurm prints for "no nodes", a bound on the whole
expression, and a cache, because a 100k-job queue repeats the same few
thousand lists. Slurm prints every node list in this form (squeue
``%N``/``nodes``, sinfo, sacct ``NodeList``, scontrol ``NodeList=``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Final

import hostlist as _hostlist

from slurmcast.errors import SourceError

#: Largest number of names one expression may expand to; a corrupt range such
#: as ``n[0-99999999999]`` must fail rather than exhaust memory. python-hostlist
#: refuses more than this per comma-separated item; ``expand`` bounds the total.
MAX_HOSTS: Final = 100_000

#: Values Slurm prints instead of a node list when a job has no nodes.
EMPTY_NODE_LISTS = frozenset({"", "(null)", "None assigned", "N/A", "(None)", "None"})


def expand(expression: str) -> tuple[str, ...]:
    """Expand a Slurm hostlist expression into node names, in Slurm's order.

    ``gpu-[1-2],cpu01`` gives ``gpu-1, gpu-2, cpu01``; ``r[1-2]n[01-02]`` gives
    ``r1n01, r1n02, r2n01, r2n02``; duplicates are kept, as Slurm keeps them.
    The values Slurm prints for "no nodes" (``""``, ``(null)``,
    ``None assigned``) expand to an empty tuple.

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
        # Most lists are plain names ("node001", "a,b"): a split costs a fraction of a parse.
        return tuple(part for part in expression.split(",") if part)
    try:
        names: list[str] = _hostlist.expand_hostlist(expression, allow_duplicates=True)
    except _hostlist.BadHostlist as exc:
        raise SourceError(f"bad hostlist {expression[:80]!r}: {exc}") from exc
    if len(names) > MAX_HOSTS:
        raise SourceError(f"hostlist {expression[:80]!r} expands to more than {MAX_HOSTS} names")
    return tuple(names)


def compress(names: Iterable[str]) -> str:
    """Compress node names into a hostlist expression (inverse of :func:`expand`).

    Sorted and without duplicates, as ``scontrol show hostlistsorted`` prints it:
    ``set(expand(compress(names))) == set(names)``.

    Raises:
        SourceError: a name that cannot be part of a hostlist (``[``, ``]`` or ``,`` in it).
    """
    try:
        expression: str = _hostlist.collect_hostlist(list(names))
    except _hostlist.BadHostlist as exc:
        raise SourceError(f"cannot compress node names: {exc}") from exc
    return expression
