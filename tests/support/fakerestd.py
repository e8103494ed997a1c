"""A stand-in slurmrestd that serves recorded real replies, on a real socket.

``FakeRestd(release)`` serves, for every API version recorded for that release
(tests/fixtures/slurm/<release>/rest_<api>_*), ``/slurm/<api>/jobs``,
``/slurm/<api>/nodes``, ``/slurm/<api>/ping`` and ``/slurmdb/<api>/jobs``, plus an
``/openapi/v3`` listing those paths. The accounting listing is the release's
recorded single-job replies merged into one document (the crawler that recorded
them asked one job at a time); ``step`` selects jobs from it.

The test controls the rest: which token is accepted and how a refusal looks
(401, or 22.05's HTTP 500), failures, whether data changed (``update_time``
gets a 304 otherwise), and it can read back every request.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from support.slurm_fixtures import REST_JOB_LISTING, files, rest_path

REFUSAL_22_05 = {
    "errors": [
        {
            "description": "Failed while looking for jobs",
            "error_number": -1,
            "error": "Unspecified error",
            "source": "slurm_load_jobs",
        }
    ]
}


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeRestd:
    release: str
    #: None: no authentication (unix socket); else the token that is accepted.
    token: str | None = None
    #: How a refused token is answered: 401 (23.02+) or 500 (22.05).
    refusal_status: int = 401
    serve_openapi: bool = True
    #: Seconds since the epoch of the last change: a conditional request at or after it gets 304.
    last_change: float = field(default_factory=lambda: time.time() - 60)
    fail_with: tuple[int, bytes] | None = None
    #: Endpoints whose conditional requests fail with HTTP 500 (22.05's /nodes after a node change).
    broken_conditional: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    documents: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        for path in files(self.release, REST_JOB_LISTING):
            api = path.name.split("_")[1]
            if "slurmdb" in path.name:
                self.documents[("slurmdb", api, "jobs")] = path.read_bytes()
                continue
            self.documents[("slurm", api, "jobs")] = path.read_bytes()
            nodes = rest_path(self.release, api, "nodes")
            if nodes.exists():
                self.documents[("slurm", api, "nodes")] = nodes.read_bytes()
            ping = rest_path(self.release, api, "ping")
            self.documents[("slurm", api, "ping")] = (
                ping.read_bytes() if ping.exists() else b'{"errors": [], "pings": []}'
            )
            merged = _merge_accounting(files(self.release, f"rest_{api}_slurmdb_job_*.json"))
            if merged is not None:
                self.documents.setdefault(("slurmdb", api, "jobs"), merged)

    @property
    def apis(self) -> list[str]:
        return sorted({api for (plugin, api, _) in self.documents if plugin == "slurm"})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def change(self) -> None:
        """Something changed in the cluster: the next conditional request gets data."""
        self.last_change = time.time() + 1

    def serve(self, plugin: str, api: str, endpoint: str, document: bytes | dict[str, Any]) -> None:
        body = document if isinstance(document, bytes) else orjson.dumps(document)
        self.documents[(plugin, api, endpoint)] = body
        self.change()

    def seen(self, path_part: str) -> list[Request]:
        return [request for request in self.requests if path_part in request.path]

    @contextlib.asynccontextmanager
    async def running(self, unix_socket: Path | None = None) -> AsyncIterator[FakeRestd]:
        app = web.Application()
        app.router.add_get("/openapi/v3", self._openapi)
        app.router.add_get("/{plugin}/{api}/{endpoint}", self._endpoint)
        app.router.add_get("/{plugin}/{api}/{endpoint}/", self._endpoint)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site: web.BaseSite
        if unix_socket is not None:
            site = web.UnixSite(runner, str(unix_socket))
        else:
            site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        if unix_socket is None:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        try:
            yield self
        finally:
            await runner.cleanup()

    # -- handlers ----------------------------------------------------------

    async def _openapi(self, request: web.Request) -> web.Response:
        self._record(request)
        if not self.serve_openapi:
            return web.Response(status=404, text="Not Found")
        paths: dict[str, dict[str, dict[str, Any]]] = {
            f"/{p}/{api}/{e}": {"get": {}} for (p, api, e) in self.documents
        }
        return web.json_response({"openapi": "3.0.2", "info": {}, "paths": paths})

    async def _endpoint(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if self.fail_with is not None:
            status, failure = self.fail_with
            return web.Response(status=status, body=failure, content_type="application/json")
        match = request.match_info
        key = (match["plugin"], match["api"], match["endpoint"])
        body = self.documents.get(key)
        if body is None:
            return web.Response(status=404, text="Not Found")
        since = request.query.get("update_time")
        if since is not None and key[2] in self.broken_conditional:
            return web.json_response({"errors": [{"error": "Unspecified error"}]}, status=500)
        if since is not None and key[0] == "slurm" and float(since) >= self.last_change:
            return web.Response(status=304)
        if key[0] == "slurmdb" and "step" in request.query:
            body = _select(body, request.query["step"].split(","))
        return web.Response(body=body, content_type="application/json")

    def _record(self, request: web.Request) -> None:
        self.requests.append(Request(request.path, dict(request.query), dict(request.headers)))

    def _refusal(self, request: web.Request) -> web.Response | None:
        if self.token is None:
            return None
        if request.headers.get("X-SLURM-USER-TOKEN") == self.token:
            return None
        if self.refusal_status == 500:
            return web.json_response(REFUSAL_22_05, status=500)
        return web.Response(status=self.refusal_status, text="Authentication failure")


def _merge_accounting(paths: list[Path]) -> bytes | None:
    if not paths:
        return None
    documents = [orjson.loads(path.read_bytes()) for path in paths]
    jobs = [job for document in documents for job in document.get("jobs", [])]
    merged = {**documents[0], "jobs": jobs, "errors": [], "warnings": []}
    return orjson.dumps(merged)


def _select(body: bytes, ids: list[str]) -> bytes:
    document = orjson.loads(body)
    document["jobs"] = [job for job in document["jobs"] if str(job["job_id"]) in ids]
    return orjson.dumps(document)
