"""Settings, and where they come from.

Every option can be given four ways; the first that is set wins:

1. a command-line flag (``--ws-port 6011``),
2. an environment variable (``SLURMCAST_WS_PORT=6011``),
3. a key in the TOML config file (``ws_port = 6011``) named by ``--config`` or
   ``SLURMCAST_CONFIG``,
4. the built-in default.

``MOCK_MODE=true|false`` (from the original design) is an environment alias
for ``source``: true selects the simulated cluster, false real Slurm. An
explicit ``SLURMCAST_SOURCE`` or ``--source`` takes precedence over it.

Longer than ~400 lines on purpose: one declaration per option (flag, environment, file,
default, help), each a few lines.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from slurmcast.errors import ConfigError
from slurmcast.sinks.config import SinksConfig, parse_sinks

ENV_PREFIX = "SLURMCAST_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SOURCES = ("simulator", "slurm", "slurmrestd")

# Upper bounds of the numeric options. A value past them is a typo or an
# attempt to switch a check off (a leeway of 1e18 s accepts any expired token;
# a sleep of 1e300 s overflows the event loop's timer), never a setting.
HOUR = 3600.0
DAY = 86400.0
YEAR = 365 * DAY
#: Clock skew tolerated on token times: minutes at most, or expiry means little.
MAX_JWT_LEEWAY = 300.0
#: Byte sizes (frames, buffers, bodies): 1 GiB.
MAX_BYTES = 1 << 30
#: Messages kept per channel (``history_size``).
MAX_HISTORY_SIZE = 1_000_000


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
) -> Any:
    """A settings field with the metadata the CLI, env and file loaders share."""
    return field(
        default=default,
        metadata={
            "help": help,
            "choices": choices,
            "minimum": minimum,
            "maximum": maximum,
            "positive": positive,
        },
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything that can be configured. Field names are the config-file keys."""

    host: str = option("0.0.0.0", "address both servers listen on")
    ws_port: int = option(5011, "WebSocket port", minimum=0, maximum=65535)
    http_port: int = option(5012, "HTTP API port", minimum=0, maximum=65535)
    source: str = option("simulator", "where cluster state comes from", choices=SOURCES)
    jobs_interval: float = option(5.0, "seconds between job polls", positive=True, maximum=DAY)
    nodes_interval: float = option(5.0, "seconds between node polls", positive=True, maximum=DAY)
    metrics_interval: float = option(
        15.0, "seconds between metrics_update messages", positive=True, maximum=DAY
    )
    source_timeout: float = option(
        30.0, "seconds before a source call is abandoned", positive=True, maximum=HOUR
    )
    backoff_max: float = option(
        60.0, "longest wait between retries while the source fails", positive=True, maximum=DAY
    )
    slurm_bin_dir: str = option(
        "", "directory holding squeue, sinfo, sacct and scontrol (default: search PATH)"
    )
    slurm_format: str = option(
        "auto",
        "Slurm output to parse: auto (JSON where Slurm >= 21.08 supports it), json or delimited",
        choices=("auto", "json", "delimited"),
    )
    slurm_timeout: float = option(
        20.0,
        "seconds before one Slurm command (or slurmrestd request) is abandoned",
        positive=True,
        maximum=HOUR,
    )
    slurm_json_max_jobs: int = option(
        2000,
        "above this many jobs, auto mode lists jobs in the delimited format (cheaper to parse)",
        minimum=0,
    )
    slurmrestd_url: str = option(
        "",
        "slurmrestd to watch with --source slurmrestd: http://host:6820, https://..., "
        "or unix:///path/to/slurmrestd.socket",
    )
    slurmrestd_user: str = option("", "user name sent with the token (X-SLURM-USER-NAME)")
    slurmrestd_token_file: str = option(
        "", "file holding the slurmrestd JWT (or scontrol token's SLURM_JWT=...), re-read on change"
    )
    slurmrestd_token: str = option(
        "",
        "slurmrestd JWT (prefer SLURMCAST_SLURMRESTD_TOKEN or the token file: flags are visible)",
    )
    slurmrestd_api: str = option(
        "auto", "slurmrestd API version: auto (the newest both sides know) or v0.0.36 to v0.0.44"
    )
    final_state_attempts: int = option(
        3,
        "polls a vanished job's final state is looked up before it is reported unconfirmed",
        minimum=1,
        maximum=1000,
    )
    sim_seed: int = option(1, "seed of the simulated cluster (same seed, same cluster)")
    sim_speed: float = option(
        1.0,
        "simulated seconds per real second (60 = an hour per minute)",
        positive=True,
        maximum=1e6,
    )
    sim_node_events: float = option(
        0.3,
        "simulated node drains and failures per node per simulated day",
        minimum=0,
        maximum=1000,
    )
    sim_nodes: int = option(16, "number of simulated nodes (8-32)", minimum=8, maximum=32)
    log_level: str = option("INFO", "logging level", choices=LOG_LEVELS)
    log_format: str = option(
        "text",
        "log lines as text, or as JSON objects for a log collector",
        choices=("text", "json"),
    )
    max_message_size: int = option(
        65536,
        "largest client frame in bytes; larger closes the connection with 1009",
        minimum=1,
        maximum=MAX_BYTES,
    )
    client_buffer_limit: int = option(
        1048576,
        "bytes queued for one client before it is closed as a slow consumer (4008)",
        minimum=1,
        maximum=MAX_BYTES,
    )
    slow_client_grace: float = option(
        5.0,
        "seconds a slow consumer gets to read its close frame before its connection is cut",
        positive=True,
        maximum=HOUR,
    )
    compression: str = option(
        "deflate",
        "WebSocket compression offered to clients: deflate (permessage-deflate, "
        "for clients that ask), or none",
        choices=("deflate", "none"),
    )
    ping_interval: float = option(
        20.0, "seconds between keepalive pings", positive=True, maximum=DAY
    )
    ping_timeout: float = option(
        20.0,
        "seconds to wait for a pong before dropping the connection",
        positive=True,
        maximum=DAY,
    )
    cpu_change_threshold: float = option(
        20.0,
        "CPU usage points a node must move to raise node_resource_change",
        minimum=0,
        maximum=100,
    )
    alert_cpu_threshold: float = option(
        90.0, "cluster CPU usage percent above which an alert fires", minimum=0, maximum=100
    )
    alert_memory_threshold: float = option(
        95.0, "cluster memory usage percent above which an alert fires", minimum=0, maximum=100
    )
    alert_hysteresis: float = option(
        5.0,
        "points below a threshold a value must fall for its alert to resolve",
        minimum=0,
        maximum=100,
    )
    http_max_body: int = option(
        1048576, "largest HTTP request body in bytes", minimum=1, maximum=MAX_BYTES
    )
    http_header_timeout: float = option(
        10.0,
        "seconds an HTTP client has to send a request's headers (from connecting, or from the "
        "first byte of a request on a kept-alive connection); slower ones are disconnected",
        positive=True,
        maximum=600,
    )
    http_body_timeout: float = option(
        15.0,
        "seconds an HTTP client has to send a request's body once its headers arrived; "
        "slower ones are disconnected",
        positive=True,
        maximum=HOUR,
    )
    http_max_connections_per_ip: int = option(
        100,
        "HTTP API connections per client address; more are refused with 429",
        minimum=1,
    )
    dashboard: bool = option(True, "serve the web dashboard at / on the HTTP port")
    public_ws_url: str = option(
        "",
        "WebSocket URL the dashboard connects to, when a proxy serves it elsewhere "
        "(default: the page's host name and --ws-port)",
    )
    data_dir: str = option("data", "directory for the default SQLite database")
    database_url: str = option(
        "",
        "notifications database: sqlite+aiosqlite:///FILE or postgresql+asyncpg://... "
        "(default: SQLite in data_dir)",
    )
    history_size: str = option(
        "jobs=1000,notifications=1000,nodes=100,metrics=20,alerts=200,user=100",
        "messages kept per channel for history and recovery (user = each user:<name> channel)",
    )
    history_ttl: float = option(
        0.0,
        "seconds a message is kept for history and recovery (0: no age limit)",
        minimum=0,
        maximum=YEAR,
    )
    # -- scale-out (docs/deployment.md) --
    broker: str = option(
        "memory",
        "where channels, history and state live: memory (this process), or redis "
        "(shared by every instance using the same redis_url and redis_prefix)",
        choices=("memory", "redis"),
    )
    redis_url: str = option("redis://127.0.0.1:6379/0", "Redis server for --broker redis")
    redis_prefix: str = option(
        "slurmcast", "prefix of every Redis key and channel (one per slurmcast cluster)"
    )
    instance_id: str = option("", "this instance's name in /health and Redis (default: random)")
    leader_ttl: float = option(
        6.0,
        "seconds the polling lease lasts without renewal (renewed every third of it): "
        "how fast another instance takes over polling when the leader dies",
        positive=True,
        maximum=HOUR,
    )
    presence_ttl: float = option(
        15.0,
        "seconds an instance's client counts stay in Redis without refresh",
        positive=True,
        maximum=DAY,
    )
    sim_start: str = option(
        "",
        "simulated cluster's start time, ISO-8601 (default: now); give every instance "
        "the same value (and seed) so any of them can take over polling one cluster",
    )
    # -- security (docs/security.md) --
    auth: str = option(
        "none", "client authentication: none, or jwt (tokens required)", choices=("none", "jwt")
    )
    jwt_secret: str = option("", "HS256 shared secret (prefer the environment or config file)")
    jwt_public_key: str = option("", "PEM public key file for RS256 or ES256 tokens")
    jwks: str = option("", "JWKS file (RS256/ES256 keys selected by the token's kid)")
    jwt_audience: str = option("", "required 'aud' claim (empty: not checked)")
    jwt_issuer: str = option("", "required 'iss' claim (empty: not checked)")
    jwt_leeway: float = option(
        10.0,
        "seconds of clock skew allowed on exp, nbf and iat",
        minimum=0,
        maximum=MAX_JWT_LEEWAY,
    )
    api_key: str = option("", "key for the HTTP API's write endpoints (X-API-Key header)")
    auth_timeout: float = option(
        5.0, "seconds a client has to send its auth message", positive=True, maximum=HOUR
    )
    refresh_grace: float = option(
        30.0,
        "seconds after a token expires for the client to send a refresh",
        positive=True,
        maximum=DAY,
    )
    jobs_visibility: str = option(
        "own",
        "what users see on jobs and notifications: own (their jobs), or all",
        choices=("own", "all"),
    )
    rate_limit: float = option(
        60.0, "messages a client may send per minute (token bucket)", positive=True, maximum=1e9
    )
    rate_burst: int = option(10, "messages a client may send at once above the rate", minimum=1)
    flood_warnings: int = option(
        10, "rate-limit refusals in a row before the client is closed with 1008", minimum=1
    )
    max_connections: int = option(10000, "WebSocket connections in total", minimum=1)
    max_connections_per_ip: int = option(200, "WebSocket connections per client address", minimum=1)
    max_connections_per_user: int = option(50, "WebSocket connections per user", minimum=1)
    max_channels: int = option(32, "channels one connection may subscribe to", minimum=1)
    ws_handshake_timeout: float = option(
        10.0,
        "seconds a WebSocket client has, from its TCP connection, to finish the handshake",
        positive=True,
        maximum=HOUR,
    )
    reply_bytes_per_token: int = option(
        65536,
        "bytes of history, snapshot or replay one rate-limit token pays for (bigger answers cost "
        "more)",
        minimum=1024,
        maximum=1 << 30,
    )
    allowed_origins: str = option(
        "", "comma-separated browser origins allowed to connect (empty: any)"
    )
    metrics_auth: str = option(
        "none",
        "who may read GET /metrics: none (open on the HTTP port) or api_key (the X-API-Key "
        "header or an admin's JWT)",
        choices=("none", "api_key"),
    )
    metrics_per_user: bool = option(
        False, "export jobs per user in /metrics (one series per user and state)"
    )
    #: The ``[sinks]`` table (``sinks.config``): a table, so only the config file sets it.
    sinks: SinksConfig | None = field(default=None, metadata={"file_only": True})


