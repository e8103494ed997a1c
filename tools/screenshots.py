"""Take the README's screenshots of the dashboard: `make screenshots`.

Runs `slurmcast serve` on the simulator (an admin's view: authentication on,
an admin token), lets the simulated cluster run for a while so the charts
have a history, and saves PNGs into docs/images/: laptop width in light and
dark schemes, and a phone.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from selenium.webdriver.common.by import By  # noqa: E402

from support.browser import chrome, emulate_phone, wait_for  # noqa: E402
from support.process import ServeProcess  # noqa: E402
from support.tokens import SECRET, admin  # noqa: E402

OUT = ROOT / "docs" / "images"
#: Simulated minutes of history before the first picture.
WARM_UP_SECONDS = 25


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    args = ("--sim-speed", "60", "--metrics-interval", "1", "--jobs-interval", "1")
    with ServeProcess(*args, "--auth", "jwt", "--jwt-secret", SECRET) as server:
        # A broadcast and history for the charts, as an admin would see them.
        time.sleep(WARM_UP_SECONDS)
        token = admin("root")
        shots = [("dashboard.png", "light"), ("dashboard-dark.png", "dark")]
        for name, scheme in [*shots, ("dashboard-mobile.png", "light")]:
            with chrome(1440, 1000) as driver:
                if name == "dashboard-mobile.png":
                    emulate_phone(driver, 390, 1500)
                driver.execute_cdp_cmd(
                    "Emulation.setEmulatedMedia",
                    {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
                )
                driver.get(f"{server.url}?token={token}")
                wait_for(
                    driver,
                    lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"),
                )
                if name == "dashboard.png":
                    server.post_json(
                        "broadcast",
                        {"channel": "all", "message": {"text": "Scratch maintenance Sunday 06:00"}},
                        token=token,
                    )
                time.sleep(3)  # let the charts and a toast draw before the picture
                if name != "dashboard-mobile.png":  # the whole page, jobs table included
                    height = driver.execute_script("return document.body.scrollHeight")
                    driver.set_window_size(1440, min(int(height) + 140, 2600))
                    time.sleep(1)
                driver.save_screenshot(str(OUT / name))
                print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
