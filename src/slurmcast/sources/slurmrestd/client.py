"""One HTTP client for slurmrestd: TCP or a unix socket, JWT headers, typed failures.

slurmrestd authenticates a request by its ``X-SLURM-USER-NAME`` and
``X-SLURM-USER-TOKEN`` headers (``auth/jwt``) or, on its unix socket, by the
connecting process (``rest_auth/local``: no headers). Tokens are short-lived:
the token file is re-read whenever it changes, so renewing it (a systemd timer
running ``scontrol token``) needs no restart.

Failures become ``SourceError`` with a message that says what to do:

* connection refused, reset or timed out: temporary, the poller backs off;
* 401/403, or 22.05's HTTP 500 for a refused token: ``TokenRefusedError``,
  naming when the token expired and how to renew it;
* ``errors`` in a reply body: reported, the body is never parsed as data.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import jwt
import orjson
import yarl

from slurmcast.errors import ConfigError, ErrorCode, SourceError

log = logging.getLogger("slurmcast.slurmrestd")

#: Connections (and so requests in flight) to slurmrestd at most.
CONCURRENCY: Final = 4
#: Reply body kept in an error message.
BODY_LIMIT: Final = 300


class TokenRefusedError(SourceError):
    """slurmrestd refused the credentials: retrying with the same token will not help."""


@dataclass(frozen=True, slots=True)
class RestSettings:
    """Where slurmrestd is and who slurmcast is to it."""

    url: str
    user: str = ""
    token: str = ""
    token_file: str = ""
    timeout: float = 20.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    #: The server's clock (``Date`` header), for conditional requests.
    date: datetime | None


class Token:
    """The JWT to send: from the environment, or from a file re-read when it changes.

    The file may hold the token alone or ``scontrol token``'s ``SLURM_JWT=<token>``.
    """

    def __init__(self, value: str = "", path: str = "") -> None:
        self._value = value.strip()
        self._path = path
        self._stamp: tuple[int, int] | None = None

    @property
    def source(self) -> str:
        if self._path:
            return f"file {self._path}"
        return "environment" if self._value else "none"

    def current(self) -> str:
        # A stat per request: a local file's metadata, microseconds, never the network.
        if not self._path:
            return self._value
        try:
            info = os.stat(self._path)
        except OSError as exc:
            raise TokenRefusedError(
                f"cannot read the slurmrestd token file {self._path}: {exc.strerror}"
            ) from None
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            try:
                with open(self._path, encoding="utf-8") as handle:
                    text = handle.read().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise TokenRefusedError(
                    f"cannot read the slurmrestd token file {self._path}: {exc}"
                ) from None
            self._value = text.removeprefix("SLURM_JWT=").strip()
            if self._stamp is not None:
                log.info("slurmrestd token file %s changed: using the new token", self._path)
            self._stamp = stamp
        return self._value

    def expiry(self) -> datetime | None:
        """When the current token expires (its ``exp`` claim, read without verifying)."""
        value = self._value
        if not value:
            return None
        try:
            claims = jwt.decode(value, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            return None
        try:
            return datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError):
            return None


class RestClient:
    """GET requests to one slurmrestd, with keep-alive and at most CONCURRENCY in flight."""

    def __init__(self, settings: RestSettings) -> None:
        self.settings = settings
        self.token = Token(settings.token, settings.token_file)
        self._target = _target(settings.url)
        self._session: aiohttp.ClientSession | None = None
        self.requests: dict[str, int] = {}
        self.request_seconds: dict[str, float] = {}

    @property
    def url(self) -> str:
        """The URL, for logs and /health (never credentials)."""
        return self._target.display

    async def get(
        self, path: str, params: Mapping[str, str] | None = None, *, label: str = ""
    ) -> Reply:
        """GET ``path``; 200 and 304 come back, every other outcome raises.

        Raises:
            TokenRefusedError: the credentials were refused.
            SourceError: unreachable, timed out, or an error status (with the
                ``errors`` slurmrestd gave).
        """
        session = self._session_or_new()
        headers = self._headers()
        name = label or path
        self.requests[name] = self.requests.get(name, 0) + 1
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.timeout):
                async with session.get(self._url(path, params), headers=headers) as response:
                    body = await response.read()
                    status = response.status
                    date = response.headers.get("Date")
        except TimeoutError:
            raise SourceError(
                f"slurmrestd GET {path} did not answer within {self.settings.timeout:g}s",
                code=ErrorCode.SOURCE_TIMEOUT,
            ) from None
        except aiohttp.ClientError as exc:
            raise SourceError(f"slurmrestd at {self.url} is unreachable: {_reason(exc)}") from None
        finally:
            elapsed = time.monotonic() - started
            self.request_seconds[name] = self.request_seconds.get(name, 0.0) + elapsed
        if status in (200, 304):
            return Reply(status, body, _http_date(date))
        raise self._failure(path, status, body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- internals ---------------------------------------------------------

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self._target.socket:
                connector = aiohttp.UnixConnector(path=self._target.socket, limit=CONCURRENCY)
            else:
                connector = aiohttp.TCPConnector(limit=CONCURRENCY, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"Accept": "application/json"}
            )
        return self._session

    def _url(self, path: str, params: Mapping[str, str] | None) -> yarl.URL:
        # Every reserved character percent-encoded: 22.05's slurmrestd refuses a raw
        # comma or colon in a query value ("Unable to parse query").
        query = urlencode(params or {}, quote_via=quote, safe="")
        return yarl.URL(self._target.base + path + (f"?{query}" if query else ""), encoded=True)

    def _headers(self) -> dict[str, str]:
        token = self.token.current()
        headers: dict[str, str] = {}
        if self.settings.user:
            headers["X-SLURM-USER-NAME"] = self.settings.user
        if token:
            headers["X-SLURM-USER-TOKEN"] = token
        return headers

    def _failure(self, path: str, status: int, body: bytes) -> SourceError:
        detail = _errors_of(body)
        if status in (401, 403):
            return TokenRefusedError(self._refused(f"HTTP {status}: {detail}"))
        token = self.token.current()
        expiry = self.token.expiry()
        if token and (expiry is None or expiry <= datetime.now(UTC)):
            # 22.05 answers a request with an expired or unreadable token with HTTP 500.
            return TokenRefusedError(self._refused(f"HTTP {status}: {detail}"))
        hint = ""
        if status == 500 and token:
            hint = " (Slurm 22.05 also answers a refused token with HTTP 500)"
        return SourceError(f"slurmrestd GET {path}: HTTP {status}: {detail}{hint}")

    def _refused(self, what: str) -> str:
        user = self.settings.user or "<user>"
        expiry = self.token.expiry()
        if not self.token.current():
            state = "no token was sent"
        elif expiry is None:
            state = "the token is not a JWT slurmcast can read"
        elif expiry <= datetime.now(UTC):
            state = f"the token expired at {expiry.isoformat().replace('+00:00', 'Z')}"
        else:
            state = "the token or user name is wrong"
        renew = (
            f"renew it with `scontrol token username={user} lifespan=<seconds>` into "
            f"{self.settings.token_file} (re-read at every request)"
            if self.settings.token_file
            else f"give a fresh one (`scontrol token username={user}`) in "
            "--slurmrestd-token-file or SLURMCAST_SLURMRESTD_TOKEN"
        )
        return f"slurmrestd refused the credentials ({what}): {state}; {renew}"


@dataclass(frozen=True, slots=True)
class _Target:
    base: str
    socket: str
    display: str


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise ConfigError(
                f"--slurmrestd-url {url!r}: expected unix:///path/to/slurmrestd.socket"
            )
        return _Target(base="http://localhost", socket=path, display=f"unix://{path}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--slurmrestd-url {url!r}: expected http://host:6820, https://host or unix:///path"
        )
    if parts.username or parts.password:
        raise ConfigError("--slurmrestd-url: put credentials in the token, not in the URL")
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return _Target(base=base, socket="", display=base)


def _errors_of(body: bytes) -> str:
    """What a reply says went wrong: its ``errors`` list, or its text."""
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:BODY_LIMIT] or "no reply body"
    errors = document.get("errors") if isinstance(document, dict) else None
    if isinstance(errors, list) and errors:
        texts = []
        for error in errors[:3]:
            if isinstance(error, dict):
                parts = [str(error.get(key)) for key in ("error", "description") if error.get(key)]
                texts.append(": ".join(parts) or str(error)[:100])
            else:
                texts.append(str(error)[:100])
        return "; ".join(texts)[:BODY_LIMIT]
    return "no error detail"


def _reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return str(exc.os_error.strerror or exc.os_error)
    return str(exc) or type(exc).__name__


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