#: History kept for a channel that ``history_size`` does not name.
DEFAULT_HISTORY_SIZE = 100


def parse_sizes(spec: str) -> dict[str, int]:
    """``"jobs=1000,nodes=100"`` -> ``{"jobs": 1000, "nodes": 100}``.

    Raises:
        ConfigError: a malformed entry or an unknown channel.
    """
    known = {"jobs", "notifications", "nodes", "metrics", "alerts", "user"}
    sizes: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = entry.partition("=")
        name, value = name.strip(), value.strip()
        # isdecimal and ASCII: isdigit() also accepts '²', which int() refuses.
        if not sep or name not in known or not (value.isascii() and value.isdecimal()):
            raise ConfigError(
                f"history_size: expected entries like jobs=1000 for channels "
                f"{', '.join(sorted(known))}, got {entry!r}"
            )
        size = int(value)
        if size > MAX_HISTORY_SIZE:
            raise ConfigError(
                f"history_size: {name} must be at most {MAX_HISTORY_SIZE}, got {size}"
            )
        sizes[name] = size
    return sizes


def parse_sim_start(value: str) -> datetime | None:
    """``--sim-start``: an ISO-8601 time (UTC unless it says otherwise), or None if empty.

    Raises:
        ConfigError: anything else.
    """
    if not value:
        return None
    try:
        start = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"sim_start: expected an ISO-8601 time, got {value!r}") from None
    return start if start.tzinfo is not None else start.replace(tzinfo=UTC)


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def settings_fields() -> tuple[Field[Any], ...]:
    """The options given by flag, environment or file key (not the file's tables)."""
    return tuple(spec for spec in fields(Settings) if not spec.metadata.get("file_only"))


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
) -> Settings:
    """Build settings from flags, environment, file and defaults, in that order.

    Args:
        flags: option name -> value given on the command line (None = not given).
        environ: the process environment (pass ``os.environ``).
        config_path: TOML file; when None, ``SLURMCAST_CONFIG`` is consulted.

    Raises:
        ConfigError: naming the option and where the bad value came from.
    """
    flags = flags or {}
    environ = environ or {}
    path = config_path or environ.get(env_name("config")) or None
    from_file = _read_file(Path(path)) if path else {}
    values: dict[str, Any] = {}
    for spec in settings_fields():
        name = spec.name
        raw: Any
        if flags.get(name) is not None:
            raw, origin = flags[name], f"--{name.replace('_', '-')}"
        elif env_name(name) in environ:
            raw, origin = environ[env_name(name)], env_name(name)
        elif name == "source" and "MOCK_MODE" in environ:
            mock = _to_bool(environ["MOCK_MODE"], "MOCK_MODE")
            raw, origin = ("simulator" if mock else "slurm"), "MOCK_MODE"
        elif name in from_file:
            raw, origin = from_file[name], f"{path}: {name}"
        else:
            continue
        values[name] = _convert(spec, raw, origin)
    if "sinks" in from_file:
        values["sinks"] = parse_sinks(from_file["sinks"], f"{path}: [sinks]", environ)
    return Settings(**values)


