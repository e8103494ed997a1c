"""The dashboard's "Notify me" panel in a real headless chromium against a real ``slurmcast
serve`` whose ``[sinks]`` table sets up e-mail and Slack delivery.

Nothing listens where the deliveries go (port 9 of the loopback, allowed for the test):
every attempt fails at once, and with ``max_attempts = 1`` a delivery is dead after its
first one. What the page shows is checked against what the API says.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from web.test_dashboard_browser import CONTRAST  # the WCAG contrast probe, reused

from support.browser import chrome, console_problems, emulate_phone, wait_for
from support.process import ServeProcess
from support.server import WAIT
from support.tokens import SECRET, admin, hs256

#: The page writes possessives with a typographic apostrophe.
APOSTROPHE = "\u2019"
FAST = ("--sim-speed", "60", "--jobs-interval", "1", "--nodes-interval", "1")
#: The discard port: nothing answers there, so a delivery fails at its first attempt.
UNREACHABLE = "http://127.0.0.1:9/"
SINKS = f"""
[sinks]
max_attempts = 1
retry_base = 0.01
poll_interval = 0.2

[sinks.email]
host = "127.0.0.1"
port = 9
tls = "none"
from = "slurmcast@example.edu"
address_template = "{{user}}@example.edu"

[sinks.http]
allow_http = true
allowed_networks = ["127.0.0.1/32"]
timeout = 2.0
connect_timeout = 1.0

[sinks.slack]
default_url = "{UNREACHABLE}"
"""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sinks") / "slurmcast.toml"
    path.write_text(SINKS)
    return path


@pytest.fixture(scope="module")
def server(config_file: Path) -> Iterator[ServeProcess]:
    """An open server (no authentication): every caller is an admin and names the owner."""
    with ServeProcess(*FAST, "--config", str(config_file)) as running:
        yield running


def call(
    server: ServeProcess,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
) -> tuple[int, Any]:
    """The API's status and JSON answer, errors included."""
    request = urllib.request.Request(server.url + path, method=method)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def stored_rules(server: ServeProcess, token: str | None = None) -> dict[str, dict[str, Any]]:
    status, reply = call(server, "GET", "notify/rules", token=token)
    assert status == 200, reply
    return {rule["id"]: rule for rule in reply["rules"]}


def add_rule(server: ServeProcess, body: dict[str, Any], token: str | None = None) -> str:
    status, reply = call(server, "POST", "notify/rules", body, token=token)
    assert status == 201, reply
    rule_id: str = reply["rule"]["id"]
    return rule_id


def open_panel(driver: WebDriver, url: str) -> WebElement:
    """Open the page and wait for the panel to have loaded; the rule form."""
    driver.get(url)
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    wait_for(driver, lambda d: d.find_element(By.ID, "rules-body").is_displayed())
    return driver.find_element(By.ID, "rule-form")


def tick(driver: WebDriver, *events: str) -> None:
    """Tick event boxes with the keyboard (Space on the focused box)."""
    for event in events:
        box = driver.find_element(By.CSS_SELECTOR, f'#rule-event-choices input[value="{event}"]')
        if not box.is_selected():
            box.send_keys(Keys.SPACE)
        assert box.is_selected()


def type_into(driver: WebDriver, element_id: str, text: str) -> WebElement:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)
    return field


def submit(driver: WebDriver) -> None:
    driver.find_element(By.ID, "rule-submit").send_keys(Keys.ENTER)


def form_error(driver: WebDriver) -> str:
    text: str = driver.find_element(By.ID, "rule-form-error").text
    return text.strip()


def rule_item(driver: WebDriver, rule_id: str) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR, f'#rules-list .rule[data-id="{rule_id}"]')
    return found[0] if found else None


def listed(driver: WebDriver, rule_id: str) -> WebElement:
    """The rule's item in the list, once it is there."""
    item = wait_for(driver, lambda d: rule_item(d, rule_id))
    assert item is not None
    return item


def status_text(driver: WebDriver) -> str:
    """What the panel last told assistive technology (visually hidden)."""
    text: str | None = driver.find_element(By.ID, "rules-status").get_attribute("textContent")
    return text or ""


def busiest_user(server: ServeProcess, token: str | None = None) -> str:
    jobs = server.get_json("snapshot/jobs", token=token)["data"]
    users: list[str] = [job["user"] for job in jobs]
    return max(set(users), key=users.count)


# -- the tests -------------------------------------------------------------------------


def test_panel_is_hidden_without_sinks() -> None:
    with ServeProcess(*FAST) as plain, chrome() as driver:
        assert plain.get_json("dashboard.json")["notify"] is False
        assert call(plain, "GET", "notify/config")[0] == 404
        driver.get(plain.url)
        wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        panel = driver.find_element(By.ID, "rules-panel")
        assert panel.get_attribute("hidden") is not None and not panel.is_displayed()
        assert console_problems(driver) == []


