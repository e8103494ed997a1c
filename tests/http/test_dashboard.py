"""The dashboard's files and settings over real sockets: headers, caching, what is reachable."""

import gzip
from pathlib import Path

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from slurmcast.app import SlurmcastApp
from slurmcast.config import load_settings
from slurmcast.errors import ConfigError
from slurmcast.web import STATIC_DIR

from support.server import running_server
from support.tokens import SECRET

ROOT = Path(__file__).resolve().parents[2]


async def get(app: SlurmcastApp, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    """``path``'s status, headers and body as sent (not decompressed)."""
    headers.setdefault("Accept-Encoding", "identity")
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(f"http://127.0.0.1:{app.http.port}{path}", headers=headers) as response,
    ):
        return response.status, response.headers.copy(), await response.read()


async def test_page_is_served_with_a_strict_policy() -> None:
    async with running_server() as app:
        status, headers, body = await get(app, "/")
        port = app.ws.port
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<script type="module" src="static/' in body  # relative: works under a proxy's prefix
    assert b"<script>" not in body and b" style=" not in body  # nothing inline for the CSP
    policy = dict(
        directive.split(" ", 1) for directive in headers["Content-Security-Policy"].split("; ")
    )
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    # The WebSocket port, under the host name the browser used, and nothing else.
    assert policy["connect-src"] == f"'self' ws://127.0.0.1:{port} wss://127.0.0.1:{port}"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"  # a ?token= never leaves in a Referer
    assert headers["X-Frame-Options"] == "DENY"


async def test_odd_host_header_is_kept_out_of_the_policy() -> None:
    async with running_server() as app:
        status, headers, _ = await get(app, "/", Host="evil; script-src *")
    assert status == 200
    policy = headers["Content-Security-Policy"]
    assert "connect-src 'self';" in policy and "evil" not in policy


async def test_public_ws_url_is_announced_and_allowed() -> None:
    url = "wss://hpc.example.edu/slurmcast/ws"
    async with running_server(public_ws_url=url, auth="jwt", jwt_secret=SECRET) as app:
        _, _, body = await get(app, "/dashboard.json")
        _, headers, _ = await get(app, "/")
        port = app.ws.port
    assert f"connect-src 'self' ws://127.0.0.1:{port}" in headers["Content-Security-Policy"]
    assert headers["Content-Security-Policy"].count(url) == 1

    assert orjson.loads(body) == {
        "ws_port": port,
        "ws_url": url,
        "auth": "jwt",
        "notifications": True,
        "jobs_visibility": "own",
        "notify": False,
    }


async def test_dashboard_json_without_authentication() -> None:
    async with running_server() as app:
        status, headers, body = await get(app, "/dashboard.json")
        port = app.ws.port

    config = orjson.loads(body)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert config["auth"] == "none" and config["ws_url"] is None
    assert config["ws_port"] == port


async def test_static_files_revalidate_with_etags() -> None:
    async with running_server() as app:
        status, headers, body = await get(app, "/static/vendor/uPlot.esm.js")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript")
        assert body == (STATIC_DIR / "vendor" / "uPlot.esm.js").read_bytes()
        assert headers["Cache-Control"] == "no-cache"
        again, again_headers, again_body = await get(
            app, "/static/vendor/uPlot.esm.js", **{"If-None-Match": headers["ETag"]}
        )
        assert again == 304 and again_body == b"" and again_headers["ETag"] == headers["ETag"]
        zipped, zipped_headers, zipped_body = await get(
            app, "/static/vendor/uPlot.esm.js", **{"Accept-Encoding": "gzip, br"}
        )
        assert zipped == 200 and zipped_headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(zipped_body) == body and len(zipped_body) < len(body) / 2
        # Each representation its own validator: a cached gzip body is not taken for the plain one.
        assert zipped_headers["ETag"] != headers["ETag"]
        assert zipped_headers["Vary"] == "Accept-Encoding"


async def test_page_runs_the_project_client_itself() -> None:
    async with running_server() as app:
        status, _, body = await get(app, "/static/slurmcast.js")
    assert status == 200
    assert body == (ROOT / "clients" / "js" / "slurmcast.js").read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/../__init__.py",
        "/static/%2e%2e/__init__.py",
        "/static/..%2f..%2fconfig.py",
        "/static//etc/passwd",
        "/static/vendor",
    ],
)
async def test_only_the_shipped_files_can_be_fetched(path: str) -> None:
    async with running_server() as app:
        status, headers, body = await get(app, path)
        assert status == 404 and headers["Content-Type"].startswith("application/json")
        assert b"import" not in body
        health, _, _ = await get(app, "/health")
        assert health == 200


async def test_api_answers_carry_a_policy_that_allows_nothing() -> None:
    async with running_server() as app:
        _, headers, _ = await get(app, "/health")
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_dashboard_can_be_turned_off() -> None:
    async with running_server(dashboard=False) as app:
        page, _, _ = await get(app, "/")
        script, _, _ = await get(app, "/static/slurmcast.js")
        health, _, _ = await get(app, "/health")
    assert (page, script, health) == (404, 404, 200)


@pytest.mark.parametrize(
    "value",
    ["http://example.edu/ws", "ws://", "wss://x.example/ws; script-src *", "ws://a b/", "hello"],
)
def test_public_ws_url_must_be_a_plain_websocket_url(value: str) -> None:
    with pytest.raises(ConfigError, match="public-ws-url"):
        load_settings({"public_ws_url": value})


def test_dashboard_flag_reads_booleans() -> None:
    assert load_settings({"dashboard": "false"}).dashboard is False
    assert load_settings({}, {"SLURMCAST_DASHBOARD": "0"}).dashboard is False
    assert load_settings({}).dashboard is True
