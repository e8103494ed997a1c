"""The webhook address policy: URL form, every refused range, operator exemptions."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurmcast.core.notify.errors import InvalidRule, UnsafeDestination
from slurmcast.core.notify.ssrf import (
    IPAddress,
    UrlPolicy,
    check_addresses,
    check_url,
    parse_networks,
    refusal,
)
from slurmcast.errors import ErrorCode


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


# One address of every range the policy refuses, with the reason a person reads.
REFUSED = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.169.254", "link-local"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "reserved"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::a00:1", "reserved"),  # IPv4-compatible (deprecated)
    ("100::1", "reserved"),
    ("2001::1", "reserved"),  # Teredo
    ("2001:db8::1", "documentation"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fe80::1", "link-local"),
    ("fec0::1", "reserved"),
    ("ff02::1", "multicast"),
    # IPv4 hidden in IPv6 reaches the IPv4 host: judged as that host.
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:100.64.0.1", "CGNAT"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "140.82.112.3",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above
    "2606:4700:4700::1111",
    "2a00:1450:4007:80c::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_every_refused_range(address: str, why: str) -> None:
    reason = refusal(ip(address))
    assert reason is not None
    assert why.lower() in reason.lower()
    with pytest.raises(UnsafeDestination) as caught:
        check_addresses([ip(address)], [])
    assert caught.value.code is ErrorCode.FORBIDDEN


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ip(address)) is None
    check_addresses([ip(address)], [])


def test_one_bad_address_among_good_ones_refuses() -> None:
    with pytest.raises(UnsafeDestination):
        check_addresses([ip("8.8.8.8"), ip("10.0.0.1")], [])


def test_no_address_at_all_is_refused() -> None:
    with pytest.raises(UnsafeDestination):
        check_addresses([], [])


def test_operator_networks_exempt_only_themselves() -> None:
    allowed = parse_networks(["10.1.2.0/24", "fd00::/8"])
    check_addresses([ip("10.1.2.9"), ip("fd00::5"), ip("::ffff:10.1.2.3")], allowed)
    with pytest.raises(UnsafeDestination):
        check_addresses([ip("10.1.3.1")], allowed)
    with pytest.raises(UnsafeDestination):
        check_addresses([ip("127.0.0.1")], allowed)


@given(st.ip_addresses(v=4, network="10.0.0.0/8") | st.ip_addresses(v=4, network="127.0.0.0/8"))
def test_any_private_or_loopback_v4_refused_also_when_mapped(address: IPAddress) -> None:
    assert refusal(address) is not None
    assert refusal(ipaddress.IPv6Address(f"::ffff:{address}")) is not None


@given(st.ip_addresses(v=6, network="fc00::/7") | st.ip_addresses(v=6, network="fe80::/10"))
def test_any_ula_or_link_local_v6_refused(address: IPAddress) -> None:
    assert refusal(address) is not None


@pytest.mark.parametrize("value", ["10.0.0.1/8", "not-a-network", "300.0.0.0/8"])
def test_parse_networks_rejects_typos(value: str) -> None:
    with pytest.raises(ValueError):
        parse_networks([value])


# --- URLs


def test_trailing_dot_is_the_same_host() -> None:
    assert check_url("https://example.com./", allow_http=False).host == "example.com"


def test_check_url_parses_a_plain_https_url() -> None:
    target = check_url("https://Hooks.Example.com/services/T0/B0?x=1#frag", allow_http=False)
    assert (target.scheme, target.host, target.port, target.target, target.ip) == (
        "https",
        "hooks.example.com",
        443,
        "/services/T0/B0?x=1",
        None,
    )


@pytest.mark.parametrize(
    ("url", "port", "target"),
    [
        ("https://example.com", 443, "/"),
        ("https://example.com:8443/x", 8443, "/x"),
        ("https://example.com:65535/", 65535, "/"),
    ],
)
def test_ports_and_default_paths(url: str, port: int, target: str) -> None:
    parsed = check_url(url, allow_http=False)
    assert (parsed.port, parsed.target) == (port, target)


def test_http_only_where_allowed() -> None:
    with pytest.raises(UnsafeDestination):
        check_url("http://example.com/hook", allow_http=False)
    assert check_url("http://example.com/hook", allow_http=True).port == 80


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "https://user:pw@example.com/",
        "https://user@example.com/",
        "https://example.com@10.0.0.1/",
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://[::ffff:169.254.169.254]/latest/meta-data",
        "https://169.254.169.254/",
        "https://localhost/",
        "https://LocalHost./",
        "https://api.localhost:8080/",
    ],
)
def test_unsafe_urls(url: str) -> None:
    with pytest.raises(UnsafeDestination) as caught:
        check_url(url, allow_http=True)
    assert caught.value.code is ErrorCode.FORBIDDEN


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://",
        "https:///path",
        "https://example.com:0/",
        "https://example.com:65536/",
        "https://example.com:port/",
        "https://exa mple.com/",
        "https://example.com/\r\nX-Injected: 1",
        "https://example.com/\x00",
        "https://127.1/",  # numeric look-alikes a resolver reads as 127.0.0.1
        "https://2130706433/",
        "https://0x7f.1/",
        "https://-bad-.example.com/",
        "https://" + "a" * 64 + ".example.com/",
        "https://example.com/" + "a" * 2048,
        "https://[fe80::1%25eth0]/",
        "https://[::1",  # an unbalanced bracket: urlsplit itself refuses it
    ],
)
def test_malformed_urls(url: str) -> None:
    with pytest.raises(InvalidRule) as caught:
        check_url(url, allow_http=True)
    assert caught.value.code is ErrorCode.INVALID_FIELD
    assert caught.value.field == "url"


def test_non_string_url() -> None:
    with pytest.raises(InvalidRule):
        check_url(42, allow_http=False)


def test_international_names_become_idna() -> None:
    assert check_url("https://bücher.example/", allow_http=False).host == "xn--bcher-kva.example"


def test_literal_address_in_an_allowed_network_passes() -> None:
    target = check_url(
        "http://10.1.2.3:8065/hooks/x",
        allow_http=True,
        allowed_networks=parse_networks(["10.1.2.0/24"]),
    )
    assert target.ip == ip("10.1.2.3")
    policy = UrlPolicy(allow_http=True, allowed_networks=parse_networks(["10.1.2.0/24"]))
    assert policy.check("http://10.1.2.3/x").host == "10.1.2.3"
    with pytest.raises(UnsafeDestination):
        UrlPolicy().check("http://10.1.2.3/x")


def test_public_literal_address_passes() -> None:
    assert check_url("https://[2606:4700:4700::1111]/x", allow_http=False).host == (
        "2606:4700:4700::1111"
    )
