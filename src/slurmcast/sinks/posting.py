"""One POST to a user-given URL, safely: the HTTP half shared by the Slack and webhook sinks.

The SSRF defence (``core.notify.ssrf``) needs the adapter's help, and this is it:

1. the URL is checked again (``UrlPolicy.check``) before every attempt;
2. the host name is resolved here, once, and **every** address it resolves to is checked
   (``check_addresses``, with the operator's allowed networks);
3. the connection goes to one of those checked addresses only: the client's resolver is a
   ``PinnedResolver`` that answers with them whatever it is asked, so a second DNS answer
   (rebinding) can never change the target after the check. The request still names the
   original host (``Host`` header, TLS server name and certificate check);
4. redirects are not followed (a 3xx is a permanent failure), the response body is read up
   to a small limit and no further, compressed answers are not inflated, and the whole
   exchange has a timeout. Proxies from the environment are ignored (they would connect
   elsewhere).

A fresh connector per attempt: nothing pooled outlives the check that allowed it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from slurmcast import __version__
from slurmcast.core.notify.ssrf import IPAddress, ParsedTarget, UrlPolicy, check_addresses
from slurmcast.errors import ProtocolError
from slurmcast.sinks.base import (
    PermanentFailure,
    SendResult,
    TemporaryFailure,
    excerpt,
)

#: How much of a response body is read; the rest is never received on purpose.
RESPONSE_LIMIT: Final = 4096
USER_AGENT: Final = f"slurmcast/{__version__}"
#: A target meaning "the operator's configured URL" (``core.notify.addresses.DEFAULT_TARGET``).
DEFAULT_TARGET: Final = "default"
# Errors of getaddrinfo that mean "this name has no address" rather than "DNS is down".
_NO_SUCH_NAME = {socket.EAI_NONAME} | (
    {socket.EAI_NODATA} if hasattr(socket, "EAI_NODATA") else set()
)

#: Resolves (host, port) to addresses; the default asks the system through the event loop.
Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class HttpSinkSettings:
    """The operator's settings for an HTTP sink.

    ``policy`` is the SSRF policy (plain http, allowed networks); ``default_url`` is where a
    delivery whose target is ``default`` goes (None: such a delivery fails permanently).
    ``timeout_s`` bounds the whole attempt (resolution, connection, request, response);
    ``connect_timeout_s`` the TCP and TLS connection alone.
    """

    policy: UrlPolicy = field(default_factory=UrlPolicy)
    #: A Slack URL carries its token: never in a repr.
    default_url: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    response_limit: int = RESPONSE_LIMIT
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        if not self.timeout_s > 0 or not self.connect_timeout_s > 0:
            raise ValueError("timeouts must be positive")
        if self.response_limit < 0:
            raise ValueError("the response limit cannot be negative")


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host`` (TCP)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # An IPv6 link-local answer carries its zone ("fe80::1%eth0"); refused either way.
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


class PinnedResolver(AbstractResolver):
    """A resolver that answers every question with addresses checked beforehand.

    One per attempt, for its one target: the connector never asks DNS itself.
    """

    def __init__(self, hostname: str, addresses: list[IPAddress]) -> None:
        self._hostname = hostname
        self._addresses = list(addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=self._hostname,
                host=str(ip),
                port=port,
                family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for ip in self._addresses
            if family
            in (socket.AF_UNSPEC, (socket.AF_INET6 if ip.version == 6 else socket.AF_INET))
        ]

    async def close(self) -> None:
        return None


class HttpPoster:
    """POSTs a JSON body to a checked, pinned address; classifies the outcome."""

    def __init__(
        self,
        settings: HttpSinkSettings,
        *,
        resolve: Resolve = system_resolve,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self._resolve = resolve
        self._clock = clock

    def target_url(self, target: str) -> str:
        """The URL a delivery's target means.

        Raises:
            PermanentFailure: ``default`` without a configured default URL.
        """
        if target != DEFAULT_TARGET:
            return target
        if self.settings.default_url is None:
            raise PermanentFailure("no default URL is configured for this destination")
        return self.settings.default_url

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        """POST ``body`` (JSON) to ``url`` with ``headers``.

        Raises:
            PermanentFailure: an unsafe or malformed URL, a name without addresses, a 3xx, a
                4xx other than 408 and 429.
            TemporaryFailure: resolution or connection failed, a timeout, 408, 429, a 5xx.
        """
        settings = self.settings
        try:
            target = settings.policy.check(url)
        except ProtocolError as exc:
            raise PermanentFailure(f"refused URL: {exc.message}") from None
        try:
            async with asyncio.timeout(settings.timeout_s):
                addresses = await self._addresses(target)
                return await self._exchange(target, addresses, body, headers)
        except TimeoutError:
            raise TemporaryFailure(
                f"no answer from {target.host} within {settings.timeout_s:g} s"
            ) from None

    async def _addresses(self, target: ParsedTarget) -> list[IPAddress]:
        if target.ip is not None:
            addresses = [target.ip]
        else:
            try:
                addresses = await self._resolve(target.host, target.port)
            except socket.gaierror as exc:
                message = f"cannot resolve {target.host}: {exc.strerror or exc}"
                if exc.errno in _NO_SUCH_NAME:
                    raise PermanentFailure(message) from None
                raise TemporaryFailure(message) from None
            except OSError as exc:
                raise TemporaryFailure(f"cannot resolve {target.host}: {exc}") from None
        try:
            check_addresses(addresses, self.settings.policy.allowed_networks)
        except ProtocolError as exc:
            raise PermanentFailure(f"refused address: {exc.message}") from None
        return addresses

    async def _exchange(
        self,
        target: ParsedTarget,
        addresses: list[IPAddress],
        body: bytes,
        headers: Mapping[str, str],
    ) -> SendResult:
        settings = self.settings
        connector = aiohttp.TCPConnector(
            resolver=PinnedResolver(target.host, addresses),
            use_dns_cache=False,
            force_close=True,
            limit=1,
        )
        timeout = aiohttp.ClientTimeout(
            total=settings.timeout_s, sock_connect=settings.connect_timeout_s
        )
        request_headers = {
            "Content-Type": "application/json",
            "User-Agent": settings.user_agent,
            # Never inflated here: an answer read up to a limit must not grow in memory.
            "Accept-Encoding": "identity",
            **headers,
        }
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector,
                    timeout=timeout,
                    auto_decompress=False,
                    trust_env=False,
                ) as session,
                session.post(
                    target.url, data=body, headers=request_headers, allow_redirects=False
                ) as response,
            ):
                answer = await _read_limited(response, settings.response_limit)
                status = response.status
                retry_after = response.headers.get("Retry-After")
                response.close()
        except TimeoutError:
            raise
        except aiohttp.ClientConnectorError as exc:
            raise TemporaryFailure(
                f"cannot connect to {target.host}:{target.port}: {exc.os_error.strerror or exc}"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TemporaryFailure(
                f"request to {target.host} failed: {exc.__class__.__name__}: {excerpt(str(exc))}"
            ) from None
        return self._outcome(target, status, answer, retry_after)

    def _outcome(
        self, target: ParsedTarget, status: int, answer: bytes, retry_after: str | None
    ) -> SendResult:
        what = f"{target.host} answered HTTP {status}"
        said = excerpt(answer)
        if said:
            what += f": {said}"
        if 200 <= status < 300:
            return SendResult(detail=f"HTTP {status}", status=status, body=answer)
        if 300 <= status < 400:
            raise PermanentFailure(f"{what} (a redirect, not followed)", status=status)
        if status in (408, 429) or status >= 500:
            delay = parse_retry_after(retry_after, self._clock())
            raise TemporaryFailure(what, status=status, retry_after_s=delay)
        raise PermanentFailure(what, status=status)


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = await response.content.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds from ``now``: delta-seconds or an HTTP date (RFC 9110).

    None when absent or unreadable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value[:12]))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
