"""The dashboard in a real headless chromium against a real ``slurmcast serve``.

The simulator runs fast (a simulated minute per second, polls every second) so
that jobs change state while the test watches. Every wait is for
something the page shows; WAIT bounds it against hanging, not as a speed goal.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from websockets.sync.client import connect

from support.browser import (
    chrome,
    console_problems,
    emulate_phone,
    wait_for,
)
from support.process import ServeProcess
from support.redis import REDIS_URL, REQUIRE_REDIS
from support.server import WAIT
from support.tokens import SECRET, admin, hs256

#: Fast enough that jobs end while a test watches, slow enough that the page's main
#: thread stays free for chromedriver on a loaded 2-core machine.
FAST = (
    "--sim-speed",
    "60",
    "--jobs-interval",
    "1",
    "--nodes-interval",
    "1",
    "--metrics-interval",
    "2",
)
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    with ServeProcess(*FAST) as running:
        yield running


def rows(driver: WebDriver) -> dict[str, dict[str, str]]:
    """The jobs table as the page shows it: job id -> its row's state and user."""
    found: dict[str, dict[str, str]] = driver.execute_script(
        """
        const rows = {};
        for (const tr of document.querySelectorAll('#jobs-table tbody tr[data-job-id]')) {
          rows[tr.dataset.jobId] = {state: tr.dataset.state, user: tr.dataset.user};
        }
        return rows;
        """
    )
    return found


def open_dashboard(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))


def connection_state(driver: WebDriver) -> str | None:
    return driver.find_element(By.ID, "connection").get_attribute("data-state")


def test_page_shows_every_node_and_job_without_console_errors(server: ServeProcess) -> None:
    with chrome() as driver:
        open_dashboard(driver, server.url)
        nodes = server.get_json("snapshot/nodes")["data"]
        names = {node["node"] for node in nodes}
        shown = wait_for(
            driver,
            lambda d: (
                {
                    element.get_attribute("data-node")
                    for element in d.find_elements(By.CSS_SELECTOR, "#node-grid .node")
                }
                or None
            ),
        )
        assert shown == names and len(names) == 16
        # Every job the server holds is in the table (the server's state moves on meanwhile:
        # each probe compares the page with a fresh snapshot).
        wait_for(driver, lambda d: connection_state(d) == "live")
        wait_for(
            driver, lambda d: set(rows(d)) >= {str(job["job_id"]) for job in current_jobs(server)}
        )
        for chart in ("chart-cpu", "chart-memory", "chart-gpu", "chart-jobs"):
            assert driver.find_element(By.ID, chart).find_elements(By.TAG_NAME, "canvas")
        assert driver.find_element(By.ID, "gauges").text.strip()
        assert console_problems(driver) == []


def current_jobs(server: ServeProcess) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = server.get_json("snapshot/jobs")["data"]
    return [job for job in jobs if job["status"] not in FINAL_STATES]


def test_a_job_state_change_updates_its_row_in_place(server: ServeProcess) -> None:
    with (
        chrome() as driver,
        connect(f"ws://127.0.0.1:{server.ws_port}/", open_timeout=WAIT) as ws,
    ):
        open_dashboard(driver, server.url)
        wait_for(driver, lambda d: connection_state(d) == "live")
        ws.send('{"type": "subscribe", "channel": "jobs"}')
        # The first job to reach a final state from here on: it changes no more.
        while True:
            message = json.loads(ws.recv(WAIT))
            data = message.get("data") or {}
            if message.get("type") == "job_update" and data.get("status") in FINAL_STATES:
                break
        job_id, status = str(data["job_id"]), data["status"]
        wait_for(driver, lambda d: rows(d).get(job_id, {}).get("state") == status)
        row = driver.find_element(By.CSS_SELECTOR, f'#jobs-table tr[data-job-id="{job_id}"]')
        assert status in row.text
        if data.get("exit_code") is not None:
            assert str(data["exit_code"]) in row.text
        assert console_problems(driver) == []


def test_a_posted_broadcast_appears(server: ServeProcess) -> None:
    text = f"maintenance window {secrets.token_hex(3)}"
    with chrome() as driver:
        open_dashboard(driver, server.url)
        wait_for(driver, lambda d: connection_state(d) == "live")
        reply = server.post_json("broadcast", {"channel": "all", "message": {"text": text}})
        assert reply["success"] is True
        wait_for(driver, lambda d: announcement_with(d, text) is not None)
        # A custom type (the seed's way) on a channel the page shows is an announcement too.
        typed = {"type": "maintenance_window", "data": {"text": f"{text} on jobs"}}
        server.post_json("broadcast", {"channel": "jobs", "message": typed})
        shown = wait_for(driver, lambda d: announcement_with(d, f"{text} on jobs"))
        assert shown is not None and "Maintenance window" in shown.text
        assert console_problems(driver) == []


def announcement_with(driver: WebDriver, text: str) -> WebElement | None:
    for element in driver.find_elements(By.CSS_SELECTOR, "#announcements .announcement"):
        if text in element.text:
            return element
    return None