def test_a_rule_added_through_the_form_is_listed_and_stored(server: ServeProcess) -> None:
    with chrome() as driver:
        open_panel(driver, server.url)
        assert server.get_json("dashboard.json")["notify"] is True
        # An open server has no user of its own: the form asks whose rule it is.
        assert driver.find_element(By.ID, "rule-owner").is_displayed()
        type_into(driver, "rule-owner", "alice")
        tick(driver, "job_failed", "job_timeout")
        Select(driver.find_element(By.ID, "rule-kind")).select_by_value("slack")
        default = driver.find_element(By.ID, "rule-target-default")
        assert default.is_selected() and default.is_enabled()
        assert not driver.find_element(By.ID, "rule-target").is_displayed()
        # The filters are tucked away until asked for (Enter on the summary opens them).
        driver.find_element(By.CSS_SELECTOR, ".rule-filters summary").send_keys(Keys.ENTER)
        type_into(driver, "rule-partitions", "gpu, debug")
        type_into(driver, "rule-name", "train-*")
        type_into(driver, "rule-min-run", "10")
        before = set(stored_rules(server))
        submit(driver)

        new = wait_for(driver, lambda d: set(stored_rules(server)) - before)
        (rule_id,) = new
        rule = stored_rules(server)[rule_id]
        assert rule["owner"] == "alice" and rule["enabled"] is True
        assert sorted(rule["events"]) == ["job_failed", "job_timeout"]
        assert rule["destination"] == {"kind": "slack", "target": "default"}
        assert sorted(rule["partitions"]) == ["debug", "gpu"]
        assert rule["name_pattern"] == "train-*" and rule["min_run_seconds"] == 600
        assert rule["pending_minutes"] is None

        item = listed(driver, rule_id)
        text = item.text
        for part in ("Job failed", "Job timed out", "Slack", "gpu", "train-*", "10m", "alice"):
            assert part in text, (part, text)
        assert item.find_element(By.CSS_SELECTOR, ".rule-enabled").is_selected()
        # The form is ready for the next rule, the owner kept.
        assert form_error(driver) == ""
        assert driver.find_element(By.ID, "rule-owner").get_attribute("value") == "alice"
        assert not driver.find_elements(By.CSS_SELECTOR, "#rule-event-choices input:checked")
        assert console_problems(driver) == []


def test_the_servers_refusal_is_shown_and_the_form_kept(server: ServeProcess) -> None:
    with chrome() as driver:
        open_panel(driver, server.url)
        type_into(driver, "rule-owner", "alice")
        tick(driver, "job_completed")
        Select(driver.find_element(By.ID, "rule-kind")).select_by_value("slack")
        driver.find_element(By.ID, "rule-target-other").send_keys(Keys.SPACE)
        unsafe = "https://localhost/hooks/x"
        type_into(driver, "rule-target", unsafe)
        before = stored_rules(server)
        submit(driver)

        # The server's own words, for the same request.
        status, reply = call(
            server,
            "POST",
            "notify/rules",
            {
                "owner": "alice",
                "events": ["job_completed"],
                "destination": {"kind": "slack", "target": unsafe},
            },
        )
        assert status == 400 and "loopback" in reply["message"]
        wait_for(driver, lambda d: form_error(d) == reply["message"])
        target = driver.find_element(By.ID, "rule-target")
        assert target.get_attribute("value") == unsafe
        assert target.get_attribute("aria-invalid") == "true"
        assert driver.switch_to.active_element == target  # where to fix it
        assert driver.find_element(By.CSS_SELECTOR, 'input[value="job_completed"]').is_selected()
        assert stored_rules(server) == before

        # "Pending too long" needs its minutes: the field appears, and is required.
        pending = driver.find_element(By.ID, "rule-pending")
        assert not pending.is_displayed()
        driver.find_element(By.ID, "rule-target-default").send_keys(Keys.SPACE)
        tick(driver, "job_pending_long")
        assert pending.is_displayed()
        submit(driver)
        assert driver.execute_script("return arguments[0].validity.valueMissing", pending)
        assert stored_rules(server) == before  # the browser kept it from being sent
        # A partition name the server refuses (the browser cannot know).
        pending.send_keys("45")
        driver.find_element(By.CSS_SELECTOR, ".rule-filters summary").send_keys(Keys.ENTER)
        type_into(driver, "rule-partitions", "gpu/a100")
        submit(driver)
        wait_for(driver, lambda d: "partition" in form_error(d))
        assert stored_rules(server) == before

        type_into(driver, "rule-partitions", "gpu")
        submit(driver)
        wait_for(driver, lambda d: len(stored_rules(server)) == len(before) + 1)
        (rule,) = [r for r in stored_rules(server).values() if r["id"] not in before]
        assert rule["pending_minutes"] == 45 and rule["partitions"] == ["gpu"]
        assert sorted(rule["events"]) == ["job_completed", "job_pending_long"]
        item = listed(driver, rule["id"])
        assert "Pending over 45m" in item.text
        wait_for(driver, lambda d: form_error(d) == "")
        # Chromium logs each refused request itself; the page adds nothing of its own.
        problems = console_problems(driver)
        assert len(problems) == 2, problems
        for problem in problems:
            assert problem["source"] == "network", problem
            assert "/notify/rules" in problem["message"] and "400" in problem["message"]


