"""Waiting for a condition that has no event to await (e.g. a server-side counter)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float = 30.0
) -> T:
    """Re-run ``probe`` until ``accept`` holds for its result; fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            if accept(value):
                return value
            await asyncio.sleep(0.02)
