"""The ``[sinks]`` table: every key and its default, refusals that name the key, secrets from a
file or the environment (never shown), default URLs under the SSRF policy; and the table in
the settings, which only the config file can give."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slurmcast.config import Settings, env_name, load_settings, settings_fields
from slurmcast.core.notify.retry import RetryPolicy
from slurmcast.errors import ConfigError
from slurmcast.sinks.config import SinksConfig, parse_sinks
from slurmcast.sinks.email import TlsMode
from slurmcast.sinks.posting import HttpSinkSettings

ORIGIN = "site.toml: [sinks]"
SECRET = "whsec-0123456789abcdef-do-not-print"
SLACK_URL = "https://hooks.slack.com/services/T0/B0/do-not-print"
MAIL = {"host": "smtp.example.edu", "from": "slurmcast@example.edu"}


def parse(table: object, environ: dict[str, str] | None = None) -> SinksConfig:
    return parse_sinks(table, ORIGIN, environ if environ is not None else {})


def refused(table: object, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(table, environ)
    return caught.value.message


def site_ca(tmp_path: Path) -> Path:
    """A self-signed CA certificate in a PEM file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Site CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "site-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def secret_file(tmp_path: Path, value: str = SECRET, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(f"  {value}\n")
    return str(path)


# --- defaults


def test_an_empty_table_is_every_default() -> None:
    config = parse({})
    assert config == SinksConfig()
    assert config.retry == RetryPolicy(base_s=30.0, cap_s=3600.0, max_attempts=8)
    assert (config.rate_per_minute, config.rate_burst) == (30.0, 10)
    assert (config.poll_interval, config.lease_s) == (2.0, 120.0)
    assert config.email is None and config.address_template is None
    assert config.address_claim == "email"
    assert config.http == HttpSinkSettings()
    assert config.url_policy.allow_http is False and config.url_policy.allowed_networks == ()
    assert (config.slack, config.slack_default_url) == (False, None)
    assert (config.webhook_secret, config.webhook_default_url) == (None, None)
    assert config.kinds == frozenset()
    assert config.defaults() == {"email": False, "slack": False, "webhook": False}


def test_the_top_level_keys(tmp_path: Path) -> None:
    config = parse(
        {
            "max_attempts": 5,
            "retry_base": 2.5,
            "retry_cap": 600,
            "rate_limit": 12.5,
            "rate_burst": 3,
            "poll_interval": 0.5,
            "lease": 45,
        }
    )
    assert config.retry == RetryPolicy(base_s=2.5, cap_s=600.0, max_attempts=5)
    assert (config.rate_per_minute, config.rate_burst) == (12.5, 3)
    assert (config.poll_interval, config.lease_s) == (0.5, 45.0)
    assert isinstance(config.rate_burst, int) and isinstance(config.retry.max_attempts, int)


def test_the_email_table(tmp_path: Path) -> None:
    ca = site_ca(tmp_path)
    config = parse(
        {
            "email": {
                **MAIL,
                "port": 2525,
                "tls": "tls",
                "username": "slurmcast",
                "password_file": secret_file(tmp_path),
                "timeout": 12.0,
                "ca_file": str(ca),
                "message_id_domain": "mail.example.edu",
                "address_template": "{user}@example.edu",
                "address_claim": "mail",
            }
        }
    )
    smtp = config.email
    assert smtp is not None
    assert (smtp.host, smtp.from_address, smtp.port, smtp.tls) == (
        "smtp.example.edu",
        "slurmcast@example.edu",
        2525,
        TlsMode.TLS,
    )
    assert smtp.username == "slurmcast"
    assert smtp.password is not None and smtp.password.reveal() == SECRET
    assert smtp.timeout_s == 12.0 and smtp.message_id_domain == "mail.example.edu"
    assert smtp.tls_context is not None
    # The site's CA is what the context trusts.
    (trusted,) = smtp.tls_context.get_ca_certs()
    assert trusted["subject"] == ((("commonName", "Site CA"),),)
    assert (config.address_template, config.address_claim) == ("{user}@example.edu", "mail")
    assert config.kinds == {"email"}
    assert config.defaults()["email"] is True


