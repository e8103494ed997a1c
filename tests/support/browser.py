"""A real browser for the dashboard's tests (its server: ``support.process.ServeProcess``).

``chrome()`` is Debian's chromium through its chromedriver; when
either is missing the tests are skipped, or fail when
SLURMCAST_REQUIRE_BROWSER=1 (CI installs both).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from support.server import WAIT

REQUIRE_BROWSER = os.environ.get("SLURMCAST_REQUIRE_BROWSER") == "1"
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
