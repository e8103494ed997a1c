"""A real Prometheus server (Debian's ``prometheus``) scrapes a real slurmcast's ``/metrics``.

The scrape goes through ``--metrics-auth api_key`` with an admin's JWT as Prometheus'
``authorization`` credentials, in whatever format Prometheus negotiates (OpenMetrics, gzipped).
Then every PromQL expression of docs/grafana-dashboard.json is run against it: each must be
valid, and each must find data.

Skipped where ``prometheus`` is not installed, unless ``SLURMCAST_REQUIRE_PROMETHEUS=1``
(CI installs it: .ci/run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from support import tokens
from support.fakeslurm import FakeSlurm
from support.grafana import dashboard_expressions
from support.server import Client, running_server
from support.waiting import eventually

PROMETHEUS = shutil.which("prometheus")
REQUIRED = os.environ.get("SLURMCAST_REQUIRE_PROMETHEUS") == "1"

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None and not REQUIRED,
    reason="prometheus is not installed (apt-get install prometheus)",
)

#: Prometheus takes a few seconds to start and scrape; a guard against hanging, not a target.
PROMETHEUS_WAIT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape_config(target: str, token: str) -> str:
    return f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: slurmcast
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials: {token}
    static_configs:
      - targets: ["{target}"]
"""


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, config: str) -> AsyncIterator[str]:
    """A Prometheus server with ``config``; yields its base URL, stops it afterwards."""
    assert PROMETHEUS is not None, "SLURMCAST_REQUIRE_PROMETHEUS=1 but prometheus is not installed"
    (tmp_path / "prometheus.yml").write_text(config)
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(15):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def api(session: aiohttp.ClientSession, url: str, **params: str) -> dict[str, Any] | None:
    """A Prometheus API answer's ``data``; None while the server is not answering yet."""
    try:
        async with session.get(url, params=params) as response:
            body = await response.json()
    except (aiohttp.ClientConnectionError, aiohttp.ContentTypeError):
        return None
    assert body["status"] == "success", body
    data: dict[str, Any] = body["data"]
    return data


async def test_prometheus_scrapes_the_metrics_and_the_dashboard_queries_work(
    tmp_path: Path,
) -> None:
    (tmp_path / "slurm").mkdir()
    fake = FakeSlurm(tmp_path / "slurm")
    async with (
        running_server(
            source="slurm",
            slurm_bin_dir=str(fake.bin),
            slurm_format="delimited",
            jobs_interval=0.5,
            nodes_interval=0.5,
            metrics_interval=0.5,
            auth="jwt",
            jwt_secret=tokens.SECRET,
            metrics_auth="api_key",
        ) as app,
        Client.connect(app, additional_headers={"Authorization": f"Bearer {tokens.admin()}"}) as c,
        prometheus(tmp_path, scrape_config(f"127.0.0.1:{app.http.port}", tokens.admin())) as url,
        aiohttp.ClientSession() as session,
    ):
        await c.subscribe("jobs", "metrics")
        # One refused token, so that the authentication failures panel has a series.
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://127.0.0.1:{app.ws.port}/?token=not-a-jwt"):
                pass  # pragma: no cover

        async def targets() -> list[dict[str, Any]]:
            data = await api(session, f"{url}/api/v1/targets")
            return [] if data is None else list(data["activeTargets"])

        up = await eventually(
            targets, lambda ts: any(t["health"] == "up" for t in ts), PROMETHEUS_WAIT
        )
        assert up[0]["lastError"] == "", up
        assert up[0]["labels"]["job"] == "slurmcast"

        async def query(expression: str) -> list[dict[str, Any]]:
            data = await api(session, f"{url}/api/v1/query", query=expression)
            return [] if data is None else list(data["result"])

        connections = await eventually(
            lambda: query("slurmcast_ws_connections"), bool, PROMETHEUS_WAIT
        )
        assert float(connections[0]["value"][1]) == 1
        assert connections[0]["metric"]["instance"] == f"127.0.0.1:{app.http.port}"
        # Counters and histograms arrived whole: rates over two scrapes or more.
        await eventually(
            lambda: query('rate(slurmcast_messages_delivered_total{channel="metrics"}[5s]) > 0'),
            bool,
            PROMETHEUS_WAIT,
        )
        # Every panel of the Grafana dashboard: valid PromQL that finds data here.
        for expression in dashboard_expressions():

            async def result(expression: str = expression) -> list[dict[str, Any]]:
                return await query(expression)

            assert await eventually(result, bool, PROMETHEUS_WAIT), expression
