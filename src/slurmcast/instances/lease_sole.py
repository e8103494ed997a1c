"""The lease of a broker no one else shares: always held, nothing to fence."""

from __future__ import annotations


class SoleLease:
    token: str | None = None

    async def acquire(self) -> bool:
        return True

    async def renew(self) -> bool:
        return True

    async def release(self) -> None:
        return None
