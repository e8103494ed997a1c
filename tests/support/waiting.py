"""Waiting for a condition that has no event to await (e.g. a server-side counter)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], object], timeout: float = 30.0
) -> T:
    """Re-run ``probe`` until ``accept`` is truthy for its result; fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            if accept(value):
                return value
            await asyncio.sleep(0.02)


async def take(
    messages: AsyncIterator[dict[str, Any]], count: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The next ``count`` messages of a subscription (an async iterator); fail after ``timeout``."""
    taken: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async for message in messages:
            taken.append(message)
            if len(taken) == count:
                break
    return taken


async def until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Wait until ``condition()`` is truthy (in-process state, e.g. a counter); fail after
    ``timeout``."""

    async def probe() -> object:
        return condition()

    await eventually(probe, bool, timeout)


@contextlib.asynccontextmanager
async def running(loop: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """``loop`` (a component's ``run()``) as a task for the block; cancelled after it."""
    task = asyncio.create_task(loop)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