def test_toggling_and_deleting_change_the_servers_rules(server: ServeProcess) -> None:
    rule_id = add_rule(
        server,
        {"owner": "bob", "events": ["job_started"], "destination": {"kind": "email"}},
    )
    with chrome() as driver:
        open_panel(driver, server.url)
        item = listed(driver, rule_id)
        assert "bob@example.edu" not in item.text and f"bob{APOSTROPHE}s own address" in item.text
        toggle = item.find_element(By.CSS_SELECTOR, ".rule-enabled")
        assert toggle.get_attribute("role") == "switch" and toggle.is_selected()
        toggle.send_keys(Keys.SPACE)  # the keyboard alone
        wait_for(driver, lambda d: stored_rules(server)[rule_id]["enabled"] is False)
        wait_for(driver, lambda d: item.get_attribute("data-enabled") == "false")
        assert "Off" in item.text
        toggle.send_keys(Keys.SPACE)
        wait_for(driver, lambda d: stored_rules(server)[rule_id]["enabled"] is True)

        # Delete asks first; Keep (or Escape) keeps the rule.
        item.find_element(By.CSS_SELECTOR, ".rule-delete").send_keys(Keys.ENTER)
        keep = item.find_element(By.CSS_SELECTOR, ".rule-delete-no")
        assert keep.is_displayed() and driver.switch_to.active_element == keep
        keep.send_keys(Keys.ESCAPE)
        wait_for(driver, lambda d: not keep.is_displayed())
        assert rule_id in stored_rules(server)
        item.find_element(By.CSS_SELECTOR, ".rule-delete").click()
        item.find_element(By.CSS_SELECTOR, ".rule-delete-yes").click()
        wait_for(driver, lambda d: rule_item(d, rule_id) is None)
        assert rule_id not in stored_rules(server)
        assert "Rule deleted" in status_text(driver)
        assert console_problems(driver) == []


@pytest.fixture(scope="module")
def dead_delivery(server: ServeProcess) -> dict[str, Any]:
    """A delivery that died: a Slack rule of the busiest user, whose jobs start and end while
    the simulator runs, to the URL that does not answer."""
    user = busiest_user(server)
    events = ["job_started", "job_completed", "job_failed", "job_cancelled", "job_timeout"]
    rule_id = add_rule(
        server,
        {"owner": user, "events": events, "destination": {"kind": "slack", "target": "default"}},
    )

    def dead() -> dict[str, Any] | None:
        status, reply = call(server, "GET", "notify/deliveries?state=dead&limit=50")
        assert status == 200, reply
        return next((d for d in reply["deliveries"] if d["rule_id"] == rule_id), None)

    deadline = time.monotonic() + WAIT
    while (delivery := dead()) is None:
        assert time.monotonic() < deadline, "no delivery of the rule died"
        time.sleep(0.1)
    return delivery


def test_a_dead_delivery_shows_its_error_and_can_be_retried(
    server: ServeProcess, dead_delivery: dict[str, Any]
) -> None:
    delivery = dead_delivery
    assert delivery["last_error"] and delivery["attempts"] == 1
    with chrome() as driver:
        open_panel(driver, server.url)
        Select(driver.find_element(By.ID, "deliveries-state")).select_by_value("dead")
        selector = f'#deliveries-list .delivery[data-id="{delivery["id"]}"]'
        item = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector))[0]
        assert item.get_attribute("data-state") == "dead"
        assert "Failed" in item.text and delivery["last_error"] in item.text
        assert all(
            d.get_attribute("data-state") == "dead"
            for d in driver.find_elements(By.CSS_SELECTOR, "#deliveries-list .delivery")
        )
        retry = item.find_element(By.CSS_SELECTOR, ".delivery-retry")
        assert retry.is_displayed()
        retry.send_keys(Keys.ENTER)
        # The page shows the server's answer (queued again, no Retry) ...
        wait_for(driver, lambda d: item.get_attribute("data-state") == "pending")
        assert not retry.is_displayed()
        assert "Delivery queued" in status_text(driver)
        # ... and the server took it back (it may have died again since: it was tried later).
        again = current(server, delivery["id"])
        assert again["next_attempt_at"] > delivery["next_attempt_at"]
        assert console_problems(driver) == []


