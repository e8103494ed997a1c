"""What /health reports about the cluster source."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slurmcast.core.timefmt import iso_z


@dataclass
class SourceHealth:
    """Success and failure bookkeeping of every monitor loop using one source."""

    kind: str
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failing: dict[str, str] = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        return bool(self.failing)

    def record_success(self, loop: str, now: datetime) -> bool:
        """Returns True when this success ends a degraded period."""
        was_degraded = self.degraded
        self.failing.pop(loop, None)
        self.last_success = now
        return was_degraded and not self.degraded

    def record_failure(self, loop: str, message: str, now: datetime) -> bool:
        """Returns True when this failure starts a degraded period."""
        was_degraded = self.degraded
        self.failing[loop] = message
        self.last_error = message
        self.last_error_at = now
        return not was_degraded

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "last_success": iso_z(self.last_success),
            "last_error": self.last_error,
            "last_error_at": iso_z(self.last_error_at),
            "failing": dict(self.failing),
        }
