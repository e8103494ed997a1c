"""``slurmcast serve`` as a process of its own, on two free loopback ports, restartable.

For tests that drive it with blocking calls (a browser, a sync client), where an
in-process server would starve, and for tests of what the process itself writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support.redis import free_port
from support.server import WAIT

SLURMCAST = Path(sys.executable).with_name("slurmcast")


class ServeProcess:
    """``slurmcast serve`` with ``args`` (the simulator by default); its output in ``log``."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.ws_port = free_port()
        self.http_port = free_port()
        self.args = args
        self.data_dir = tempfile.mkdtemp(prefix="slurmcast-web-")
        self.env = {**os.environ, "SLURMCAST_DATA_DIR": self.data_dir, **(env or {})}
        self.log = Path(self.data_dir) / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    def start(self) -> None:
        command = [
            str(SLURMCAST),
            "serve",
            "--host",
            "127.0.0.1",
            "--ws-port",
            str(self.ws_port),
            "--http-port",
            str(self.http_port),
            *self.args,
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self._wait_until_serving()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as a crash or the OOM killer would end it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def get_json(self, path: str, token: str | None = None) -> Any:
        request = urllib.request.Request(self.url + path.lstrip("/"))
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return json.load(response)

    def post_json(self, path: str, body: Any, token: str | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path.lstrip("/"),
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return json.load(response)

    def _wait_until_serving(self) -> None:
        # No event to await across processes: poll /health until the process answers.
        deadline = WAIT / 0.05
        for _ in range(int(deadline)):
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"slurmcast serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                self.get_json("health")
                return
            except (urllib.error.URLError, ConnectionError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(0.05)
        raise AssertionError(f"slurmcast serve did not answer:\n{self.log.read_text()[-3000:]}")

    def __enter__(self) -> ServeProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
