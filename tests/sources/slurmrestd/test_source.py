"""The slurmrestd source against a stand-in slurmrestd serving real recorded replies."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

from slurmcast.core.records import JobState
from slurmcast.errors import ConfigError, ErrorCode, SourceError
from slurmcast.ports import Source
from slurmcast.sources.slurmrestd.client import RestSettings, TokenRefusedError
from slurmcast.sources.slurmrestd.source import SlurmRestSource

from support.fakerestd import FakeRestd
from support.slurm_fixtures import rest_items, rest_recordings, rest_releases

SINCE = datetime(2025, 11, 1, tzinfo=UTC)
RELEASES = rest_releases()
SERVED = rest_recordings()


def token(seconds: float, user: str = "root") -> str:
    claims = {"exp": int(time.time() + seconds), "iat": int(time.time()), "sun": user}
    return jwt.encode(claims, "secret-of-the-slurm-cluster-0123456789", algorithm="HS256")


def source_for(fake: FakeRestd, **settings: Any) -> SlurmRestSource:
    api = settings.pop("api", "auto")
    return SlurmRestSource(RestSettings(url=fake.url, timeout=5, **settings), api=api)


@contextlib.asynccontextmanager
async def started(source: SlurmRestSource) -> AsyncIterator[SlurmRestSource]:
    await source.start()
    try:
        yield source
    finally:
        await source.close()


def recorded(release: str, api: str, what: str) -> set[str]:
    key = "job_id" if what == "jobs" else "name"
    return {str(item[key]) for item in rest_items(release, api, what)}


@pytest.mark.parametrize("release", RELEASES)
async def test_auto_speaks_the_newest_version_and_reads_jobs_and_nodes(release: str) -> None:
    async with FakeRestd(release).running() as fake, started(source_for(fake)) as source:
        _: Source = source
        newest = fake.apis[-1]
        assert source.describe()["api"]["slurm"] == newest
        jobs, nodes = await source.jobs(), await source.nodes()
        assert set(jobs.jobs) == recorded(release, newest, "jobs")
        assert set(nodes.nodes) == recorded(release, newest, "nodes")
        facts = source.describe()
        assert facts["problems"] == [] and facts["release"].startswith(release[:2])
        assert fake.seen("/openapi/v3") and fake.seen(f"/slurm/{newest}/ping")


@pytest.mark.parametrize(("release", "api"), SERVED, ids=[f"{r}-{a}" for r, a in SERVED])
async def test_every_recorded_api_version(release: str, api: str) -> None:
    async with FakeRestd(release).running() as fake, started(source_for(fake, api=api)) as source:
        jobs = await source.jobs()
        assert set(jobs.jobs) == recorded(release, api, "jobs")
        assert set((await source.nodes()).nodes) == recorded(release, api, "nodes")
        assert fake.seen(f"/slurm/{api}/jobs") and fake.seen(f"/slurm/{api}/nodes")
        finished = [job for job in jobs.jobs.values() if job.state.is_terminal]
        assert all(job.exit_code is not None for job in finished)


async def test_a_version_the_server_lacks_stops_the_start_naming_what_it_serves() -> None:
    async with FakeRestd("22.05").running() as fake:
        source = source_for(fake, api="v0.0.42")
        with pytest.raises(ConfigError) as info:
            await source.start()
        await source.close()
    assert "v0.0.42" in info.value.message and "v0.0.36, v0.0.37, v0.0.38" in info.value.message


async def test_unknown_version_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"v0\.0\.36 to v0\.0\.44"):
        SlurmRestSource(RestSettings(url="http://127.0.0.1:1"), api="v9")


async def test_without_an_openapi_description_each_version_is_pinged() -> None:
    async with (
        FakeRestd("25.11", serve_openapi=False).running() as fake,
        started(source_for(fake)) as source,
    ):
        assert source.describe()["api"]["slurm"] == "v0.0.44"
        assert set((await source.jobs()).jobs) == recorded("25.11", "v0.0.44", "jobs")
        assert fake.seen("/slurm/v0.0.44/ping")
        assert not fake.seen("/slurm/v0.0.43/ping")  # the newest answered first


async def test_an_unchanged_cluster_is_answered_not_modified() -> None:
    async with FakeRestd("25.11").running() as fake, started(source_for(fake)) as source:
        first = await source.jobs()
        await source.nodes()
        second = await source.jobs()
        await source.nodes()
        # The second requests were conditional, answered 304, and served from the last listing.
        (conditional,) = [r for r in fake.seen("/jobs") if "update_time" in r.query]
        assert int(conditional.query["update_time"]) <= time.time()
        assert second.jobs == first.jobs and second.taken_at > first.taken_at
        assert source.describe()["not_modified"] == {"jobs": 1, "nodes": 1}
        fake.serve("slurm", "v0.0.44", "jobs", {"errors": [], "jobs": []})
        assert (await source.jobs()).jobs == {}


async def test_a_server_failing_conditional_requests_is_asked_plainly() -> None:
    async with (
        FakeRestd("22.05", broken_conditional={"nodes"}).running() as fake,
        started(source_for(fake)) as source,
    ):
        for _ in range(3):
            assert set((await source.nodes()).nodes) == recorded("22.05", "v0.0.38", "nodes")
        asked = [request.query for request in fake.seen("/slurm/v0.0.38/nodes")]
        # The first plainly, one conditional that failed and its plain retry, then plainly.
        assert ["update_time" in query for query in asked] == [False, True, False, False]
        assert source.describe()["unconditional"] == ["nodes"]
        # Jobs keep their conditional requests.
        await source.jobs()
        await source.jobs()
        assert "update_time" in fake.seen("/slurm/v0.0.38/jobs")[-1].query


async def test_final_states_in_one_encoded_request_with_usage() -> None:
    async with FakeRestd("25.11").running() as fake, started(source_for(fake)) as source:
        jobs = (await source.jobs()).jobs
        asked = {job_id: jobs[job_id] for job_id in ("5737", "5739", "5749") if job_id in jobs}
        assert len(asked) == 3
        finals = await source.final_states(asked, SINCE)
        (request,) = fake.seen("/slurmdb/v0.0.44/jobs")
        assert request.query["step"] == "5737,5739,5749"
        assert request.query["start_time"] == str(int(SINCE.timestamp()))
        assert finals["5737"].state is JobState.TIMEOUT
        assert (finals["5739"].state, finals["5739"].exit_code) == (JobState.FAILED, 1)
        usage = finals["5749"].usage
        assert usage is not None and usage.elapsed_s == 30 and usage.memory_requested_mb == 2048
        assert source.accounting_answers


async def test_2205_accounting_exit_code_is_corrected_from_the_listing() -> None:
    # dbv0.0.38 says return_code 0 for job 2, which exited 3; squeue saw 768 (exit 3).
    async with FakeRestd("22.05").running() as fake, started(source_for(fake)) as source:
        jobs = (await source.jobs()).jobs
        assert jobs["2"].exit_code == 3
        finals = await source.final_states({"2": jobs["2"]}, datetime.now(UTC) - timedelta(hours=1))
        assert (finals["2"].state, finals["2"].exit_code) == (JobState.FAILED, 3)
        (request,) = fake.seen("/slurmdb/v0.0.38/jobs")
        # 22.05 reads the window as a Slurm time in its own zone: relative, zone-free.
        assert request.query["start_time"].startswith("now-")


async def test_refused_token_says_so_and_how_to_renew(tmp_path: Path) -> None:
    token_file = tmp_path / "slurm.jwt"
    token_file.write_text("SLURM_JWT=" + token(3600) + "\n")
    async with FakeRestd("25.11", token="another-token").running() as fake:
        source = source_for(fake, user="slurmcast", token_file=str(token_file))
        async with started(source):
            with pytest.raises(TokenRefusedError) as info:
                await source.jobs()
            message = info.value.message
            assert "HTTP 401" in message and "token or user name is wrong" in message
            assert "scontrol token username=slurmcast" in message and str(token_file) in message
            sent = fake.requests[-1].headers
            assert sent["X-SLURM-USER-NAME"] == "slurmcast"
            # Renewed through the file: the next request uses it, no restart.
            fake.token = token(3600)
            token_file.write_text(fake.token)
            assert (await source.jobs()).jobs
            assert source.describe()["auth"]["token"] == f"file {token_file}"


async def test_expired_token_answered_with_2205s_http_500_is_named_expired() -> None:
    expired = token(-60)
    async with (
        FakeRestd("22.05", token="fresh", refusal_status=500).running() as fake,
        started(source_for(fake, user="root", token=expired)) as source,
    ):
        assert "detection failed" in source.describe()["problems"][0]
        with pytest.raises(TokenRefusedError, match=r"the token expired at 20\d\d-"):
            await source.jobs()
        assert source.describe()["auth"]["token"] == "environment"


async def test_errors_in_a_reply_are_reported_never_parsed_as_data() -> None:
    async with FakeRestd("25.11").running() as fake, started(source_for(fake)) as source:
        await source.jobs()
        failing = {
            "errors": [{"error": "Unable to contact slurm controller", "error_number": 1}],
            "jobs": [],
        }
        fake.serve("slurm", "v0.0.44", "jobs", failing)
        with pytest.raises(SourceError, match="Unable to contact slurm controller"):
            await source.jobs()
        fake.fail_with = (500, orjson.dumps(failing))
        with pytest.raises(SourceError, match="HTTP 500: Unable to contact slurm controller"):
            await source.nodes()


async def test_accounting_failure_is_reported_and_heals() -> None:
    async with FakeRestd("25.11").running() as fake, started(source_for(fake)) as source:
        jobs = (await source.jobs()).jobs
        fake.fail_with = (502, b"Bad Gateway")
        assert await source.final_states({"5739": jobs["5739"]}, SINCE) == {}
        facts = source.describe()
        assert "HTTP 502" in facts["accounting"]["error"] and facts["problems"]
        assert not source.accounting_answers
        fake.fail_with = None
        assert (await source.final_states({"5739": jobs["5739"]}, SINCE))["5739"].exit_code == 1
        assert source.describe()["problems"] == []


async def test_unreachable_and_silent_servers() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    source = SlurmRestSource(RestSettings(url=f"http://127.0.0.1:{port}", timeout=5))
    await source.start()
    assert "unreachable" in source.describe()["problems"][0]
    with pytest.raises(SourceError, match="unreachable") as info:
        await source.jobs()
    assert info.value.temporary
    await source.close()

    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # reads the request, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        source = SlurmRestSource(RestSettings(url=f"http://127.0.0.1:{port}", timeout=0.5))
        with pytest.raises(SourceError) as info:
            await source.jobs()
        assert info.value.code is ErrorCode.SOURCE_TIMEOUT
        await source.close()
        for writer in connections:
            writer.close()
            await writer.wait_closed()


async def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "slurmrestd.socket"
    async with FakeRestd("24.11").running(unix_socket=path) as fake:
        source = SlurmRestSource(RestSettings(url=f"unix://{path}"))
        async with started(source):
            assert set((await source.jobs()).jobs) == recorded("24.11", "v0.0.42", "jobs")
            assert "X-SLURM-USER-TOKEN" not in fake.requests[-1].headers
            assert source.describe()["url"] == f"unix://{path}"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://host", "expected http://host:6820"),
        ("unix://", "expected unix:///path"),
        ("http://user:secret@host:6820", "not in the URL"),
    ],
)
def test_bad_urls(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        SlurmRestSource(RestSettings(url=url))
