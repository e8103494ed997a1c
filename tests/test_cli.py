"""The `slurmcast` command and start.sh / stop.sh, as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from support.server import Client
from support.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]
SLURMCAST = Path(sys.executable).with_name("slurmcast")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def health(port: int) -> dict[str, Any] | None:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/health") as resp,
        ):
            document: dict[str, Any] = await resp.json()
            return document
    except aiohttp.ClientError:
        return None


def env_for(ws_port: int, http_port: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SLURMCAST_DATA_DIR=tempfile.mkdtemp(prefix="slurmcast-cli-"),
        SLURMCAST_HOST="127.0.0.1",
        SLURMCAST_WS_PORT=str(ws_port),
        SLURMCAST_HTTP_PORT=str(http_port),
        **extra,
    )
    return env


async def test_serve_shuts_down_gracefully_on_sigterm(tmp_path: Path) -> None:
    ws_port, http_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SLURMCAST), "serve", "--ws-port", str(ws_port), "--log-level", "debug"],
            env=env_for(ws_port, http_port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await eventually(lambda: health(http_port), lambda h: h is not None)
        async with Client.connect(ws_port) as client:
            await client.subscribe("jobs")
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await client.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "shutdown requested" in text and "slurmcast stopped" in text
    assert "connected from 127.0.0.1" in text and "disconnected from 127.0.0.1" in text


def test_bad_option_exits_with_clear_message() -> None:
    result = subprocess.run(
        [str(SLURMCAST), "serve", "--ws-port", "not-a-port"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--ws-port: expected int" in result.stderr


def test_port_in_use_exits_non_zero() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                str(SLURMCAST),
                "serve",
                "--host",
                "127.0.0.1",
                "--ws-port",
                str(port),
                "--http-port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "cannot start" in result.stderr


def test_help_lists_every_option_with_its_environment_variable() -> None:
    result = subprocess.run(
        [str(SLURMCAST), "serve", "--help"], capture_output=True, text=True, timeout=30
    )
    for option, env in [
        ("--host", "SLURMCAST_HOST"),
        ("--ws-port", "SLURMCAST_WS_PORT"),
        ("--http-port", "SLURMCAST_HTTP_PORT"),
        ("--source", "SLURMCAST_SOURCE"),
        ("--jobs-interval", "SLURMCAST_JOBS_INTERVAL"),
        ("--nodes-interval", "SLURMCAST_NODES_INTERVAL"),
        ("--metrics-interval", "SLURMCAST_METRICS_INTERVAL"),
        ("--sim-seed", "SLURMCAST_SIM_SEED"),
        ("--sim-speed", "SLURMCAST_SIM_SPEED"),
        ("--config", "SLURMCAST_CONFIG"),
        ("--log-level", "SLURMCAST_LOG_LEVEL"),
    ]:
        assert option in result.stdout and env in result.stdout


async def run_script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # In a thread: the client under test shares this event loop and must keep
    # answering (e.g. the closing handshake) while the script runs.
    return await asyncio.to_thread(
        subprocess.run,
        ["bash", str(ROOT / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_start_and_stop_scripts(tmp_path: Path) -> None:
    ws_port, http_port = free_port(), free_port()
    pidfile, logfile = tmp_path / "slurmcast.pid", tmp_path / "slurmcast.log"
    env = env_for(
        ws_port, http_port, SLURMCAST_PIDFILE=str(pidfile), SLURMCAST_LOGFILE=str(logfile)
    )
    started = await run_script("start.sh", env)
    assert started.returncode == 0, started.stderr
    assert started.stderr == ""  # a first start, with no log file yet, complains about nothing
    pid = int(pidfile.read_text())
    try:
        assert (await health(http_port)) is not None
        again = await run_script("start.sh", env)
        assert again.returncode == 1 and "already running" in again.stderr
        async with Client.connect(ws_port) as client:
            await client.subscribe("jobs")
            stopped = await run_script("stop.sh", env)
            assert stopped.returncode == 0, stopped.stderr
            with pytest.raises(ConnectionClosed) as info:
                await client.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    finally:
        if pidfile.exists():
            os.kill(pid, signal.SIGKILL)
    assert not pidfile.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "slurmcast stopped" in logfile.read_text()
    # Stopping again is harmless.
    again = await run_script("stop.sh", env)
    assert again.returncode == 0 and "not running" in again.stdout


def test_token_command_mints_a_verifiable_token() -> None:
    from slurmcast.auth.jwt import JwtSettings, JwtVerifier

    secret = "cli-secret-0123456789abcdef0123456789"
    env = dict(os.environ, SLURMCAST_JWT_SECRET=secret)
    result = subprocess.run(
        [
            str(SLURMCAST),
            "token",
            "--sub",
            "alice",
            "--role",
            "admin",
            "--ttl",
            "1h",
            "--channel",
            "jobs",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    principal = JwtVerifier(JwtSettings(secret=secret))(result.stdout.strip())
    assert principal.user == "alice" and principal.is_admin
    assert principal.channels == frozenset({"jobs"})
    assert principal.expires_at is not None
    assert 3500 < principal.expires_at - time.time() <= 3600


def test_token_command_refuses_without_a_secret_or_with_a_bad_ttl() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SLURMCAST_JWT_SECRET"}
    result = subprocess.run(
        [str(SLURMCAST), "token", "--sub", "alice"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 2 and "no HS256 secret" in result.stderr
    env["SLURMCAST_JWT_SECRET"] = "x" * 40
    result = subprocess.run(
        [str(SLURMCAST), "token", "--sub", "alice", "--ttl", "soon"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 2 and "--ttl" in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--source", "slurmrestd"], "needs --slurmrestd-url"),
        (["--source", "slurmrestd", "--slurmrestd-url", "ftp://x"], "expected http://host:6820"),
        (
            [
                "--source",
                "slurmrestd",
                "--slurmrestd-url",
                "http://127.0.0.1:1",
                "--slurmrestd-api",
                "v1",
            ],
            "--slurmrestd-api 'v1'",
        ),
    ],
)
def test_slurmrestd_configuration_errors_exit_with_clear_messages(
    args: list[str], words: str
) -> None:
    result = subprocess.run(
        [
            str(SLURMCAST),
            "serve",
            "--http-port",
            str(free_port()),
            "--ws-port",
            str(free_port()),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env_for(free_port(), free_port()),
    )
    assert result.returncode == 2, result.stderr
    assert words in result.stderr


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ("ws_port = [1]\n", "ws_port: expected int, got [1]"),
        ("ws_port = 2024-01-01\n", "ws_port: expected int, got datetime.date(2024, 1, 1)"),
        ("jobs_interval = {a = 1}\n", "jobs_interval: expected float, got {'a': 1}"),
        ("jwt_leeway = nan\n", "jwt_leeway: expected a finite number, got nan"),
        ('history_size = "jobs=\\u00b2"\n', "history_size: expected entries like jobs=1000"),
    ],
)
def test_a_config_file_with_a_bad_value_exits_with_one_line(
    tmp_path: Path, config: str, words: str
) -> None:
    path = tmp_path / "slurmcast.toml"
    path.write_text(config)
    # The ports from the environment would win over the file's ws_port.
    env = env_for(free_port(), free_port())
    del env["SLURMCAST_WS_PORT"], env["SLURMCAST_HTTP_PORT"]
    result = subprocess.run(
        [str(SLURMCAST), "serve", "--config", str(path), "--http-port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"slurmcast: configuration error: {path}: {words}")
    assert result.stderr.count("\n") == 1  # one line, no traceback


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_a_bad_leeway_in_the_environment_exits_with_one_line(value: str) -> None:
    result = subprocess.run(
        [str(SLURMCAST), "serve"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env_for(free_port(), free_port(), SLURMCAST_JWT_LEEWAY=value),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("slurmcast: configuration error: SLURMCAST_JWT_LEEWAY: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("ttl", ["nan", "inf", "infs", "-infd", "99999d"])
def test_token_command_refuses_a_ttl_that_is_not_a_finite_duration(ttl: str) -> None:
    env = dict(os.environ, SLURMCAST_JWT_SECRET="x" * 40)
    result = subprocess.run(
        [str(SLURMCAST), "token", "--sub", "alice", f"--ttl={ttl}"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("slurmcast: --ttl: ") and result.stderr.count("\n") == 1