@pytest.mark.parametrize(("tls", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_the_email_defaults(tls: str, port: int) -> None:
    smtp = parse({"email": {**MAIL, "tls": tls}}).email
    assert smtp is not None
    assert smtp.port is None and smtp.effective_port == port
    assert (smtp.username, smtp.password, smtp.tls_context) == (None, None, None)
    assert smtp.timeout_s == 30.0 and smtp.id_domain == "example.edu"
    assert smtp.tls is TlsMode(tls)
    plain = parse({"email": MAIL}).email
    assert plain is not None and plain.tls is TlsMode.STARTTLS


def test_the_http_table() -> None:
    config = parse(
        {
            "http": {
                "allow_http": True,
                "allowed_networks": [" 10.1.2.0/24 ", "fd00::/8", "192.0.2.7"],
                "timeout": 20,
                "connect_timeout": 2.5,
            }
        }
    )
    assert config.url_policy.allow_http is True
    assert config.url_policy.allowed_networks == (
        ipaddress.ip_network("10.1.2.0/24"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("192.0.2.7/32"),
    )
    assert (config.http.timeout_s, config.http.connect_timeout_s) == (20.0, 2.5)
    # A table of HTTP settings alone configures no destination.
    assert config.kinds == frozenset()


# --- refusals


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"colour": "blue"}, "colour"),
        ({"retries": 3}, "retries"),
        ({"email": {**MAIL, "password": "inline"}}, "password"),
        ({"email": {**MAIL, "cc": "x@example.edu"}}, "cc"),
        ({"http": {"proxy": "http://proxy:3128"}}, "proxy"),
        ({"slack": {"channel": "#hpc"}}, "channel"),
        ({"webhook": {"secret": SECRET}}, "secret"),
        ({"webhook": {"default_url_file": "/x"}}, "default_url_file"),
    ],
)
def test_unknown_keys_are_refused_by_name(table: dict[str, Any], key: str) -> None:
    message = refused(table)
    assert f"unknown keys: {key} " in message
    assert message.startswith(ORIGIN)
    assert SECRET not in message


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ({"max_attempts": 0}, "max_attempts must be an integer from 1 to 100, got 0"),
        ({"max_attempts": 101}, "max_attempts must be an integer from 1 to 100"),
        ({"max_attempts": 2.5}, "max_attempts must be an integer"),
        ({"max_attempts": True}, "max_attempts must be an integer"),
        ({"retry_base": 0}, "retry_base must be a number from 0.001 to 86400"),
        ({"retry_base": "30"}, "retry_base must be a number"),
        ({"retry_cap": float("inf")}, "retry_cap must be a number"),
        ({"retry_base": 100, "retry_cap": 10}, "the retry cap must be at least the base delay"),
        ({"retry_base": 7200}, "the retry cap must be at least the base delay"),
        ({"rate_limit": 0}, "rate_limit must be a number from 0.01"),
        ({"rate_limit": float("nan")}, "rate_limit must be a number"),
        ({"rate_burst": 0}, "rate_burst must be an integer from 1 to 10000"),
        ({"rate_burst": 1.5}, "rate_burst must be an integer"),
        ({"poll_interval": 0}, "poll_interval must be a number from 0.01 to 3600"),
        ({"lease": 0.5}, "lease must be a number from 1 to 86400"),
        ({"lease": [120]}, "lease must be a number"),
        ({"http": {"allow_http": "yes"}}, "http.allow_http must be true or false"),
        ({"http": {"allowed_networks": "10.0.0.0/8"}}, "allowed_networks must be a list"),
        ({"http": {"allowed_networks": [10]}}, "allowed_networks must be a list"),
        ({"http": {"allowed_networks": ["10.0.0.1/8"]}}, "10.0.0.1/8 has host bits set"),
        ({"http": {"allowed_networks": ["intranet"]}}, "http.allowed_networks:"),
        ({"http": {"timeout": 0}}, "http.timeout must be a number from 0.1 to 300"),
        ({"http": {"connect_timeout": 301}}, "http.connect_timeout must be a number"),
        ({"http": []}, "http must be a table"),
        ({"email": {"host": "smtp.example.edu"}}, "email needs host and from"),
        ({"email": {"from": "a@example.edu"}}, "email needs host and from"),
        ({"email": {**MAIL, "host": "  "}}, "email.host must be a non-empty string"),
        ({"email": {**MAIL, "tls": "ssl"}}, "email.tls must be starttls, tls or none"),
        ({"email": {**MAIL, "tls": ["tls"]}}, "email.tls must be starttls, tls or none"),
        ({"email": {**MAIL, "port": 0}}, "email.port must be an integer from 1 to 65535"),
        ({"email": {**MAIL, "port": "587"}}, "email.port must be an integer"),
        ({"email": {**MAIL, "timeout": 0}}, "email.timeout must be a number"),
        ({"email": {**MAIL, "from": "not-an-address"}}, "from must contain exactly one '@'"),
        ({"email": {**MAIL, "address_template": "example.edu"}}, "{user} exactly once"),
        ({"email": {**MAIL, "address_template": "{user}@{x}.edu"}}, "no brace but {user}"),
        ({"email": {**MAIL, "address_claim": "e-mail"}}, "address_claim must be a claim name"),
        ({"email": {**MAIL, "address_claim": 7}}, "address_claim must be a claim name"),
        ({"email": {**MAIL, "username": "u"}}, "username and password go together"),
        ({"email": {**MAIL, "ca_file": "/nonexistent/ca.pem"}}, "email.ca_file cannot be read"),
        ({"email": "smtp.example.edu"}, "email must be a table"),
        ({"slack": "https://hooks.slack.com/x"}, "slack must be a table"),
        ({"webhook": {}}, "webhook needs secret_file or secret_env"),
    ],
)
def test_bad_values_are_refused_naming_the_key(table: dict[str, Any], fragment: str) -> None:
    message = refused(table)
    assert fragment in message
    assert message.startswith(ORIGIN)