def current(server: ServeProcess, delivery_id: str) -> dict[str, Any]:
    status, reply = call(server, "GET", f"notify/deliveries/{delivery_id}")
    assert status == 200, reply
    found: dict[str, Any] = reply["delivery"]
    return found


#: The panel's texts, its muted hints, errors and state pills included.
PANEL_TEXT = ", ".join(
    f"#rules-panel {part}"
    for part in (
        "h2",
        "h3",
        "legend",
        "label",
        ".hint",
        ".btn",
        ".rule strong",
        ".rule span",
        ".delivery strong",
        ".delivery span",
        ".delivery p",
        "summary",
    )
)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_panel_text_is_readable_in_both_schemes(
    server: ServeProcess, dead_delivery: dict[str, Any], scheme: str
) -> None:
    with chrome() as driver:
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        open_panel(driver, server.url)
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#rules-list .rule"))
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#deliveries-list .delivery"))
        ratios = driver.execute_script(CONTRAST, PANEL_TEXT)["ratios"]
        # The failed ones too, with their error and Retry button.
        Select(driver.find_element(By.ID, "deliveries-state")).select_by_value("dead")
        failed = ".delivery-error:not([hidden])"
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, failed))
        ratios += driver.execute_script(CONTRAST, PANEL_TEXT)["ratios"]
        lowest = sorted(ratios)[:5]
        assert lowest and lowest[0][0] >= 4.5, lowest


def test_phone_width_keeps_the_panel_usable(server: ServeProcess) -> None:
    with chrome() as driver:
        emulate_phone(driver)
        form = open_panel(driver, server.url)
        viewport = driver.execute_script("return window.innerWidth")
        assert viewport == 390
        assert driver.execute_script("return document.documentElement.scrollWidth") <= viewport
        panel = driver.find_element(By.ID, "rules-panel")
        assert panel.size["width"] <= viewport
        for element in form.find_elements(By.CSS_SELECTOR, "input, select, button"):
            if element.is_displayed():
                box = element.rect
                assert box["x"] >= 0 and box["x"] + box["width"] <= viewport, element
        type_into(driver, "rule-owner", "carol")
        tick(driver, "job_out_of_memory")
        before = set(stored_rules(server))
        submit(driver)
        (rule_id,) = wait_for(driver, lambda d: set(stored_rules(server)) - before)
        listed(driver, rule_id)
        assert driver.execute_script("return document.documentElement.scrollWidth") <= viewport
        assert console_problems(driver) == []


def test_a_signed_in_user_has_their_own_rules(config_file: Path) -> None:
    args = (*FAST, "--auth", "jwt", "--jwt-secret", SECRET, "--config", str(config_file))
    with ServeProcess(*args) as secured:
        theirs = add_rule(
            secured,
            {"owner": "bob", "events": ["job_failed"], "destination": {"kind": "email"}},
            token=admin(),
        )
        with chrome() as driver:
            open_panel(driver, secured.url + "?token=" + hs256("alice"))
            # Their rules are their own: no owner field, no alert events, their own address.
            assert not driver.find_element(By.ID, "rule-owner").is_displayed()
            assert driver.find_element(By.ID, "rules-list-title").text.upper() == "MY RULES"
            offered = {
                box.get_attribute("value")
                for box in driver.find_elements(By.CSS_SELECTOR, "#rule-event-choices input")
            }
            assert "job_failed" in offered and "alert_firing" not in offered
            label = driver.find_element(By.ID, "rule-target-default-label").text
            assert label == "My address (alice@example.edu)"
            assert not driver.find_element(By.ID, "rule-target-other").is_displayed()
            tick(driver, "job_completed")
            submit(driver)
            mine = wait_for(driver, lambda d: stored_rules(secured, hs256("alice")))
            (rule,) = mine.values()
            assert rule["owner"] == "alice"
            assert rule["destination"] == {"kind": "email", "target": "default"}
            item = listed(driver, rule["id"])
            assert "alice@example.edu" in item.text
            assert rule_item(driver, theirs) is None  # bob's is not hers to see
            assert console_problems(driver) == []
        with chrome() as driver:
            # An admin sees everyone's, with whose each is.
            open_panel(driver, secured.url + "?token=" + admin())
            assert f"alice{APOSTROPHE}s rule" in listed(driver, rule["id"]).text
            assert f"bob{APOSTROPHE}s rule" in listed(driver, theirs).text
            alerts = driver.find_elements(By.CSS_SELECTOR, 'input[value="alert_firing"]')
            assert alerts
            assert console_problems(driver) == []