def test_filters_go_to_the_server(server: ServeProcess) -> None:
    with chrome() as driver:
        open_dashboard(driver, server.url)
        wait_for(driver, lambda d: connection_state(d) == "live")
        users = {row["user"] for row in wait_for(driver, rows).values()}
        user = sorted(users)[0]
        field = driver.find_element(By.ID, "filter-user")
        field.clear()
        field.send_keys(user, Keys.TAB)  # leaving the field applies it
        wait_for(
            driver,
            lambda d: (shown := rows(d)) and {row["user"] for row in shown.values()} == {user},
        )


def test_keyboard_alone_sorts_the_jobs_and_opens_a_node(server: ServeProcess) -> None:
    with chrome() as driver:
        open_dashboard(driver, server.url)
        # From the last filter, Tab goes on to the table's sort buttons; Enter sorts.
        # (Focused, not clicked: a click opens the select's native popup.)
        driver.execute_script("document.getElementById('filter-state').focus()")
        user_header = '#jobs-table th[data-key="user"] button'
        for _ in range(20):
            driver.switch_to.active_element.send_keys(Keys.TAB)
            if driver.execute_script(
                "return document.activeElement.matches(arguments[0])", user_header
            ):
                break
        else:
            pytest.fail("the User column's sort button is not reachable with Tab")
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        header = driver.find_element(By.CSS_SELECTOR, '#jobs-table th[data-key="user"]')
        wait_for(driver, lambda d: header.get_attribute("aria-sort") == "ascending")
        shown = driver.execute_script(
            "return [...document.querySelectorAll('#jobs-table tbody tr')]"
            ".map((tr) => tr.dataset.user)"
        )
        assert len(set(shown)) > 1 and shown == sorted(shown)
        # A node is a button: focused, it shows its details.
        node = driver.find_element(By.CSS_SELECTOR, "#node-grid .node")
        assert node.tag_name == "button"
        driver.execute_script("arguments[0].focus()", node)
        name = node.get_attribute("data-node") or ""
        wait_for(driver, lambda d: name in d.find_element(By.ID, "node-detail").text)


CONTRAST = r"""
// WCAG 2 contrast of each visible text against what is behind it, backgrounds with
// alpha composited over their ancestors'. The browser itself turns any CSS colour
// (rgb(), color(srgb ...), oklab() mid-transition) into sRGB bytes, on a canvas.
const pixel = document.createElement('canvas').getContext('2d', {willReadFrequently: true});
const parse = (css) => {
  pixel.clearRect(0, 0, 1, 1);
  pixel.fillStyle = css;
  pixel.fillRect(0, 0, 1, 1);
  const [r, g, b, a] = pixel.getImageData(0, 0, 1, 1).data;
  return a === 0 ? [0, 0, 0, 0] : [r / 255, g / 255, b / 255, a / 255];
};
const over = (top, below) => top.slice(0, 3).map((c, i) => c * top[3] + below[i] * (1 - top[3]));
const behind = (el) => {
  if (!el) return [1, 1, 1];
  const color = parse(getComputedStyle(el).backgroundColor);
  return color[3] >= 1 ? color.slice(0, 3) : over(color, behind(el.parentElement));
};
const luminance = ([r, g, b]) => {
  const lin = (c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
};
const ratios = [];
for (const el of document.querySelectorAll(arguments[0])) {
  if (!el.offsetParent || !el.textContent.trim()) continue;
  const back = behind(el);
  const text = over(parse(getComputedStyle(el).color), back);
  const [x, y] = [luminance(text), luminance(back)];
  const ratio = (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  ratios.push([ratio, el.tagName + '.' + el.className + ' ' + el.textContent.trim().slice(0, 20)]);
}
return {page: luminance(behind(document.body)), ratios};
"""
TEXT = "h1, h2, #jobs-table td, #jobs-table th, .node, #gauges, .notification, label"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_is_readable_in_both_schemes(server: ServeProcess, scheme: str) -> None:
    with chrome() as driver:
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        open_dashboard(driver, server.url)
        found = driver.execute_script(CONTRAST, TEXT)
        # The scheme is followed (a dark page in dark mode)...
        assert (found["page"] < 0.2) == (scheme == "dark")
        # ...and every visible text meets WCAG AA for normal text (4.5:1).
        lowest = sorted(found["ratios"])[:5]
        assert lowest and lowest[0][0] >= 4.5, lowest


def test_mobile_width_stacks_without_sideways_scrolling(server: ServeProcess) -> None:
    with chrome() as driver:
        emulate_phone(driver)
        open_dashboard(driver, server.url)
        assert driver.execute_script("return window.innerWidth") == 390
        width = driver.execute_script("return document.documentElement.scrollWidth")
        viewport = driver.execute_script("return window.innerWidth")
        assert width <= viewport
        grid = driver.find_element(By.ID, "node-grid")
        assert grid.is_displayed() and grid.size["width"] <= viewport
        assert driver.find_element(By.ID, "jobs-table").is_displayed()
        assert console_problems(driver) == []


