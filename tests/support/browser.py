"""A real browser and a real server process, for the dashboard's tests.

``DashboardServer`` runs ``slurmcast serve`` (the simulator, sped up) as a
process of its own: the browser is driven with blocking calls, so an
in-process server would starve. It can be stopped and started again on the
same ports. ``chrome()`` is Debian's chromium through its chromedriver; when
either is missing the tests are skipped, or fail when
SLURMCAST_REQUIRE_BROWSER=1 (CI installs both).
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from support.redis import free_port
from support.server import WAIT

REQUIRE_BROWSER = os.environ.get("SLURMCAST_REQUIRE_BROWSER") == "1"
SLURMCAST = Path(sys.executable).with_name("slurmcast")
T = TypeVar("T")

#: Flags for a headless chromium on a machine with no screen and a closed network:
#: without the background-networking ones it keeps trying to reach Google's hosts.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
)


def browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        reason = "chromium and chromedriver are not installed (Debian: chromium chromium-driver)"
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason}, and SLURMCAST_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    return chromium, driver


@contextlib.contextmanager
def chrome(width: int = 1400, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """A fresh headless chromium (empty profile) whose console the test can read."""
    chromium, driver_path = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="slurmcast-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def emulate_phone(driver: webdriver.Chrome, width: int = 390, height: int = 844) -> None:
    """A phone's viewport (headless chromium's windows are at least 500 px wide)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True},
    )


def console_problems(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The console's errors and warnings since the last call (the log is drained)."""
    return [
        entry
        for entry in driver.get_log("browser")  # type: ignore[no-untyped-call]
        if entry.get("level") in ("SEVERE", "WARNING")
    ]


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], message: str = "") -> T:
    """Poll ``condition`` in the page until it returns something truthy; fail after WAIT s."""
    result: T = WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, message)
    return result


class DashboardServer:
    """``slurmcast serve`` on the simulator, on two free loopback ports, restartable."""

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

    def __enter__(self) -> DashboardServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
