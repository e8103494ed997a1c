"""``slurmcast tail`` as a real process against a real server; output read as it comes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slurmcast.app import SlurmcastApp

from support.server import WAIT, http_json, running_server
from support.tokens import SECRET, hs256

SLURMCAST = Path(sys.executable).with_name("slurmcast")
QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Tail:
    """A running ``slurmcast tail``; its stdout and stderr are read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.errors: list[str] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def run(cls, *args: str, token: str | None = None) -> AsyncIterator[Tail]:
        env = {k: v for k, v in os.environ.items() if k != "SLURMCAST_TOKEN"}
        if token is not None:
            env["SLURMCAST_TOKEN"] = token
        process = await asyncio.create_subprocess_exec(
            str(SLURMCAST),
            "tail",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        tail = cls(process)
        try:
            yield tail
        finally:
            if process.returncode is None:
                process.kill()
            await process.communicate()  # to the end of both pipes: nothing left open

    async def line(self) -> str:
        """The next line on stdout."""
        assert self.process.stdout is not None
        async with asyncio.timeout(WAIT):
            raw = await self.process.stdout.readline()
        assert raw, f"stdout ended; stderr: {self.errors}"
        return raw.decode().rstrip("\n")

    async def json(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await self.line())
        return message

    async def stderr_until(self, text: str) -> str:
        """Read stderr until a line containing ``text``."""
        assert self.process.stderr is not None
        async with asyncio.timeout(WAIT):
            while True:
                raw = await self.process.stderr.readline()
                assert raw, f"stderr ended before {text!r}: {self.errors}"
                self.errors.append(raw.decode().rstrip("\n"))
                if text in self.errors[-1]:
                    return self.errors[-1]

    async def interrupt(self) -> int:
        """Ctrl-C; returns the exit status."""
        self.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT):
            return await self.process.wait()

    async def status(self) -> tuple[int, str]:
        """Wait for the process to exit by itself: its status and all of stderr."""
        async with asyncio.timeout(WAIT):
            _, err = await self.process.communicate()
        return self.process.returncode or 0, "\n".join([*self.errors, err.decode()])


def url(app: SlurmcastApp) -> str:
    return f"ws://127.0.0.1:{app.ws.port}/"


async def job_update(
    app: SlurmcastApp, job_id: str, user: str, status: str, exit_code: int | None = None
) -> None:
    data = {
        "job_id": job_id,
        "name": "md_sim",
        "user": user,
        "status": status,
        "previous_status": "RUNNING",
        "exit_code": exit_code,
        "exit_signal": None,
        "partition": "cpu",
    }
    await app.node.publish("jobs", "job_update", data, datetime.now(UTC), user)


async def broadcast(app: SlurmcastApp, text: str, channel: str | None = "jobs") -> None:
    body: dict[str, Any] = {"message": {"text": text}}
    if channel is not None:
        body["channel"] = channel
    status, reply = await http_json(app, "POST", "/broadcast", body)
    assert status == 200, reply


async def test_json_lines_for_jq() -> None:
    async with (
        running_server(**QUIET) as app,
        Tail.run("jobs", "--json", "--url", url(app)) as tail,
    ):
        following = await tail.stderr_until("following jobs")
        await broadcast(app, "maintenance at 18:00")
        message = await tail.json()
        assert message["channel"] == "jobs" and message["type"] == "broadcast"
        assert message["data"] == {"text": "maintenance at 18:00"}
        assert f"after {message['offset'] - 1}:{message['epoch']}" in following
        await job_update(app, "1251", "carol", "FAILED", 3)
        update = await tail.json()
        assert update["type"] == "job_update" and update["data"]["exit_code"] == 3
        assert update["offset"] == message["offset"] + 1
        assert await tail.interrupt() == 0


async def test_msgpack_without_compression_prints_the_same_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="slurmcast.ws"):
        async with (
            running_server(**QUIET) as app,
            Tail.run(
                "jobs", "--json", "--url", url(app), "--wire-format", "msgpack", "--no-compression"
            ) as tail,
        ):
            await tail.stderr_until("following jobs")
            await broadcast(app, "maintenance at 18:00")
            message = await tail.json()
            assert message["type"] == "broadcast"
            assert message["data"] == {"text": "maintenance at 18:00"}
            assert await tail.interrupt() == 0
    # The server says how each client connected: msgpack, and no deflate.
    (connected,) = [r.getMessage() for r in caplog.records if " connected from " in r.getMessage()]
    assert connected.endswith("(msgpack)"), connected