@pytest.mark.parametrize("key", ["retry_base", "retry_cap", "max_attempts"])
def test_the_retry_keys_name_the_origin_once(key: str) -> None:
    message = refused({key: -1})
    assert message.startswith(f"{ORIGIN}.{key} must be")
    assert message.count(ORIGIN) == 1


@pytest.mark.parametrize("table", [[], "sinks", 3, None])
def test_the_sinks_value_must_be_a_table(table: object) -> None:
    assert refused(table) == f"{ORIGIN} must be a table"


def test_a_password_needs_tls(tmp_path: Path) -> None:
    table = {"email": {**MAIL, "tls": "none", "username": "u", "password_env": "PW"}}
    message = refused(table, {"PW": SECRET})
    assert "an SMTP password needs starttls or tls" in message and SECRET not in message


# --- secrets


def test_the_webhook_secret_from_a_file_or_the_environment(tmp_path: Path) -> None:
    from_file = parse({"webhook": {"secret_file": secret_file(tmp_path)}})
    from_env = parse({"webhook": {"secret_env": "HOOK_KEY"}}, {"HOOK_KEY": f" {SECRET}\n"})
    for config in (from_file, from_env):
        assert config.webhook_secret is not None
        assert config.webhook_secret.reveal() == SECRET  # surrounding whitespace dropped
        assert config.kinds == {"webhook"}
        assert config.defaults()["webhook"] is False  # no default URL


def test_a_secret_from_both_a_file_and_the_environment_is_refused(tmp_path: Path) -> None:
    table = {"webhook": {"secret_file": secret_file(tmp_path), "secret_env": "HOOK_KEY"}}
    message = refused(table, {"HOOK_KEY": SECRET})
    assert "give only one of secret_file and secret_env" in message
    assert SECRET not in message