def _is_ws_url(text: str) -> bool:
    # It goes into the page's Content-Security-Policy: nothing but a plain URL may pass.
    parts = urlsplit(text)
    return (
        parts.scheme in ("ws", "wss")
        and bool(parts.hostname)
        and not any(c.isspace() or c in ";,'\"" for c in text)
    )


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    known = {spec.name for spec in settings_fields()} | {"sinks"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config file {path} has unknown keys: {', '.join(unknown)}")
    return data


def _convert(spec: Field[Any], raw: Any, origin: str) -> Any:
    """One option's value from a flag, the environment (text) or the file (any TOML type).

    Raises:
        ConfigError: naming ``origin``, for a value of the wrong type or out of range.
    """
    kind: type[Any] = type(spec.default) if spec.default is not MISSING else str
    meta = spec.metadata
    try:
        value = _coerce(kind, raw, origin)
    # TypeError: a TOML array, table or date where a number was expected;
    # OverflowError: an integer too large for a float.
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(f"{origin}: expected {kind.__name__}, got {_shown(raw)}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{origin}: expected a finite number, got {_shown(raw)}")
    if isinstance(value, str) and "\0" in value:
        raise ConfigError(f"{origin}: must not contain NUL characters")
    if spec.name == "log_level":
        value = value.upper()
    if spec.name == "history_size":
        try:
            parse_sizes(value)
        except ConfigError as exc:
            detail = exc.message.removeprefix("history_size: ")  # origin names the option
            raise ConfigError(f"{origin}: {detail}") from None
    if spec.name == "public_ws_url" and value and not _is_ws_url(value):
        raise ConfigError(f"{origin}: expected a ws:// or wss:// URL with a host, got {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{origin}: {value!r} is not one of {', '.join(meta['choices'])}")
    if meta.get("positive") and not value > 0:
        raise ConfigError(f"{origin}: must be greater than 0, got {value!r}")
    minimum = meta.get("minimum")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{origin}: must be at least {_number(minimum)}, got {value!r}")
    maximum = meta.get("maximum")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{origin}: must be at most {_number(maximum)}, got {value!r}")
    return value


def _coerce(kind: type[Any], raw: Any, origin: str) -> Any:
    """``raw`` as ``kind``; raises ValueError or TypeError when it is not one.

    Text (flags, environment) is parsed; a TOML value must already be of the
    kind, except that an integral float may stand for an int and an int for a float.
    """
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            return _to_bool(raw, origin)
        raise TypeError(raw)
    if isinstance(raw, bool):  # a bool is an int to Python, never a number here
        raise TypeError(raw)
    if kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        if not isinstance(raw, int | float | str):
            raise TypeError(raw)
        return int(raw)
    if kind is float:
        if not isinstance(raw, int | float | str):
            raise TypeError(raw)
        return float(raw)
    if not isinstance(raw, str):
        raise TypeError(raw)
    return raw


def _shown(raw: Any) -> str:
    """A value as quoted in an error message: its repr, cut short."""
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


def _to_bool(text: str, origin: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{origin}: expected true or false, got {text!r}")
