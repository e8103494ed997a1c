"""Readable quantities for payloads."""

from __future__ import annotations


def format_memory(mib: int | None) -> str | None:
    """MiB as dashboards print memory: ``"64GB"``, ``"1.5GB"``, ``"512MB"``, ``"2TB"``.

    Slurm counts memory in MiB and labels it M/G/T; we keep its binary units
    and its short labels so the numbers match ``sinfo`` and ``squeue``.
    """
    if mib is None:
        return None
    for limit, label in ((1024 * 1024, "TB"), (1024, "GB")):
        if mib >= limit:
            value = round(mib / limit, 1)
            return f"{value:g}{label}"
    return f"{mib}MB"