def test_a_missing_secret_file_names_the_file_never_the_secret(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "webhook-secret"
    message = refused({"webhook": {"secret_file": str(missing)}}, {"X": SECRET})
    assert str(missing) in message and "FileNotFoundError" in message
    assert message.startswith(f"{ORIGIN}.webhook: ")
    assert SECRET not in message


def test_an_unreadable_secret_file_names_the_file_never_its_content(tmp_path: Path) -> None:
    garbled = tmp_path / "secret"
    garbled.write_bytes(b"\xff\xfe" + SECRET.encode())
    message = refused({"webhook": {"secret_file": str(garbled)}})
    assert str(garbled) in message and SECRET not in message


@pytest.mark.parametrize("environ", [{}, {"HOOK_KEY": ""}, {"HOOK_KEY": " \n"}])
def test_an_unset_or_empty_secret_variable_is_refused(environ: dict[str, str]) -> None:
    message = refused({"webhook": {"secret_env": "HOOK_KEY"}}, environ)
    assert "the environment variable HOOK_KEY is empty or unset" in message


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    empty = secret_file(tmp_path, value="")
    assert f"the secret file {empty} is empty or unset" in refused(
        {"webhook": {"secret_file": empty}}
    )


def test_the_smtp_password_from_the_environment() -> None:
    table = {"email": {**MAIL, "username": "u", "password_env": "SMTP_PW"}}
    smtp = parse(table, {"SMTP_PW": SECRET}).email
    assert smtp is not None and smtp.password is not None
    assert smtp.password.reveal() == SECRET


def test_secrets_never_show_in_the_settings_repr(tmp_path: Path) -> None:
    config = parse(
        {
            "email": {**MAIL, "username": "u", "password_env": "SMTP_PW"},
            "webhook": {"secret_file": secret_file(tmp_path)},
        },
        {"SMTP_PW": "smtp-password-do-not-print"},
    )
    shown = repr(config) + str(config)
    assert SECRET not in shown and "smtp-password-do-not-print" not in shown
    assert "Secret('***')" in shown


# --- Slack


@pytest.mark.parametrize("how", ["inline", "file", "env"])
def test_the_slack_default_url_inline_from_a_file_or_the_environment(
    tmp_path: Path, how: str
) -> None:
    tables = {
        "inline": {"default_url": SLACK_URL},
        "file": {"default_url_file": secret_file(tmp_path, SLACK_URL)},
        "env": {"default_url_env": "SLACK_URL"},
    }
    config = parse({"slack": tables[how]}, {"SLACK_URL": SLACK_URL})
    assert config.slack is True and config.slack_default_url == SLACK_URL
    assert config.kinds == {"slack"}
    assert config.defaults() == {"email": False, "slack": True, "webhook": False}


def test_slack_without_a_default_url_takes_rules_with_their_own() -> None:
    config = parse({"slack": {}})
    assert (config.slack, config.slack_default_url) == (True, None)
    assert config.kinds == {"slack"} and config.defaults()["slack"] is False


def test_the_slack_url_never_shows_in_the_settings_repr() -> None:
    config = parse({"slack": {"default_url": SLACK_URL}})
    assert SLACK_URL not in repr(config)


def test_two_slack_default_urls_are_refused(tmp_path: Path) -> None:
    table = {"slack": {"default_url": SLACK_URL, "default_url_env": "SLACK_URL"}}
    message = refused(table, {"SLACK_URL": SLACK_URL})
    assert "give only one of default_url_file and default_url_env and default_url" in message
    assert SLACK_URL not in message


# --- default URLs and the SSRF policy


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.slack.com/services/T0/B0/do-not-print", "url must use https"),
        ("https://10.1.2.3/do-not-print", "a private address"),
        ("https://127.0.0.1:8080/do-not-print", "a loopback address"),
        ("https://169.254.169.254/do-not-print", "a link-local address"),
        ("https://localhost/do-not-print", "loopback name"),
        ("https://user:do-not-print@hooks.example.com/x", "user name or password"),
        ("not a url do-not-print", "whitespace"),
    ],
)
@pytest.mark.parametrize("kind", ["slack", "webhook"])
def test_unsafe_default_urls_are_refused(kind: str, url: str, why: str) -> None:
    table: dict[str, Any] = {"default_url": url}
    if kind == "webhook":
        table["secret_env"] = "HOOK_KEY"
    message = refused({kind: table}, {"HOOK_KEY": SECRET})
    assert message.startswith(f"{ORIGIN}.{kind}: the default URL is refused: ")
    assert why in message
    # The URL (a Slack URL is a secret) is not repeated.
    assert "do-not-print" not in message


def test_the_http_policy_decides_for_the_default_urls() -> None:
    lab = {
        "http": {"allow_http": True, "allowed_networks": ["10.1.2.0/24"]},
        "slack": {"default_url": "http://10.1.2.3:8065/hooks/abc"},
        "webhook": {"secret_env": "HOOK_KEY", "default_url": "https://10.1.2.4/slurm"},
    }
    config = parse(lab, {"HOOK_KEY": SECRET})
    assert config.slack_default_url == "http://10.1.2.3:8065/hooks/abc"
    assert config.webhook_default_url == "https://10.1.2.4/slurm"
    assert config.defaults() == {"email": False, "slack": True, "webhook": True}
    # Outside the allowed network, still refused.
    outside = {**lab, "slack": {"default_url": "http://10.9.9.9/hooks/abc"}}
    assert "a private address" in refused(outside, {"HOOK_KEY": SECRET})


