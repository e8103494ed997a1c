"""Random and malformed HTTP requests never get a 500, a traceback or a silent close.

A real server runs in a background thread (once with SQLite, once with
PostgreSQL, whose text refuses NUL where SQLite's does not); hypothesis
writes requests to it on raw sockets (so headers may hold any byte, and
bodies any encoding), and after each one a well-behaved client must still
get its answer. Every record the server logs at ERROR, or with a traceback,
fails the example that caused it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.databases import reset_schema, run_in_thread, sqlalchemy_url
from support.threaded import ServerThread, Tracebacks, collect_tracebacks, serving
from support.tokens import SECRET, admin, hs256

KEY = "k-0123456789abcdef"
TIMEOUT = 10.0

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
ODD_NUMBERS = st.sampled_from(
    [
        "1e300",
        "nan",
        "inf",
        "-0",
        "0",
        "-1",
        "99999999999999999999999",
        "1" * 5000,
        "0x10",
        "\u0661\u0660",  # Arabic-Indic digits, which int() reads
    ]
)
TEXT = st.text(max_size=30)
# Percent-encoded arbitrary bytes: not UTF-8, NUL, slashes, everything.
ENCODED = st.binary(max_size=30).map(lambda b: quote(b, safe=""))
QUERY_KEYS = st.sampled_from(
    ["limit", "before", "user", "unread", "status", "node", "state", "token", "", "x"]
)
PATHS = st.sampled_from(
    [
        "/health",
        "/broadcast",
        "/notifications",
        "/notifications/read-all",
        "/notifications/{}/read",
        "/snapshot/{}",
        "/{}",
        "/",
        "/notifications/{}",
        "//broadcast",
        "/snapshot/jobs/{}",
    ]
)
CHANNELS = st.sampled_from(["jobs", "nodes", "metrics", "alerts", "user:alice", "user:", "all"])
METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "BREW"])
CONTENT_TYPES = st.sampled_from(
    [
        b"application/json",
        b"application/json; charset=utf-8",
        b"application/json; charset=latin-1",
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"",
        b"\xff\xfe",
    ]
)
TOKENS = st.one_of(
    st.sampled_from(
        [
            admin(),
            hs256("alice"),
            admin(ttl=-600),
            hs256(secret="z" * 40),
            "a.b.c",
            "e30.e30.",
        ]
    ),
    TEXT,
)
HEADER_BYTES = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def paths(draw: st.DrawFn) -> str:
    template = draw(PATHS)
    if "{}" in template:
        part = draw(st.one_of(ENCODED, CHANNELS, st.just("notif-0123456789abcdef")))
        template = template.replace("{}", part)
    pairs = draw(
        st.lists(
            st.tuples(QUERY_KEYS, st.one_of(ENCODED, ODD_NUMBERS, CHANNELS, TEXT.map(quote))),
            max_size=4,
        )
    )
    if pairs:
        template += "?" + "&".join(f"{k}={v}" for k, v in pairs)
    return template


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    shape = draw(st.integers(0, 6))
    if shape == 0:
        return None
    if shape == 1:
        return draw(st.binary(max_size=200))
    if shape == 2:
        return json.dumps(draw(JSON_VALUES)).encode()
    if shape == 3:  # nested past what the server accepts, or what orjson can write
        depth = draw(st.sampled_from([31, 33, 255, 300, 1100]))
        return b'{"message": ' + b"[" * depth + b"]" * depth + b"}"
    body: dict[str, Any] = {}
    fields = st.sampled_from(
        ["channel", "message", "title", "type", "severity", "user", "data", "extra"]
    )
    for field in draw(st.lists(fields, max_size=6)):
        if field == "channel":
            body[field] = draw(st.one_of(CHANNELS, JSON_VALUES))
        elif field in ("title", "message") and draw(st.booleans()):
            body[field] = draw(st.text(max_size=50))
        elif field == "type":
            body[field] = draw(st.sampled_from(["system", "info", "alert", "job_failed", ""]))
        elif field == "severity":
            body[field] = draw(st.sampled_from(["info", "warning", "error", "loud"]))
        elif field == "user":
            body[field] = draw(st.sampled_from(["alice", "bob", "not a user", "", None]))
        else:
            body[field] = draw(st.dictionaries(st.text(max_size=5), JSON_VALUES) | JSON_VALUES)
    text = json.dumps(body)
    if draw(st.booleans()):  # lone surrogates and control characters, escaped
        text = text.replace("a", draw(st.sampled_from(["\\ud800", "\\u0000", "\\udfff"])), 1)
    return text.encode()


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(METHODS)
    headers: list[tuple[bytes, bytes]] = [(b"Host", b"fuzz"), (b"Connection", b"close")]
    if draw(st.booleans()):
        headers.append((b"Content-Type", draw(CONTENT_TYPES)))
    auth = draw(st.sampled_from(["none", "key", "bad key", "token", "bytes"]))
    if auth == "key":
        headers.append((b"X-API-Key", KEY.encode()))
    elif auth == "bad key":
        headers.append((b"X-API-Key", draw(HEADER_BYTES)))
    elif auth == "token":
        headers.append((b"Authorization", b"Bearer " + draw(TOKENS).encode("utf-8", "replace")))
    elif auth == "bytes":
        headers.append((b"Authorization", draw(HEADER_BYTES)))
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([b"Expect", b"Accept", b"Origin", b"X-Forwarded-For", b"X"]))
        headers.append((name, draw(HEADER_BYTES)))
    body = draw(bodies())
    encoding = draw(st.sampled_from([None, None, b"gzip", b"deflate", b"br", b"zstd", b"x"]))
    if body is not None and encoding is not None:
        headers.append((b"Content-Encoding", encoding))
    if body is not None and draw(st.booleans()):
        headers.append((b"Transfer-Encoding", b"chunked"))
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    else:
        if body is not None:
            headers.append((b"Content-Length", str(len(body)).encode()))
        payload = body or b""
    head = f"{method} {draw(paths())} HTTP/1.1".encode()
    return b"\r\n".join([head, *(n + b": " + v for n, v in headers)]) + b"\r\n\r\n" + payload


class HttpServer(ServerThread):
    def __init__(self, database_url: str) -> None:
        super().__init__(
            "slurmcast-http-fuzz-",
            auth="jwt",
            jwt_secret=SECRET,
            api_key=KEY,
            database_url=database_url,
            jobs_interval=3600.0,
            nodes_interval=3600.0,
            metrics_interval=3600.0,
        )

    def exchange(self, request: bytes) -> bytes:
        """Send a request; everything the server answers until it closes the connection."""
        with socket.create_connection(("127.0.0.1", self.app.http.port), timeout=TIMEOUT) as sock:
            # The server may answer and close before reading it all; a close
            # with unread bytes then resets: what came before the reset counts.
            with contextlib.suppress(ConnectionError):
                sock.sendall(request)
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):
                    received += chunk
            return received


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> Iterator[HttpServer]:
    database_url = ""  # SQLite in the server's data directory
    if request.param == "postgresql":
        name: str = request.getfixturevalue("postgres_database")
        run_in_thread(reset_schema(name))
        database_url = sqlalchemy_url(name)
    with serving(HttpServer(database_url)) as running:
        yield running


@pytest.fixture(scope="module")
def problems() -> Iterator[Tracebacks]:
    with collect_tracebacks(logging.WARNING) as handler:
        yield handler


def status_of(answer: bytes) -> int:
    line = answer.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1."), answer[:200]
    return int(line.split(b" ", 2)[1])


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_garbage_never_breaks_the_http_api(
    server: HttpServer, problems: Tracebacks, request: bytes
) -> None:
    problems.records.clear()
    answer = server.exchange(request)
    # Every request is answered (the deadlines are far away), never with a 5xx.
    assert status_of(answer) < 500, answer[:300]
    assert not problems.records, [
        (r.name, r.getMessage(), r.exc_info and r.exc_info[1]) for r in problems.records
    ]
    # Meanwhile a well-behaved client is served as usual.
    bystander = server.exchange(
        b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\nX-API-Key: "
        + KEY.encode()
        + b"\r\n\r\n"
    )
    assert status_of(bystander) == 200
    assert json.loads(bystander.partition(b"\r\n\r\n")[2])["status"] in ("healthy", "degraded")