async def test_readable_lines() -> None:
    async with running_server(**QUIET) as app, Tail.run("jobs", "--url", url(app)) as tail:
        await tail.stderr_until("following jobs")
        await broadcast(app, "maintenance at 18:00")
        assert re.fullmatch(f"{TIME} jobs broadcast maintenance at 18:00", await tail.line())
        await job_update(app, "1251", "carol", "FAILED", 3)
        assert re.fullmatch(
            f"{TIME} jobs job_update 1251 md_sim carol RUNNING -> FAILED exit 3", await tail.line()
        )
        # Messages for every client are shown too.
        await broadcast(app, "hello everyone", channel=None)
        assert re.fullmatch(f"{TIME} all broadcast hello everyone", await tail.line())
        assert await tail.interrupt() == 0


async def test_snapshot_first_then_deltas() -> None:
    async with (
        running_server(**QUIET) as app,
        Tail.run("nodes", "--snapshot", "--url", url(app)) as tail,
    ):
        first = await tail.line()
        assert re.fullmatch(r"-- nodes snapshot: \d+ items? at \d+:[0-9a-f]+", first)
        await broadcast(app, "rebooting node003", channel="nodes")
        assert re.fullmatch(f"{TIME} nodes broadcast rebooting node003", await tail.line())
        assert await tail.interrupt() == 0


async def test_filters_repeated_fields_mean_any_of() -> None:
    async with (
        running_server(**QUIET) as app,
        Tail.run(
            "jobs",
            "--json",
            "--url",
            url(app),
            "--filter",
            "user=alice",
            "--filter",
            "user=carol",
            "--filter",
            "status=FAILED",
        ) as tail,
    ):
        await tail.stderr_until("following jobs")
        await job_update(app, "1", "bob", "FAILED")
        await job_update(app, "2", "alice", "COMPLETED")
        await job_update(app, "3", "alice", "FAILED")
        await job_update(app, "4", "carol", "FAILED")
        assert [(await tail.json())["data"]["job_id"] for _ in range(2)] == ["3", "4"]
        assert await tail.interrupt() == 0


async def test_since_replays_first_with_or_without_the_epoch() -> None:
    async with running_server(**QUIET) as app:
        for seq in range(5):
            await app.node.publish("jobs", "broadcast", {"seq": seq}, datetime.now(UTC))
        top = (await app.node.history("jobs", since=None, limit=1)).top
        async with Tail.run(
            "jobs", "--json", "--url", url(app), "--since", str(top.offset - 2)
        ) as tail:
            replayed = [await tail.json(), await tail.json()]
            assert [m["data"]["seq"] for m in replayed] == [3, 4]
            assert [m["offset"] for m in replayed] == [top.offset - 1, top.offset]
            assert await tail.interrupt() == 0
        since = f"{top.offset - 1}:{top.epoch}"
        async with Tail.run("jobs", "--json", "--url", url(app), "--since", since) as tail:
            assert (await tail.json())["data"]["seq"] == 4
            assert await tail.interrupt() == 0
        # A position from another history cannot be replayed: the stream says so.
        async with Tail.run("jobs", "--url", url(app), "--since", "3:0ld3p0c4") as tail:
            resync = await tail.line()
            assert (
                resync == f"-- jobs resync: history lost; state reset from {top.offset}:{top.epoch}"
            )
            assert await tail.interrupt() == 0


async def test_unreachable_server_exits_non_zero_with_a_clear_message() -> None:
    port = free_port()  # nothing listens there
    async with Tail.run("jobs", "--url", f"ws://127.0.0.1:{port}/") as tail:
        status, stderr = await tail.status()
    assert status == 1
    assert f"cannot connect to ws://127.0.0.1:{port}/" in stderr and "Traceback" not in stderr


async def test_tokens_a_refused_one_exits_non_zero() -> None:
    jwt = {"auth": "jwt", "jwt_secret": SECRET, **QUIET}
    async with running_server(**jwt) as app:
        async with Tail.run("jobs", "--url", url(app), "--token", "garbage") as tail:
            status, stderr = await tail.status()
        assert status == 1
        assert "authentication failed: invalid_token: token is malformed" in stderr
        async with Tail.run("jobs", "--json", "--url", url(app), token=hs256("carol")) as tail:
            await tail.stderr_until("following jobs")
            await job_update(app, "7", "bob", "FAILED")  # not carol's: never shown
            await job_update(app, "8", "carol", "FAILED")
            assert (await tail.json())["data"]["job_id"] == "8"
            assert await tail.interrupt() == 0


async def test_bad_arguments_exit_2() -> None:
    for args, words in [
        (["jobs", "--filter", "user"], "--filter: expected FIELD=VALUE"),
        (["jobs", "--since", "soon"], "--since: expected OFFSET"),
        (["jobs", "--url", "http://example.org/"], "not a WebSocket URL"),
        (["all", "--snapshot"], "takes no --filter"),
        (["jobs", "--wire-format", "xml"], "--wire-format: invalid choice: 'xml'"),
    ]:
        async with Tail.run(*args) as tail:
            status, stderr = await tail.status()
        assert status == 2 and words in stderr, (args, stderr)