def test_a_user_token_sees_only_that_users_jobs() -> None:
    with ServeProcess(*FAST, "--auth", "jwt", "--jwt-secret", SECRET) as server:
        jobs = server.get_json("snapshot/jobs", token=admin())["data"]
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job["user"]] = counts.get(job["user"], 0) + 1
        user = max(counts, key=lambda name: counts[name])
        with chrome() as driver:
            driver.get(server.url + "?token=" + hs256(user))
            wait_for(
                driver,
                lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"),
            )
            # The token was taken once and removed from the address bar.
            assert "token=" not in driver.current_url
            assert driver.execute_script("return Object.keys(sessionStorage).length") >= 1
            assert user in driver.find_element(By.ID, "user-badge").text
            shown = wait_for(driver, rows)
            assert {row["user"] for row in shown.values()} == {user}
            assert not driver.find_elements(By.CSS_SELECTOR, "#broadcast-form:not([hidden])")
        with chrome() as driver:
            driver.get(server.url + "?token=" + admin())
            wait_for(driver, lambda d: d.find_element(By.ID, "broadcast-form").is_displayed())


def test_notifications_are_marked_read_through_the_api() -> None:
    with ServeProcess(*FAST, "--auth", "jwt", "--jwt-secret", SECRET) as server:
        jobs = server.get_json("snapshot/jobs", token=admin())["data"]
        user = max({job["user"] for job in jobs}, key=lambda u: sum(j["user"] == u for j in jobs))
        token = hs256(user)
        with chrome() as driver:
            driver.get(server.url + "?token=" + token)
            # The user's jobs end as the simulator runs: wait for two unread notifications.
            unread = '#notifications-list .notification[data-read="false"]'
            wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, unread)) >= 2)
            first = driver.find_element(By.CSS_SELECTOR, unread)
            first_id = first.get_attribute("data-id") or ""
            count = int(driver.find_element(By.ID, "unread-count").get_attribute("data-count") or 0)
            first.find_element(By.CSS_SELECTOR, "button.mark-read").click()
            wait_for(driver, lambda d: first.get_attribute("data-read") == "true")
            assert stored(server, token)[first_id] is True  # the server agrees
            now = int(driver.find_element(By.ID, "unread-count").get_attribute("data-count") or 0)
            assert now <= count  # one fewer, unless a new one arrived meanwhile
            shown = [
                element.get_attribute("data-id") or ""
                for element in driver.find_elements(By.CSS_SELECTOR, unread)
            ]
            driver.find_element(By.ID, "mark-all-read").click()
            wait_for(
                driver,
                lambda d: all(
                    d.find_element(
                        By.CSS_SELECTOR, f'.notification[data-id="{nid}"]'
                    ).get_attribute("data-read")
                    == "true"
                    for nid in shown
                ),
            )
            read = stored(server, token)
            assert shown and all(read[nid] is True for nid in shown)


def stored(server: ServeProcess, token: str) -> dict[str, bool]:
    """The user's stored notifications, id -> read, as the API says."""
    page = server.get_json("notifications?limit=200", token=token)
    return {n["id"]: n["read"] for n in page["notifications"]}


def test_sign_in_box_takes_a_token() -> None:
    with (
        ServeProcess(*FAST, "--auth", "jwt", "--jwt-secret", SECRET) as server,
        chrome() as driver,
    ):
        driver.get(server.url)
        box = wait_for(driver, lambda d: d.find_element(By.ID, "token-input"))
        box.send_keys(hs256("alice"))
        box.submit()
        wait_for(driver, lambda d: "alice" in d.find_element(By.ID, "user-badge").text)
        wait_for(driver, lambda d: connection_state(d) == "live")


def test_a_server_restart_shows_reconnecting_then_recovered() -> None:
    prefix = f"sctest-{secrets.token_hex(5)}"
    store = redis.Redis.from_url(REDIS_URL)
    try:
        store.ping()
    except redis.RedisError as exc:
        store.close()
        if REQUIRE_REDIS:
            pytest.fail(f"Redis unreachable: {exc}, and SLURMCAST_REQUIRE_REDIS=1")
        pytest.skip(f"Redis unreachable: {exc}")
    # Slower than FAST: the table is compared with the server's state, so it must hold still.
    args = ("--broker", "redis", "--redis-url", REDIS_URL, "--redis-prefix", prefix)
    try:
        with ServeProcess(*args) as server, chrome() as driver:
            open_dashboard(driver, server.url)
            wait_for(driver, lambda d: connection_state(d) == "live")
            server.stop()
            wait_for(driver, lambda d: connection_state(d) == "reconnecting")
            server.start()
            wait_for(driver, lambda d: connection_state(d) == "recovered")
            # Nothing missing: the table shows every job the server holds, in its state.
            wait_for(driver, lambda d: shown_states(d).items() >= server_states(server).items())
            assert console_problems(driver) is not None  # drained: failed reconnects are logged
    finally:
        keys = list(store.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            store.delete(*keys)
        store.close()


def server_states(server: ServeProcess) -> dict[str, str]:
    return {str(job["job_id"]): job["status"] for job in server.get_json("snapshot/jobs")["data"]}


def shown_states(driver: WebDriver) -> dict[str, str]:
    return {job_id: row["state"] for job_id, row in rows(driver).items()}
