import asyncio
import contextlib

import pytest

from slurmcast.cancellation import cancel_and_wait, raise_if_cancelled


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


async def test_a_retry_loop_ends_when_cancelled_even_if_the_library_hid_it() -> None:
    task = asyncio.create_task(retrying_loop())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task


async def test_the_premise_a_cancelled_command_can_surface_as_another_error() -> None:
    task = asyncio.create_task(command_that_hides_cancellation())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(ConnectionError):
        await task


async def loop_that_swallows_one_cancellation(swallowed: asyncio.Event) -> None:
    """A retry loop whose library hid the cancellation once, and that forgot to check."""
    while True:
        try:
            await command_that_hides_cancellation()
        except ConnectionError:
            if swallowed.is_set():
                raise asyncio.CancelledError from None  # the second time, it got through
            swallowed.set()
        await asyncio.sleep(0.01)


async def test_cancel_and_wait_cancels_again_a_task_that_swallowed_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    swallowed = asyncio.Event()
    stubborn = asyncio.create_task(loop_that_swallows_one_cancellation(swallowed), name="stubborn")
    polite = asyncio.create_task(asyncio.sleep(3600), name="polite")
    await asyncio.sleep(0)
    left = await cancel_and_wait([stubborn, polite], grace=0.05)
    assert left == []
    assert swallowed.is_set()
    assert stubborn.cancelled() and polite.cancelled()
    assert "stubborn did not stop" in caplog.text and "cancelling it again" in caplog.text
    assert "polite" not in caplog.text


async def ignores_cancellation_until(released: asyncio.Event) -> None:
    while not released.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await released.wait()


async def test_cancel_and_wait_gives_up_on_a_task_that_never_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released = asyncio.Event()
    task = asyncio.create_task(ignores_cancellation_until(released), name="immortal")
    fine = asyncio.create_task(asyncio.sleep(0), name="fine")
    await asyncio.sleep(0)
    try:
        assert await cancel_and_wait([task, fine], grace=0.02) == [task]
        assert "immortal did not stop" in caplog.text and "leaving it behind" in caplog.text
        assert not task.done()
    finally:
        released.set()  # let the test end
        await task
