"""How soon the dashboard shows what happened, beside a bare WebSocket in the same page.

Opens the dashboard in headless chromium against `slurmcast serve` (simulator),
adds to the page a plain `new WebSocket()` subscribed to `jobs` (the baseline:
the earliest any page could know), and records, with the browser's clock:

* broadcasts: the time from `POST /broadcast` (stamped in the page just before
  the request, sent from the page itself) to the message in the bare socket and
  to its `.announcement` element in the DOM;
* job state changes: the time from a `job_update` reaching the bare socket to
  the row's `data-state` showing the new state.

    .venv/bin/python bench/dashboard_latency.py [--broadcasts 40] [--seconds 30]

Figures go to docs/performance.md. The goal (issue 16) is "within 2 s".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from selenium.webdriver.common.by import By  # noqa: E402

from support.browser import chrome, wait_for  # noqa: E402
from support.process import ServeProcess  # noqa: E402

PROBE = """
const [wsUrl, done] = [arguments[0], arguments[arguments.length - 1]];
window.bench = {raw: {}, dom: {}, posted: {}, jobRaw: {}, jobDom: {}};
const seen = (text) => { const m = /bench-(\\d+)/.exec(text); return m && m[1]; };
new MutationObserver((records) => {
  const now = performance.now();
  for (const r of records) {
    if (r.type === 'attributes' && r.target.dataset && r.target.dataset.jobId) {
      const key = r.target.dataset.jobId + ':' + r.target.dataset.state;
      bench.jobDom[key] ??= now;
    }
    for (const n of r.addedNodes || []) {
      const id = n.nodeType === 1 && seen(n.textContent);
      if (id && !(id in bench.dom)) bench.dom[id] = now;
    }
  }
}).observe(document.body, {subtree: true, childList: true, characterData: true,
                          attributes: true, attributeFilter: ['data-state']});
const ws = new WebSocket(wsUrl);
ws.onmessage = (event) => {
  const now = performance.now();
  const m = JSON.parse(event.data);
  if (m.type === 'broadcast') {
    const id = seen(JSON.stringify(m.data));
    if (id) bench.raw[id] = now;
  }
  if (m.type === 'job_update') bench.jobRaw[m.data.job_id + ':' + m.data.status] ??= now;
};
ws.onopen = () => { ws.send(JSON.stringify({type: 'subscribe', channel: 'jobs'})); done(true); };
"""

POST = """
const [id, done] = [arguments[0], arguments[arguments.length - 1]];
bench.posted[id] = performance.now();
fetch('/broadcast', {method: 'POST', headers: {'Content-Type': 'application/json'},
  body: JSON.stringify({channel: 'all', message: {text: 'bench-' + id}})}).then(() => done(true));
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: n={len(values)} median {statistics.median(values):.1f} ms, "
        f"p95 {percentile(values, 0.95):.1f} ms, max {max(values):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broadcasts", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=30, help="how long to watch jobs")
    options = parser.parse_args()
    args = ("--sim-speed", "60", "--jobs-interval", "1", "--nodes-interval", "1")
    with ServeProcess(*args) as server, chrome() as driver:
        driver.set_script_timeout(30)
        driver.get(server.url)
        wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        driver.execute_async_script(PROBE, f"ws://127.0.0.1:{server.ws_port}/")
        for index in range(options.broadcasts):
            driver.execute_async_script(POST, str(index))
            time.sleep(0.1)
        time.sleep(options.seconds)
        bench = driver.execute_script("return window.bench")
    to_raw = [bench["raw"][k] - bench["posted"][k] for k in bench["posted"] if k in bench["raw"]]
    to_dom = [bench["dom"][k] - bench["posted"][k] for k in bench["posted"] if k in bench["dom"]]
    job_gap = [bench["jobDom"][k] - t for k, t in bench["jobRaw"].items() if k in bench["jobDom"]]
    print(summary("broadcast, POST to bare socket", to_raw))
    print(summary("broadcast, POST to dashboard DOM", to_dom))
    print(
        f"  dashboard / bare socket (medians): "
        f"{statistics.median(to_dom) / statistics.median(to_raw):.2f}x"
    )
    shown = len(job_gap)
    print(f"job updates seen by the bare socket: {len(bench['jobRaw'])}, rows updated: {shown}")
    if job_gap:
        print(summary("job update, bare socket to row", job_gap))


if __name__ == "__main__":
    main()
