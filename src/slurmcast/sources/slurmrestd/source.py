"""The slurmrestd source: jobs, nodes and final states from Slurm's REST API.

The replies are the documents the CLI prints with ``--json`` (``/slurm/vX/jobs``
is ``squeue --json``, ``/slurm/vX/nodes`` is ``scontrol show nodes --json``,
``/slurmdb/vX/jobs`` is ``sacct --json``), so the same parsers read them and the
same diff core turns them into events: a second adapter, not a second pipeline.

Per poll: one ``GET /slurm/vX/jobs`` and one ``GET /slurm/vX/nodes``, both
conditional (``update_time``): slurmctld answers 304 and sends nothing while
nothing changed. Final states, exit codes and usage come from one
``GET /slurmdb/vX/jobs?step=<ids>`` per poll that saw jobs finish or vanish.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from slurmcast.core.records import JobRecord, JobsListing, JobState, NodesListing
from slurmcast.errors import ConfigError, SourceError
from slurmcast.sources.final_states import Accounting
from slurmcast.sources.slurm._common import document_release
from slurmcast.sources.slurm.jobs import parse_squeue_json
from slurmcast.sources.slurm.nodes import parse_nodes_json
from slurmcast.sources.slurm.sacct import FinalState
from slurmcast.sources.slurm.sacct_json import parse_sacct_json
from slurmcast.sources.slurmrestd.client import (
    Reply,
    RestClient,
    RestSettings,
    TokenRefusedError,
)
from slurmcast.sources.slurmrestd.versions import (
    SUPPORTED,
    ApiChoice,
    Offered,
    choose,
    newest_first,
    offered_by,
)

log = logging.getLogger("slurmcast.slurmrestd")

#: Job ids per accounting request (the query string stays short).
ACCOUNTING_BATCH: Final = 200
#: How far before its own clock a conditional request asks: covers the one-second
#: resolution of the Date header and a little skew between slurmrestd and slurmctld.
_CONDITIONAL_MARGIN: Final = timedelta(seconds=2)
#: The last version whose accounting reports ``return_code 0`` for a failed job (22.05).
_EXIT_CODE_BUG_UNTIL: Final = (0, 0, 38)


class SlurmRestSource:
    """``Source`` backed by slurmrestd."""

    kind = "slurmrestd"

    def __init__(
        self,
        settings: RestSettings,
        *,
        api: str = "auto",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if api != "auto" and api not in SUPPORTED:
            raise ConfigError(
                f"--slurmrestd-api {api!r}: auto, or one of {SUPPORTED[0]} to {SUPPORTED[-1]}"
            )
        self.client = RestClient(settings)
        self.wanted = api
        self._clock = clock
        self.offered: Offered | None = None
        self.choice: ApiChoice | None = None
        self.release: str | None = None
        self.detect_error: str | None = None
        self._accounting = Accounting("accounting request (slurmdbd)")
        self.not_modified: dict[str, int] = {"jobs": 0, "nodes": 0}
        #: Listings asked without ``update_time`` (the server mishandles it).
        self.unconditional: set[str] = set()
        self._jobs: tuple[str, JobsListing] | None = None
        self._nodes: tuple[str, NodesListing] | None = None

    # -- Source ------------------------------------------------------------

    async def start(self) -> None:
        """Pick the API version; unreachable now is retried at the next poll.

        Raises:
            ConfigError: the server does not serve the wanted version (or none
                slurmcast reads): the message names what it serves.
        """
        try:
            await self._negotiate()
        except SourceError as exc:
            self.detect_error = exc.message
            log.warning("slurmrestd not ready (will retry at the next poll): %s", exc.message)

    async def jobs(self) -> JobsListing:
        choice = await self._ready()
        path = choice.path("slurm", "jobs")
        reply = await self._listing("jobs", path, self._jobs)
        taken_at = self._clock()
        if reply.status == 304 and self._jobs is not None:
            self.not_modified["jobs"] += 1
            return JobsListing(taken_at, self._jobs[1].jobs)
        snapshot = await asyncio.to_thread(
            parse_squeue_json, reply.body, taken_at, f"slurmrestd GET {path}"
        )
        self._jobs = (self._stamp(reply, taken_at), snapshot)
        return snapshot

    async def nodes(self) -> NodesListing:
        choice = await self._ready()
        path = choice.path("slurm", "nodes")
        reply = await self._listing("nodes", path, self._nodes)
        taken_at = self._clock()
        if reply.status == 304 and self._nodes is not None:
            self.not_modified["nodes"] += 1
            return NodesListing(taken_at, self._nodes[1].nodes)
        snapshot = await asyncio.to_thread(
            parse_nodes_json, reply.body, taken_at, f"slurmrestd GET {path}"
        )
        self._nodes = (self._stamp(reply, taken_at), snapshot)
        return snapshot

    async def final_states(
        self, jobs: Mapping[str, JobRecord], since: datetime
    ) -> Mapping[str, JobRecord]:
        """How the jobs ended, from slurmdbd (one request per batch of ids)."""
        choice = self.choice
        if choice is None or choice.slurmdb is None or not jobs:
            return {}
        path = choice.path("slurmdb", "jobs")

        async def fetch(batch: Sequence[str]) -> Mapping[str, FinalState]:
            params = {"step": ",".join(batch), "start_time": self._start_time(since)}
            reply = await self.client.get(path, params, label="slurmdb_jobs")
            return await asyncio.to_thread(parse_sacct_json, reply.body, f"slurmrestd GET {path}")

        return await self._accounting.resolve(jobs, ACCOUNTING_BATCH, fetch, self._corrected)

    @property
    def accounting_error(self) -> str | None:
        return self._accounting.error

    @property
    def accounting_answers(self) -> bool:
        return (
            self.choice is not None
            and self.choice.slurmdb is not None
            and self.accounting_error is None
        )

    def describe(self) -> dict[str, Any]:
        problems = []
        if self.detect_error:
            problems.append(f"detection failed: {self.detect_error}")
        if self.accounting_error:
            problems.append(f"accounting request failed: {self.accounting_error}")
        expiry = self.client.token.expiry()
        return {
            "kind": self.kind,
            "url": self.client.url,
            "release": self.release,
            "api": {
                "wanted": self.wanted,
                "slurm": self.choice.slurm if self.choice else None,
                "slurmdb": self.choice.slurmdb if self.choice else None,
                "offered": sorted(self.offered.slurm) if self.offered else [],
            },
            "auth": {
                "user": self.client.settings.user or None,
                "token": self.client.token.source,
                "token_expires": expiry.isoformat().replace("+00:00", "Z") if expiry else None,
            },
            "accounting": {
                "available": bool(self.choice and self.choice.slurmdb),
                "error": self.accounting_error,
            },
            "requests": dict(self.client.requests),
            "not_modified": dict(self.not_modified),
            "unconditional": sorted(self.unconditional),
            "request_seconds": {k: round(v, 3) for k, v in self.client.request_seconds.items()},
            "problems": problems,
        }

    async def close(self) -> None:
        await self.client.close()

    # -- internals ---------------------------------------------------------

    async def _ready(self) -> ApiChoice:
        if self.choice is None:
            await self._negotiate()
        assert self.choice is not None
        return self.choice

    async def _negotiate(self) -> None:
        offered = await self._offered()
        choice = choose(offered, self.wanted)
        # One ping: the credentials work, and the reply's meta names the release.
        ping = await self.client.get(choice.path("slurm", "ping"), label="ping")
        document = await asyncio.to_thread(_json_object, ping.body)
        self.release = document_release(document) if document else None
        self.choice = choice
        self.offered = offered
        self.detect_error = None
        log.info(
            "slurmrestd at %s serves API %s: using %s (accounting: %s)",
            self.client.url,
            ", ".join(sorted(offered.slurm)) or "none",
            self.choice.slurm,
            self.choice.slurmdb or "none",
        )

    async def _offered(self) -> Offered:
        """What the server serves: its OpenAPI description, else its ping of each version."""
        try:
            reply = await self.client.get("/openapi/v3", label="openapi")
        except SourceError as exc:
            if "HTTP 404" not in exc.message:
                raise
        else:
            document = await asyncio.to_thread(_json_object, reply.body)
            if document is not None:
                return offered_by(document)
        # No description (the openapi plugin is optional): ask each version's ping.
        found: dict[tuple[str, str, str], str] = {}
        for version in newest_first(SUPPORTED):
            try:
                await self.client.get(f"/slurm/{version}/ping", label="ping")
            except SourceError as exc:
                if "HTTP 404" in exc.message:
                    continue
                raise
            for plugin, endpoint in (("slurm", "jobs"), ("slurm", "nodes"), ("slurm", "ping")):
                found[(plugin, version, endpoint)] = f"/{plugin}/{version}/{endpoint}"
            # Accounting is assumed at the same version; a failure says so in /health.
            found[("slurmdb", version, "jobs")] = f"/slurmdb/{version}/jobs"
            break
        return Offered(
            slurm=frozenset(v for (p, v, _) in found if p == "slurm"),
            slurmdb=frozenset(v for (p, v, _) in found if p == "slurmdb"),
            paths=found,
        )

    async def _listing(self, kind: str, path: str, cached: tuple[str, object] | None) -> Reply:
        """GET a listing, conditionally when a previous one is cached.

        22.05's slurmrestd answers a conditional ``/nodes`` with HTTP 500 when nodes
        changed but partitions did not (it loads both with the same
        ``update_time``): a failed conditional request is retried plainly, and if
        that works that listing is always asked plainly from then on.
        """
        if cached is None or kind in self.unconditional:
            return await self.client.get(path, label=kind)
        try:
            return await self.client.get(path, {"update_time": cached[0]}, label=kind)
        except TokenRefusedError:
            raise
        except SourceError as conditional:
            try:
                reply = await self.client.get(path, label=kind)
            except SourceError:
                raise conditional from None
            log.warning(
                "slurmrestd failed a conditional %s request (%s) but answers a plain one: "
                "asking for the whole listing from now on",
                kind,
                conditional.message,
            )
            self.unconditional.add(kind)
            return reply

    def _stamp(self, reply: Reply, taken_at: datetime) -> str:
        """The ``update_time`` of the next conditional request: the server's clock, a bit early."""
        moment = (reply.date or taken_at) - _CONDITIONAL_MARGIN
        return str(int(moment.timestamp()))

    def _start_time(self, since: datetime) -> str:
        assert self.choice is not None
        if _order(self.choice.slurmdb or "") <= _EXIT_CODE_BUG_UNTIL:
            # Up to v0.0.38 the window is a Slurm time in slurmrestd's own zone:
            # a relative one needs no zone.
            seconds = max(int((self._clock() - since).total_seconds()), 0)
            return f"now-{seconds}"
        return str(int(since.timestamp()))

    def _corrected(self, final: FinalState, seen: JobRecord) -> FinalState:
        """22.05's accounting says return code 0 for a failed job: keep the code squeue gave."""
        assert self.choice is not None
        if (
            _order(self.choice.slurmdb or "") <= _EXIT_CODE_BUG_UNTIL
            and final.state is JobState.FAILED
            and final.exit_code == 0
            and seen.exit_code
        ):
            return dataclasses.replace(final, exit_code=seen.exit_code)
        return final


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _order(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.lstrip("v").split("."))
    except ValueError:
        return ()