def test_every_kind_configured() -> None:
    config = parse(
        {
            "email": MAIL,
            "slack": {},
            "webhook": {"secret_env": "HOOK_KEY", "default_url": "https://hooks.example.com/s"},
        },
        {"HOOK_KEY": SECRET},
    )
    assert config.kinds == {"email", "slack", "webhook"}
    assert config.defaults() == {"email": True, "slack": False, "webhook": True}


# --- in the settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slurmcast.toml"
    path.write_text(text)
    return path


def test_the_config_file_gives_the_sinks(tmp_path: Path) -> None:
    key = secret_file(tmp_path)
    path = write(
        tmp_path,
        f"""
ws_port = 7000

[sinks]
max_attempts = 4
rate_burst = 2

[sinks.email]
host = "smtp.example.edu"
from = "slurmcast@example.edu"
address_template = "{{user}}@example.edu"

[sinks.http]
allowed_networks = ["10.1.2.0/24"]

[sinks.slack]
default_url_env = "SLACK_URL"

[sinks.webhook]
secret_file = "{key}"
default_url = "https://hooks.example.com/slurm"
""",
    )
    settings = load_settings({}, {"SLACK_URL": SLACK_URL}, path)
    assert settings.ws_port == 7000
    sinks = settings.sinks
    assert sinks is not None
    assert sinks.retry.max_attempts == 4 and sinks.rate_burst == 2
    assert sinks.email is not None and sinks.address_template == "{user}@example.edu"
    assert sinks.url_policy.allowed_networks == (ipaddress.ip_network("10.1.2.0/24"),)
    assert sinks.slack_default_url == SLACK_URL
    assert sinks.webhook_secret is not None and sinks.webhook_secret.reveal() == SECRET
    assert sinks.webhook_default_url == "https://hooks.example.com/slurm"
    assert sinks.kinds == {"email", "slack", "webhook"}


def test_no_sinks_table_means_no_notifications(tmp_path: Path) -> None:
    assert load_settings({}, {}, write(tmp_path, "ws_port = 7000\n")).sinks is None
    assert load_settings({}, {}, None).sinks is None
    # An empty table: notifications on, no destination yet.
    empty = load_settings({}, {}, write(tmp_path, "[sinks]\n")).sinks
    assert empty == SinksConfig()


def test_errors_in_the_file_name_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[sinks.webhook]\nsecret_env = "HOOK_KEY"\ncolour = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {"HOOK_KEY": SECRET}, path)
    message = caught.value.message
    assert message.startswith(f"{path}: [sinks].webhook has unknown keys: colour")
    path = write(tmp_path, "sinks = 3\n")
    with pytest.raises(ConfigError, match=r"\[sinks\] must be a table"):
        load_settings({}, {}, path)


def test_secrets_named_in_the_file_come_from_the_given_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[sinks.webhook]\nsecret_env = "HOOK_KEY"\n')
    with pytest.raises(ConfigError, match="HOOK_KEY is empty or unset"):
        load_settings({}, {}, path)
    sinks = load_settings({}, {"HOOK_KEY": SECRET}, path).sinks
    assert sinks is not None and sinks.webhook_secret is not None


def test_sinks_is_not_a_flag_nor_an_environment_variable(tmp_path: Path) -> None:
    names = {spec.name for spec in settings_fields()}
    assert "sinks" not in names and "ws_port" in names
    assert "sinks" in {name for name in Settings.__dataclass_fields__}
    settings = load_settings({"sinks": "[email]"}, {env_name("sinks"): "{}"}, None)
    assert settings.sinks is None
    # Nor a plain key: in the file it is the [sinks] table, and only that.
    with pytest.raises(ConfigError, match="must be a table"):
        load_settings({}, {}, write(tmp_path, 'sinks = "email"\n'))


def test_the_cli_has_no_sinks_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from slurmcast.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve", "--jobs-interval", "2"]).jobs_interval == "2"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--sinks", "{}"])
    assert "unrecognized arguments: --sinks" in capsys.readouterr().err


def test_an_empty_address_claim_turns_the_claim_off() -> None:
    config = parse_sinks({"email": {**MAIL, "address_claim": ""}}, ORIGIN)
    assert config.address_claim is None
