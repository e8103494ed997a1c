"""The operator's ``[sinks]`` table: which destinations exist, their secrets, and how deliveries
are paced and retried.

::

    [sinks]                      # every key optional
    max_attempts = 8             # then the delivery is a dead letter
    retry_base = 30.0            # seconds: the first retry's longest wait, doubling
    retry_cap = 3600.0           # seconds: the longest wait between two attempts
    rate_limit = 30.0            # deliveries per minute to one destination
    rate_burst = 10              # sent at once to one destination before the rate applies
    poll_interval = 2.0          # seconds between looks at the outbox (writes wake it too)
    lease = 120.0                # seconds a claimed delivery is held before another may take it

    [sinks.email]
    host = "smtp.example.edu"
    port = 587                   # default by tls: 25, 587, 465
    tls = "starttls"             # starttls | tls | none
    username = "slurmcast"       # with password_file or password_env
    password_file = "/etc/slurmcast/smtp-password"
    from = "slurmcast@example.edu"
    timeout = 30.0
    ca_file = "/etc/ssl/site-ca.pem"          # instead of the system's trust store
    address_template = "{user}@example.edu"   # a user's own address
    address_claim = "email"                   # ... or this claim of their token, first ("": none)

    [sinks.http]                 # Slack and webhooks
    allow_http = false
    allowed_networks = ["10.1.2.0/24"]
    timeout = 10.0
    connect_timeout = 5.0

    [sinks.slack]                # Slack or Mattermost incoming webhooks
    default_url_file = "/etc/slurmcast/slack-url"   # or default_url_env, default_url

    [sinks.webhook]              # signed JSON webhooks
    secret_file = "/etc/slurmcast/webhook-secret"   # or secret_env; required
    default_url = "https://hooks.example.edu/slurm"

A destination kind exists when its table does. Secrets come from a file or an environment
variable, never from the table itself (a config file is often world-readable); a Slack URL is
a secret too, but may be written inline for a lab.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slurmcast.core.notify.addresses import validate_address, validate_template
from slurmcast.core.notify.errors import InvalidRule
from slurmcast.core.notify.retry import RetryPolicy
from slurmcast.core.notify.ssrf import UrlPolicy, parse_networks
from slurmcast.errors import ConfigError, ProtocolError
from slurmcast.sinks.base import Secret, load_secret
from slurmcast.sinks.email import SmtpSettings, TlsMode
from slurmcast.sinks.posting import HttpSinkSettings

_TOP = {
    "max_attempts",
    "retry_base",
    "retry_cap",
    "rate_limit",
    "rate_burst",
    "poll_interval",
    "lease",
    "email",
    "http",
    "slack",
    "webhook",
}
_EMAIL = {
    "host",
    "port",
    "tls",
    "username",
    "password_file",
    "password_env",
    "from",
    "timeout",
    "ca_file",
    "message_id_domain",
    "address_template",
    "address_claim",
}
_HTTP = {"allow_http", "allowed_networks", "timeout", "connect_timeout"}
_SLACK = {"default_url", "default_url_file", "default_url_env"}
_WEBHOOK = {"secret_file", "secret_env", "default_url"}


@dataclass(frozen=True, slots=True)
class SinksConfig:
    """Everything ``[sinks]`` says. A destination is None when not configured."""

    email: SmtpSettings | None = None
    #: A user's own e-mail address: ``{user}@domain``; None: only from the token's claim.
    address_template: str | None = None
    #: The token claim holding a user's address (checked before the template); None: none.
    address_claim: str | None = "email"
    http: HttpSinkSettings = field(default_factory=HttpSinkSettings)
    #: Slack/Mattermost configured; ``slack_default_url`` where ``default`` rules post.
    slack: bool = False
    #: A secret (it holds the webhook's token): never in a repr.
    slack_default_url: str | None = field(default=None, repr=False)
    webhook_secret: Secret | None = None
    webhook_default_url: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rate_per_minute: float = 30.0
    rate_burst: int = 10
    poll_interval: float = 2.0
    lease_s: float = 120.0

    @property
    def kinds(self) -> frozenset[str]:
        """The destination kinds a rule may name."""
        kinds = set()
        if self.email is not None:
            kinds.add("email")
        if self.slack:
            kinds.add("slack")
        if self.webhook_secret is not None:
            kinds.add("webhook")
        return frozenset(kinds)

    @property
    def url_policy(self) -> UrlPolicy:
        return self.http.policy

    def defaults(self) -> dict[str, bool]:
        """Which kinds have an operator default (``target: "default"``) a rule may use."""
        return {
            "email": self.email is not None,
            "slack": self.slack_default_url is not None,
            "webhook": self.webhook_secret is not None and self.webhook_default_url is not None,
        }


def parse_sinks(
    table: object, origin: str, environ: Mapping[str, str] | None = None
) -> SinksConfig:
    """Read a ``[sinks]`` table.

    Raises:
        ConfigError: naming ``origin`` and the key, for an unknown key, a bad value, or a
            secret that cannot be read.
    """
    top = _table(table, origin, _TOP)
    base_s = _number(top, "retry_base", origin, 30.0, low=0.001, high=86400.0)
    cap_s = _number(top, "retry_cap", origin, 3600.0, low=0.001, high=7 * 86400.0)
    max_attempts = int(_number(top, "max_attempts", origin, 8, low=1, high=100, whole=True))
    try:
        retry = RetryPolicy(base_s=base_s, cap_s=cap_s, max_attempts=max_attempts)
    except ConfigError as exc:  # the cap below the base: the two keys together
        raise ConfigError(f"{origin}: {exc.message}") from None
    http = _http(top.get("http"), f"{origin}.http")
    email, template, claim = _email(top.get("email"), f"{origin}.email", environ)
    slack, slack_url = _slack(top.get("slack"), f"{origin}.slack", http.policy, environ)
    secret, webhook_url = _webhook(top.get("webhook"), f"{origin}.webhook", http.policy, environ)
    return SinksConfig(
        email=email,
        address_template=template,
        address_claim=claim,
        http=http,
        slack=slack,
        slack_default_url=slack_url,
        webhook_secret=secret,
        webhook_default_url=webhook_url,
        retry=retry,
        rate_per_minute=_number(top, "rate_limit", origin, 30.0, low=0.01, high=1e6),
        rate_burst=int(_number(top, "rate_burst", origin, 10, low=1, high=10_000, whole=True)),
        poll_interval=_number(top, "poll_interval", origin, 2.0, low=0.01, high=3600.0),
        lease_s=_number(top, "lease", origin, 120.0, low=1.0, high=86400.0),
    )


def _table(value: object, origin: str, known: set[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{origin} must be a table")
    unknown = sorted(str(key) for key in value if key not in known)
    if unknown:
        raise ConfigError(
            f"{origin} has unknown keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return dict(value)


def _number(
    table: Mapping[str, Any],
    key: str,
    origin: str,
    default: float,
    *,
    low: float,
    high: float,
    whole: bool = False,
) -> float:
    value = table.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int if whole else int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        kind = "an integer" if whole else "a number"
        raise ConfigError(f"{origin}.{key} must be {kind} from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _text(table: Mapping[str, Any], key: str, origin: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{origin}.{key} must be a non-empty string")
    return value.strip()


def _secret(
    table: Mapping[str, Any],
    name: str,
    origin: str,
    environ: Mapping[str, str] | None,
    *,
    inline: bool = False,
) -> Secret | None:
    """``<name>_file`` or ``<name>_env`` (or, where allowed, ``<name>`` itself)."""
    file = _text(table, f"{name}_file", origin)
    env = _text(table, f"{name}_env", origin)
    plain = _text(table, name, origin) if inline else None
    if sum(item is not None for item in (file, env, plain)) > 1:
        suffixes = ("_file", "_env", "") if inline else ("_file", "_env")
        given = " and ".join(f"{name}{suffix}" for suffix in suffixes)
        raise ConfigError(f"{origin}: give only one of {given}")
    if plain is not None:
        return Secret(plain)
    if file is None and env is None:
        return None
    try:
        return load_secret(file=file, env=env, environ=environ)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _http(value: object, origin: str) -> HttpSinkSettings:
    table = _table(value if value is not None else {}, origin, _HTTP)
    allow_http = table.get("allow_http", False)
    if not isinstance(allow_http, bool):
        raise ConfigError(f"{origin}.allow_http must be true or false")
    networks = table.get("allowed_networks", [])
    if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
        raise ConfigError(f"{origin}.allowed_networks must be a list of networks")
    try:
        allowed = parse_networks(networks)
    except ValueError as exc:
        raise ConfigError(f"{origin}.allowed_networks: {exc}") from None
    return HttpSinkSettings(
        policy=UrlPolicy(allow_http=allow_http, allowed_networks=allowed),
        timeout_s=_number(table, "timeout", origin, 10.0, low=0.1, high=300.0),
        connect_timeout_s=_number(table, "connect_timeout", origin, 5.0, low=0.1, high=300.0),
    )


def _email(
    value: object, origin: str, environ: Mapping[str, str] | None
) -> tuple[SmtpSettings | None, str | None, str | None]:
    if value is None:
        return None, None, "email"
    table = _table(value, origin, _EMAIL)
    host = _text(table, "host", origin)
    sender = _text(table, "from", origin)
    if host is None or sender is None:
        raise ConfigError(f"{origin} needs host and from")
    try:
        tls = TlsMode(table.get("tls", "starttls"))
    except ValueError:
        raise ConfigError(f"{origin}.tls must be starttls, tls or none") from None
    port = table.get("port")
    if port is not None:
        port = int(_number(table, "port", origin, 0, low=1, high=65535, whole=True))
    password = _secret(table, "password", origin, environ)
    context = None
    if (ca_file := _text(table, "ca_file", origin)) is not None:
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{origin}.ca_file cannot be read: {exc}") from None
    template = _text(table, "address_template", origin)
    # "" turns the claim off (TOML has no null): only the template then says.
    claim = table.get("address_claim", "email") or None
    if claim is not None and (not isinstance(claim, str) or not claim.isidentifier()):
        raise ConfigError(f"{origin}.address_claim must be a claim name such as email")
    try:
        if template is not None:
            validate_template(template)
        validate_address(sender, field="from")
        smtp = SmtpSettings(
            host=host,
            from_address=sender,
            port=port,
            tls=tls,
            username=_text(table, "username", origin),
            password=password,
            timeout_s=_number(table, "timeout", origin, 30.0, low=0.1, high=600.0),
            message_id_domain=_text(table, "message_id_domain", origin),
            tls_context=context,
        )
    except (ValueError, InvalidRule) as exc:
        message = exc.message if isinstance(exc, InvalidRule) else str(exc)
        raise ConfigError(f"{origin}: {message}") from None
    return smtp, template, claim or None


def _checked_url(url: str | None, origin: str, policy: UrlPolicy) -> str | None:
    if url is None:
        return None
    try:
        return policy.check(url).url
    except ProtocolError as exc:  # InvalidRule, UnsafeDestination
        raise ConfigError(f"{origin}: the default URL is refused: {exc.message}") from None


def _slack(
    value: object, origin: str, policy: UrlPolicy, environ: Mapping[str, str] | None
) -> tuple[bool, str | None]:
    if value is None:
        return False, None
    table = _table(value, origin, _SLACK)
    url = _secret(table, "default_url", origin, environ, inline=True)
    return True, _checked_url(url.reveal() if url else None, origin, policy)


def _webhook(
    value: object, origin: str, policy: UrlPolicy, environ: Mapping[str, str] | None
) -> tuple[Secret | None, str | None]:
    if value is None:
        return None, None
    table = _table(value, origin, _WEBHOOK)
    secret = _secret(table, "secret", origin, environ)
    if secret is None:
        raise ConfigError(f"{origin} needs secret_file or secret_env (the signing key)")
    return secret, _checked_url(_text(table, "default_url", origin), origin, policy)
