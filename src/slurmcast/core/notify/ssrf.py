"""Which webhook URLs the server may call: the pure half of the SSRF defence.

A rule's webhook URL is written by a user, and the server calls it from inside the site's
network: without a policy, ``http://169.254.169.254/`` (cloud metadata),
``http://localhost:6379/`` (Redis) or any host of the private network would be one rule
away. The defence has two halves:

1. ``check_url`` when a rule is saved and again before each delivery: ``https`` (``http``
   only where the operator allows it), a host, no user name or password, a valid port; a
   literal IP address is checked at once.
2. ``check_addresses`` on every address the host name resolves to, right before
   connecting: loopback, link-local, private (RFC 1918, ULA), unspecified, multicast,
   reserved, documentation, benchmarking and shared (CGNAT) ranges are refused, also when
   hidden inside IPv6 (IPv4-mapped, NAT64, 6to4), unless inside a network the operator
   allowed. The adapter must then connect to an address it checked (not resolve again: DNS
   rebinding) and must not follow redirects.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from slurmcast.core.notify.errors import InvalidRule, UnsafeDestination

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Longer URLs are refused: a webhook URL is an address, not a place to carry data.
MAX_URL_LENGTH = 2048
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")

# (network, why it is refused). The catch-all ``not is_global`` below covers whatever this
# table misses (and ranges registered later); the table gives the reason a person reads.
_REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("0.0.0.0/8", "an unspecified address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a shared (CGNAT) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "a reserved address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a reserved address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/8", "a reserved address"),
        ("100::/64", "a reserved address"),
        ("2001::/23", "a reserved address"),
        ("2001:db8::/32", "a documentation address"),
        ("fc00::/7", "a private address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a reserved address"),
        ("ff00::/8", "a multicast address"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class ParsedTarget:
    """A webhook URL that passed ``check_url``.

    ``host`` is lower-case ASCII (IDNA for international names), without brackets for an
    IPv6 literal; ``ip`` is set when the host is a literal address; ``target`` is the path
    and query to request.
    """

    url: str
    scheme: str
    host: str
    port: int
    target: str
    ip: IPAddress | None = None


def check_url(
    url: object, *, allow_http: bool, allowed_networks: Iterable[IPNetwork] = ()
) -> ParsedTarget:
    """Check a webhook URL's form (and its address when it is a literal one).

    Raises:
        InvalidRule: not a string, too long, whitespace or control characters, no host, a
            bad port or host name.
        UnsafeDestination: a scheme other than https (or http where allowed), a user name or
            password, or a literal address ``check_addresses`` refuses.
    """
    if not isinstance(url, str):
        raise InvalidRule("url must be a string", field="url")
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidRule(f"url must be 1 to {MAX_URL_LENGTH} characters", field="url")
    if not url.isprintable() or any(ch.isspace() for ch in url):
        raise InvalidRule("url has whitespace or a control character", field="url")
    try:
        parts = urlsplit(url)
    except ValueError:  # "https://[::1": an unbalanced bracket
        raise InvalidRule("url is malformed", field="url") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed:
        raise UnsafeDestination(f"url must use {' or '.join(allowed)}")
    if "@" in parts.netloc:
        # Credentials in a URL end up in logs, and "https://trusted@evil/" misleads readers.
        raise UnsafeDestination("url may not carry a user name or password")
    try:
        port = parts.port
    except ValueError:
        raise InvalidRule("url has an invalid port", field="url") from None
    if port == 0:
        raise InvalidRule("url has an invalid port", field="url")
    raw_host = parts.hostname
    if not raw_host:
        raise InvalidRule("url has no host", field="url")
    ip = _literal_ip(raw_host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        # A zone ("fe80::1%eth0") names one of this machine's interfaces: never a webhook.
        raise InvalidRule("url's address may not carry a zone", field="url")
    host = str(ip) if ip is not None else _host_name(raw_host)
    if ip is not None:
        check_addresses([ip], allowed_networks)
    elif host == "localhost" or host.endswith(".localhost"):
        # RFC 6761: these names are the loopback interface whatever DNS says.
        raise UnsafeDestination("the webhook's host is a loopback name")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return ParsedTarget(
        url=url,
        scheme=scheme,
        host=host,
        port=port if port is not None else (443 if scheme == "https" else 80),
        target=target,
        ip=ip,
    )


def check_addresses(ips: Iterable[IPAddress], allowed_networks: Iterable[IPNetwork]) -> None:
    """Refuse unless every address a host resolved to may be called.

    Every address must pass, not just one: the adapter may connect to any of them. An
    address inside an operator-allowed network passes whatever its range.

    Raises:
        UnsafeDestination: no address at all, or one that ``refusal`` refuses.
    """
    networks = tuple(allowed_networks)
    checked = 0
    for ip in ips:
        checked += 1
        why = refusal(ip, networks)
        if why is not None:
            raise UnsafeDestination(f"the webhook's host is {why} ({ip})")
    if not checked:
        raise UnsafeDestination("the webhook's host has no address")


def refusal(ip: IPAddress, allowed_networks: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``ip`` may not be called (``"a private address"``...), or None if it may."""
    embedded = _embedded_ipv4(ip)
    candidates = (ip,) if embedded is None else (ip, embedded)
    if any(addr in net for addr in candidates for net in allowed_networks):
        return None
    # An IPv4 address wrapped in IPv6 reaches that IPv4 host: judge the host, not the wrapper.
    effective = embedded if embedded is not None else ip
    for net, why in _REFUSED:
        if effective in net:
            return why
    if not effective.is_global:
        return "not a public address"
    return None


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The operator's allowed networks (``10.1.2.0/24``, ``fd00::/8``, a single address).

    Raises:
        ValueError: a value that is not a network (host bits set included: a typo there
            would silently allow more or less than meant).
    """
    return tuple(ipaddress.ip_network(value.strip(), strict=True) for value in values)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _host_name(host: str) -> str:
    """A DNS host name, lower-case ASCII; no numeric look-alikes of IP addresses."""
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidRule("url has an invalid host name", field="url") from None
    ascii_host = ascii_host.removesuffix(".")
    labels = ascii_host.split(".")
    if (
        len(ascii_host) > 253
        or not all(len(label) <= 63 and _HOST_LABEL.fullmatch(label) for label in labels)
        or "%" in host
    ):
        raise InvalidRule("url has an invalid host name", field="url")
    # "127.1", "0x7f.1" or "2130706433" are not DNS names but a resolver may read them as
    # IPv4 addresses; no top-level domain is numeric, so refuse them outright.
    last = labels[-1]
    if last.isdigit() or last.startswith("0x"):
        raise InvalidRule("url's host is neither a name nor a plain IP address", field="url")
    return ascii_host


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """The operator's webhook settings: plain http allowed (a lab), networks exempted from
    the address checks (an internal chat server)."""

    allow_http: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def check(self, url: object) -> ParsedTarget:
        return check_url(url, allow_http=self.allow_http, allowed_networks=self.allowed_networks)
