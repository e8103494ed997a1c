"""Presence of a single instance: what it reports is all there is."""

from __future__ import annotations

from typing import Any


class LocalPresence:
    """One instance: what it reports is all there is."""

    def __init__(self) -> None:
        self._reports: dict[str, dict[str, Any]] = {}

    async def report(self, instance: str, counts: dict[str, Any]) -> None:
        self._reports = {instance: counts}

    async def instances(self) -> dict[str, dict[str, Any]]:
        return dict(self._reports)
