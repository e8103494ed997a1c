"""Lean pieces for benchmarks that drive thousands of clients from Python.

``RawClient`` is a WebSocket client as an asyncio protocol over a raw socket:
the handshake written by hand, frames parsed without copying more than
needed, zero masks. A full client library per connection would saturate the
load core long before the server. ``SlurmcastServer`` is one ``slurmcast
serve`` process pinned to the server core, ready once ``/health`` answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

import aiohttp
import orjson
from benchlib import LOG_DIR, REPO_DIR, SERVER_CORE, SetupError, free_port, proc_cpu_seconds

#: Arguments for a server whose simulated cluster is polled once, at start:
#: the measurement's messages are then the only ones on the channels.
QUIET = ["--jobs-interval", "3600", "--nodes-interval", "3600", "--metrics-interval", "3600"]
#: A server that does not answer /health by then is broken, not slow.
START_TIMEOUT = 30.0


class RawClient(asyncio.Protocol):
    """One WebSocket connection; subclasses say what to do once open and per frame."""

    #: Extra request header lines, each ending in CRLF.
    extra_headers = ""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        self.buffer, self.open = b"", False
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n{self.extra_headers}"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def send(self, message: dict[str, Any]) -> None:
        """One text frame (client frames must be masked: a zero mask leaves it as is)."""
        payload = orjson.dumps(message)
        length = len(payload)
        header = (
            bytes((0x81, 0x80 | length))
            if length < 126
            else struct.pack("!BBH", 0x81, 0xFE, length)
        )
        assert self.transport is not None
        self.transport.write(header + b"\0\0\0\0" + payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if not head.startswith(b"HTTP/1.1 101"):
                self.refused(head)
                return
            self.open = True
            self.opened(head)
        while len(self.buffer) >= 2:
            length, start = self.buffer[1] & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                (length,) = struct.unpack("!H", self.buffer[2:4])
                start = 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                (length,) = struct.unpack("!Q", self.buffer[2:10])
                start = 10
            if len(self.buffer) < start + length:
                return
            first, payload = self.buffer[0], self.buffer[start : start + length]
            self.buffer = self.buffer[start + length :]
            if not self.frame(first, payload, start + length):
                return

    def refused(self, head: bytes) -> None:
        raise SetupError(f"handshake refused: {head[:60]!r}")

    def opened(self, head: bytes) -> None:
        """The server accepted the handshake (``head``: its answer, without the blank line)."""

    def frame(self, first: int, payload: bytes, size: int) -> bool:
        """A frame: ``first`` its first byte, ``size`` its bytes on the wire. False: stop."""
        return True

    def pong(self, payload: bytes) -> None:
        assert self.transport is not None and len(payload) < 126
        self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)


class SlurmcastServer:
    """``slurmcast serve`` on loopback, pinned to the server core, with extra arguments."""

    def __init__(self, name: str, args: Sequence[str]) -> None:
        self.ws_port = free_port()
        self.http_port = free_port()
        while self.http_port == self.ws_port:
            self.http_port = free_port()
        self.name, self.args = name, list(args)
        self.proc: asyncio.subprocess.Process | None = None
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        args = ["--host", "127.0.0.1", "--ws-port", str(self.ws_port)]
        args += ["--http-port", str(self.http_port), "--log-level", "WARNING"]
        args += ["--max-connections-per-ip", "100000", "--max-connections", "100000"]
        args += ["--ping-interval", "600", *self.args]
        return [sys.executable, "-m", "slurmcast", "serve", *args]

    async def start(self, session: aiohttp.ClientSession, run: str = "") -> float:
        """Start; returns the monotonic time it first answered /health."""
        log_path = LOG_DIR / f"{self.name}{'-' + run if run else ''}.log"
        with log_path.open("wb") as log_file:
            self.proc = await asyncio.create_subprocess_exec(
                "taskset", "-c", str(SERVER_CORE), *self.command(),
                stdout=log_file, stderr=log_file, cwd=REPO_DIR,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise SetupError(f"the server exited at start; see {log_path}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"http://127.0.0.1:{self.http_port}/health") as resp:
                    if resp.status == 200:
                        return time.monotonic()
            await asyncio.sleep(0.02)
        raise SetupError(f"the server did not answer /health within {START_TIMEOUT:.0f} s")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return sum(proc_cpu_seconds(self.proc.pid))

    async def stop(self) -> float:
        """SIGTERM; returns the monotonic time the process was gone."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), START_TIMEOUT)
        return time.monotonic()
