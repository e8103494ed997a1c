"""The source contract: every implementation passes the same tests.

A source (``slurmcast.ports.Source``) starts, lists every job and node it knows
as typed records keyed by job id and node name, resolves how jobs ended for at
most the ids it is asked about (never inventing one, never raising when
accounting is down, and saying so in ``describe()``), describes itself for
/health, and fails with ``SourceError`` only: never a partial listing.

The implementations: the simulator; the Slurm CLI source running fake Slurm
commands that print the real recordings of every release (22.05's CLI captures,
the newest API's JSON of the later ones); the slurmrestd source against a
stand-in slurmrestd serving every release's recorded replies.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import orjson
import pytest

from slurmcast.core.records import JobRecord, JobsListing, JobState, NodeRecord, NodesListing
from slurmcast.errors import SourceError
from slurmcast.ports import Source
from slurmcast.sources.simulator.source import SimulatorSource
from slurmcast.sources.slurm_cli import SlurmCliSource, SlurmSettings
from slurmcast.sources.slurmrestd.client import RestSettings
from slurmcast.sources.slurmrestd.source import SlurmRestSource

from support.fakerestd import FakeRestd
from support.fakeslurm import FakeSlurm
from support.slurm_fixtures import OLDEST, rest_apis, rest_releases

#: Before every recorded job: the lower bound ``final_states`` is given.
SINCE = datetime(2020, 1, 1, tzinfo=UTC)
#: A job id no recording and no simulated cluster of this size has.
UNKNOWN_ID = "987654321"


@dataclass
class Subject:
    source: Source
    #: Make the cluster unreachable: every listing fails from now on.
    break_backend: Callable[[], None]
    #: Make accounting fail (None: the source's accounting cannot fail).
    break_accounting: Callable[[], None] | None


class SubjectFactory(Protocol):
    def __call__(self, root: Path) -> contextlib.AbstractAsyncContextManager[Subject]: ...


@contextlib.asynccontextmanager
async def simulator(root: Path) -> AsyncIterator[Subject]:
    now = [0.0]
    source = SimulatorSource(7, speed=60.0, nodes=8, clock=lambda: now[0])

    def advance_fails(target: datetime) -> None:
        raise RuntimeError("the simulation broke")

    def break_backend() -> None:
        source.cluster.advance_to = advance_fails  # type: ignore[method-assign, assignment]
        now[0] += 60.0

    try:
        yield Subject(source, break_backend, None)
    finally:
        await source.close()


def slurm_cli(release: str, api: str | None) -> SubjectFactory:
    @contextlib.asynccontextmanager
    async def factory(root: Path) -> AsyncIterator[Subject]:
        fake = FakeSlurm(root) if api is None else FakeSlurm.recording(root, release, api)
        source = SlurmCliSource(SlurmSettings(bin_dir=str(fake.bin), timeout=5))

        def break_backend() -> None:
            for command in ("squeue", "sinfo", "scontrol"):
                fake.fail(command, "Unable to contact slurm controller (connect failure)")

        def break_accounting() -> None:
            fake.fail("sacct", "sacct: error: Problem talking to the database: Connection refused")

        try:
            yield Subject(source, break_backend, break_accounting)
        finally:
            await source.close()

    return factory


def slurmrestd(release: str) -> SubjectFactory:
    @contextlib.asynccontextmanager
    async def factory(root: Path) -> AsyncIterator[Subject]:
        async with FakeRestd(release).running() as fake:
            source = SlurmRestSource(RestSettings(url=fake.url, timeout=5))

            def break_backend() -> None:
                fake.fail_with = (500, b'{"errors": [{"error": "Unable to contact slurmctld"}]}')
                fake.change()

            def break_accounting() -> None:
                for key in [key for key in fake.documents if key[0] == "slurmdb"]:
                    del fake.documents[key]

            try:
                yield Subject(source, break_backend, break_accounting)
            finally:
                await source.close()

    return factory


SOURCES: dict[str, SubjectFactory] = {
    "simulator": simulator,
    f"slurm-cli-{OLDEST}": slurm_cli(OLDEST, None),
    **{
        f"slurm-cli-{release}-{rest_apis(release)[-1]}": slurm_cli(release, rest_apis(release)[-1])
        for release in rest_releases()
        if release != OLDEST  # FakeSlurm(root) serves its CLI captures
    },
    **{f"slurmrestd-{release}": slurmrestd(release) for release in rest_releases()},
}
#: The sources whose accounting is a service that can fail.
WITH_ACCOUNTING = sorted(name for name in SOURCES if name != "simulator")


@pytest.fixture(params=sorted(SOURCES))
def make_source(request: pytest.FixtureRequest) -> SubjectFactory:
    return SOURCES[request.param]


@pytest.fixture(params=WITH_ACCOUNTING)
def make_source_with_accounting(request: pytest.FixtureRequest) -> SubjectFactory:
    return SOURCES[request.param]


@contextlib.asynccontextmanager
async def started(make_source: SubjectFactory, root: Path) -> AsyncIterator[Subject]:
    async with make_source(root) as subject:
        await subject.source.start()
        yield subject


def assert_describes(source: Source) -> None:
    facts = source.describe()
    assert isinstance(facts, dict) and facts["kind"] == source.kind
    orjson.dumps(facts)  # served as JSON by /health


def finished(listing: JobsListing) -> dict[str, JobRecord]:
    return {job_id: job for job_id, job in listing.jobs.items() if job.state.is_terminal}


# ---------------------------------------------------------------- listings


async def test_jobs_are_typed_records_keyed_by_job_id(
    make_source: SubjectFactory, tmp_path: Path
) -> None:
    async with started(make_source, tmp_path) as subject:
        listing = await subject.source.jobs()
        assert isinstance(listing, JobsListing)
        assert listing.taken_at.tzinfo is not None
        assert listing.jobs
        for job_id, job in listing.jobs.items():
            assert isinstance(job, JobRecord) and job.job_id == job_id
            assert isinstance(job.state, JobState)
        # Finished jobs are listed too ("finished ones included").
        assert finished(listing)


async def test_nodes_are_typed_records_keyed_by_name(
    make_source: SubjectFactory, tmp_path: Path
) -> None:
    async with started(make_source, tmp_path) as subject:
        listing = await subject.source.nodes()
        assert isinstance(listing, NodesListing)
        assert listing.taken_at.tzinfo is not None
        assert listing.nodes
        for name, node in listing.nodes.items():
            assert isinstance(node, NodeRecord) and node.name == name


async def test_listings_can_be_asked_again(make_source: SubjectFactory, tmp_path: Path) -> None:
    # A poller asks every interval: the second answer is a whole listing again.
    async with started(make_source, tmp_path) as subject:
        first, second = await subject.source.jobs(), await subject.source.jobs()
        assert second.taken_at >= first.taken_at
        assert set(second.jobs) == set(first.jobs)
        nodes = [await subject.source.nodes() for _ in range(2)]
        assert set(nodes[0].nodes) == set(nodes[1].nodes)


# ---------------------------------------------------------------- final states


async def test_final_states_of_no_jobs_is_empty(
    make_source: SubjectFactory, tmp_path: Path
) -> None:
    async with started(make_source, tmp_path) as subject:
        assert dict(await subject.source.final_states({}, SINCE)) == {}


async def test_final_states_resolve_at_most_the_ids_asked(
    make_source: SubjectFactory, tmp_path: Path
) -> None:
    async with started(make_source, tmp_path) as subject:
        source = subject.source
        listing = await source.jobs()
        done = finished(listing)
        some = sorted(listing.jobs)[:2]
        asked: dict[str, JobRecord] = {**done, **{job_id: listing.jobs[job_id] for job_id in some}}
        invented = dataclasses.replace(next(iter(done.values())), job_id=UNKNOWN_ID)
        asked[UNKNOWN_ID] = invented
        resolved = await source.final_states(asked, SINCE)
        assert isinstance(resolved, Mapping)
        assert set(resolved) <= set(asked) and UNKNOWN_ID not in resolved
        for job_id, record in resolved.items():
            assert isinstance(record, JobRecord) and record.job_id == job_id
            assert isinstance(record.state, JobState)
        # While accounting answers, the finished jobs it recorded are resolved.
        assert isinstance(source.accounting_answers, bool)
        if source.accounting_answers:
            assert set(resolved) & set(done)
        # Only the jobs asked about were looked up: fewer ids, fewer records.
        (one,) = sorted(done)[:1]
        assert set(await source.final_states({one: done[one]}, SINCE)) <= {one}


async def test_accounting_down_is_no_error_but_is_described(
    make_source_with_accounting: SubjectFactory, tmp_path: Path
) -> None:
    async with started(make_source_with_accounting, tmp_path) as subject:
        source = subject.source
        done = finished(await source.jobs())
        assert subject.break_accounting is not None
        subject.break_accounting()
        resolved = await source.final_states(done, SINCE)  # does not raise
        assert set(resolved) <= set(done)
        assert source.accounting_answers is False
        assert_describes(source)
        # /health reads the source's problems: accounting being down is one.
        assert source.describe()["problems"]


# ---------------------------------------------------------------- describe, failures, close


async def test_describe_names_the_kind(make_source: SubjectFactory, tmp_path: Path) -> None:
    async with make_source(tmp_path) as subject:
        assert isinstance(subject.source.kind, str) and subject.source.kind
        await subject.source.start()
        assert_describes(subject.source)
        await subject.source.jobs()
        await subject.source.nodes()
        assert_describes(subject.source)


@pytest.mark.parametrize("when", ["after start", "before start"])
async def test_a_failing_cluster_is_a_source_error_not_a_partial_listing(
    make_source: SubjectFactory, tmp_path: Path, when: str
) -> None:
    async with make_source(tmp_path) as subject:
        source = subject.source
        if when == "after start":
            await source.start()
            await source.jobs()
            await source.nodes()
            subject.break_backend()
        else:
            subject.break_backend()
            with contextlib.suppress(SourceError):  # start "may raise SourceError", nothing else
                await source.start()
        with pytest.raises(SourceError):
            await source.jobs()
        with pytest.raises(SourceError):
            await source.nodes()
        assert_describes(source)


async def test_a_source_never_started_can_be_closed(
    make_source: SubjectFactory, tmp_path: Path
) -> None:
    async with make_source(tmp_path) as subject:
        await subject.source.close()


async def test_closing_twice_is_harmless(make_source: SubjectFactory, tmp_path: Path) -> None:
    # Only the simulator refuses listings once closed; the CLI and REST sources'
    # close() releases resources and nothing more, which the port does not forbid.
    async with started(make_source, tmp_path) as subject:
        await subject.source.jobs()
        await subject.source.close()
        await subject.source.close()
