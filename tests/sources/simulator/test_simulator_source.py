"""Tests of the simulator source: wall-clock time mapped onto the simulated cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from slurmcast.core.records import JobState
from slurmcast.errors import SourceError
from slurmcast.ports import Source
from slurmcast.sources.simulator.cluster import SimulatedCluster
from slurmcast.sources.simulator.source import INLINE_TICKS, SimulatorSource

T = TypeVar("T")


class FakeClock:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


WALL = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def make_source(speed: float, clock: FakeClock, **kwargs: Any) -> SimulatorSource:
    return SimulatorSource(7, speed, 16, clock=clock, wall_clock=lambda: WALL, **kwargs)


async def test_source_honours_speed() -> None:
    clock = FakeClock()
    source: Source = make_source(60.0, clock, warmup_s=0)
    await source.start()
    assert (await source.jobs()).taken_at == WALL
    clock.t += 10
    jobs = await source.jobs()
    assert jobs.taken_at == WALL + timedelta(minutes=10)
    assert jobs.jobs, "ten simulated minutes bring jobs"
    clock.t += 0.5
    assert (await source.nodes()).taken_at == WALL + timedelta(minutes=10, seconds=30)
    assert source.describe() == {
        "kind": "simulator",
        "seed": 7,
        "speed": 60.0,
        "nodes": 16,
        "sim_time": (WALL + timedelta(minutes=10, seconds=30)).isoformat(),
    }
    await source.close()


async def test_source_matches_the_pure_cluster() -> None:
    clock = FakeClock()
    source = make_source(3.0, clock, warmup_s=1800)
    cluster = SimulatedCluster(7, WALL, 16, warmup_s=1800)
    clock.t += 200
    cluster.advance_to(WALL + timedelta(seconds=600))
    assert await source.jobs() == cluster.jobs_snapshot()
    assert await source.nodes() == cluster.nodes_snapshot()


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan"), float("inf")])
def test_source_rejects_bad_speed(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        make_source(speed, FakeClock())


def test_source_rejects_bad_node_count() -> None:
    with pytest.raises(ValueError, match="nodes"):
        SimulatorSource(1, 1.0, 40, clock=FakeClock(), wall_clock=lambda: WALL)


async def test_final_states_returns_only_what_the_archive_knows() -> None:
    clock = FakeClock()
    source = make_source(3600.0, clock)
    clock.t += 2
    jobs = await source.jobs()
    finished = next(j for j in jobs.jobs.values() if j.state.is_terminal)
    running = next(j for j in jobs.jobs.values() if j.state is JobState.RUNNING)
    asked = {j.job_id: j for j in (finished, running)}
    asked["42"] = replace(running, job_id="42")
    found = await source.final_states(asked, WALL)
    assert found == {finished.job_id: finished}


def spy_to_thread(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = asyncio.to_thread

    async def to_thread(func: Callable[..., T], /, *args: Any) -> T:
        calls.append(1)
        return await real(func, *args)

    monkeypatch.setattr(asyncio, "to_thread", to_thread)
    return calls


async def test_long_catch_up_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = spy_to_thread(monkeypatch)
    clock = FakeClock()
    source = make_source(3600.0, clock, warmup_s=0)
    clock.t += 0.5
    assert INLINE_TICKS > 0.5 * 3600, "half an hour is caught up inline"
    await source.nodes()
    assert calls == []
    clock.t += 10  # ten simulated hours: in a thread
    results = await asyncio.gather(source.jobs(), source.nodes(), source.jobs())
    assert calls == [1], "concurrent callers share one catch-up"
    expected = WALL + timedelta(hours=10.5)
    assert {r.taken_at for r in results} == {expected}
    assert results[0] == results[2]


async def test_cancelled_catch_up_is_awaited_by_the_next_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = asyncio.Event()
    calls: list[int] = []

    async def gated(func: Callable[..., T], /, *args: Any) -> T:
        calls.append(1)
        await gate.wait()
        return func(*args)

    monkeypatch.setattr(asyncio, "to_thread", gated)
    clock = FakeClock()
    source = make_source(3600.0, clock, warmup_s=0)
    clock.t += 10
    first = asyncio.create_task(source.jobs())
    await until(lambda: bool(calls))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.create_task(source.jobs())
    await asyncio.sleep(0)
    assert not second.done(), "must wait for the catch-up still running"
    gate.set()
    jobs = await second
    assert jobs.taken_at == WALL + timedelta(hours=10)
    assert calls == [1]


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_closed_source_raises_source_error() -> None:
    source = make_source(1.0, FakeClock())
    await source.close()
    calls: list[Callable[[], Awaitable[object]]] = [
        source.jobs,
        source.nodes,
        source.start,
        lambda: source.final_states({}, WALL),
    ]
    for call in calls:
        with pytest.raises(SourceError):
            await call()


async def test_source_default_clocks_are_real() -> None:
    before = datetime.now(UTC)
    source = SimulatorSource(1, 1.0, 8, warmup_s=0)
    jobs = await source.jobs()
    after = datetime.now(UTC)
    assert before <= jobs.taken_at <= after
    assert datetime.fromisoformat(source.describe()["sim_time"]) == jobs.taken_at
