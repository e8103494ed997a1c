import asyncio

import pytest

from slurmcast.cancellation import raise_if_cancelled


async def command_that_hides_cancellation() -> None:
    """What some client libraries do: a cancelled call surfaces as a connection error."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        raise ConnectionError("connection closed") from None


async def retrying_loop() -> None:
    while True:
        try:
            await command_that_hides_cancellation()
        except ConnectionError:
            raise_if_cancelled()
        await asyncio.sleep(0.01)


async def test_a_retry_loop_ends_when_cancelled_even_if_the_library_hid_it():
    task = asyncio.create_task(retrying_loop())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task


async def test_the_premise_a_cancelled_command_can_surface_as_another_error():
    task = asyncio.create_task(command_that_hides_cancellation())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(ConnectionError):
        await task
