"""The e-mail sink against a real local SMTP server (aiosmtpd): headers, body, refusals,
authentication with a password from the environment, and a relay that is down."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slurmcast.core.notify.messages import render
from slurmcast.core.notify.rules import NotifyEvent
from slurmcast.sinks.base import Outgoing, PermanentFailure, TemporaryFailure, load_secret
from slurmcast.sinks.email import EmailSink, SmtpSettings, TlsMode, message_id
from slurmcast.storage.outbox import Delivery, DeliveryState

from support.notify_rules import FAILED_JOB as JOB
from support.receivers import Relay, smtp_relay, start_relay

NOW = datetime(2026, 11, 28, 6, 25, 20, tzinfo=UTC)
KEY = "5f0c" * 16


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    async with smtp_relay() as started:
        yield started


def outgoing(target: str = "carol@example.edu", key: str = KEY) -> Outgoing:
    message = render(NotifyEvent.JOB_FAILED, JOB, now=NOW)
    return Outgoing(delivery_id="dlv-1", idempotency_key=key, target=target, message=message)


def settings(port: int, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "tls": TlsMode.NONE,
        "from_address": "slurmcast@hpc.example.edu",
        "timeout_s": 5.0,
    }
    values.update(overrides)
    return SmtpSettings(**values)


async def test_mail_arrives_with_headers_and_body(relay: Relay) -> None:
    sink = EmailSink(settings(relay.port), clock=lambda: NOW)

    result = await sink.send(outgoing())

    assert "accepted" in result.detail.lower()
    [envelope] = relay.mailbox.received
    assert envelope.mail_from == "slurmcast@hpc.example.edu"
    assert envelope.rcpt_tos == ["carol@example.edu"]
    mail = relay.mailbox.message()
    assert mail["From"] == "slurmcast@hpc.example.edu"
    assert mail["To"] == "carol@example.edu"
    assert mail["Subject"] == "[slurmcast] Job 1251 (train) FAILED, exit 3 after 2h 5m"
    assert mail["Message-ID"] == f"<slurmcast.{KEY}@hpc.example.edu>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"] == "Sat, 28 Nov 2026 06:25:20 +0000"
    body = mail.get_content().replace("\r\n", "\n")
    assert body.startswith("Job 1251 (train) FAILED, exit 3 after 2h 5m\n")
    assert "User carol, partition cpu, nodes node001." in body


async def test_a_resend_carries_the_same_message_id(relay: Relay) -> None:
    sink = EmailSink(settings(relay.port), clock=lambda: NOW)
    await sink.send(outgoing())
    await sink.send(outgoing())
    first, second = relay.mailbox.message(0), relay.mailbox.message(1)
    assert first["Message-ID"] == second["Message-ID"]


def test_message_id_of_an_unusual_key_is_hashed() -> None:
    odd = message_id("a key with spaces <and> @", "example.edu")
    assert odd.startswith("<slurmcast.") and odd.endswith("@example.edu>")
    assert " " not in odd and odd.count("@") == 1 and odd.count("<") == 1


async def test_a_refused_recipient_is_permanent(relay: Relay) -> None:
    relay.mailbox.refuse["nobody@example.edu"] = "550 5.1.1 No such user"
    sink = EmailSink(settings(relay.port))

    with pytest.raises(PermanentFailure) as failure:
        await sink.send(outgoing("nobody@example.edu"))

    assert failure.value.status == 550
    assert "No such user" in str(failure.value)
    assert relay.mailbox.received == []


async def test_a_greylisted_recipient_is_temporary(relay: Relay) -> None:
    relay.mailbox.refuse["carol@example.edu"] = "450 4.2.0 Greylisted, try later"
    sink = EmailSink(settings(relay.port))

    with pytest.raises(TemporaryFailure) as failure:
        await sink.send(outgoing())

    assert failure.value.status == 450


@pytest.mark.parametrize("target", ["default", "carol@example.edu\r\nBcc: eve@evil.test", "x"])
async def test_an_invalid_target_is_permanent_and_nothing_is_sent(
    relay: Relay, target: str
) -> None:
    sink = EmailSink(settings(relay.port))
    with pytest.raises(PermanentFailure):
        await sink.send(outgoing(target))
    assert relay.mailbox.received == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_relay_that_is_down_is_temporary() -> None:
    sink = EmailSink(settings(free_port()))
    with pytest.raises(TemporaryFailure) as failure:
        await sink.send(outgoing())
    assert "127.0.0.1" in str(failure.value)


async def test_a_relay_that_never_answers_is_temporary() -> None:
    # A listener that accepts and says nothing: no SMTP greeting before the timeout.
    accepted = asyncio.Event()
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sink = EmailSink(settings(port, timeout_s=0.3))
        with pytest.raises(TemporaryFailure):
            await sink.send(outgoing())
        assert accepted.is_set()
    finally:
        release.set()
        server.close()
        await server.wait_closed()


class Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self.expected = (username.encode(), password.encode())

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            (auth_data.login, auth_data.password) == self.expected
        )
        # handled=False: aiosmtpd answers the failure itself (535).
        return AuthResult(success=ok, handled=False)


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh certificate for 127.0.0.1, and a client one trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "relay.pem"
    key_file = tmp_path / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_starttls_login_with_a_password_from_the_environment(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed(tmp_path)
    relay, server = await start_relay(
        authenticator=Authenticator("slurmcast", "s3cret"),
        auth_required=True,
        require_starttls=True,
        tls_context=server_tls,
    )
    try:
        password = load_secret(env="SMTP_PASSWORD", environ={"SMTP_PASSWORD": "s3cret\n"})
        assert "s3cret" not in repr(password)
        good = settings(
            relay.port,
            tls=TlsMode.STARTTLS,
            username="slurmcast",
            password=password,
            tls_context=client_tls,
        )
        await EmailSink(good).send(outgoing())
        assert len(relay.mailbox.received) == 1

        (tmp_path / "wrong").write_text("not-it\n")
        wrong = settings(
            relay.port,
            tls=TlsMode.STARTTLS,
            username="slurmcast",
            password=load_secret(file=str(tmp_path / "wrong")),
            tls_context=client_tls,
        )
        with pytest.raises(PermanentFailure) as failure:
            await EmailSink(wrong).send(outgoing())
        assert failure.value.status == 535
        assert "not-it" not in str(failure.value)
        assert len(relay.mailbox.received) == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_an_untrusted_certificate_is_temporary(tmp_path: Path) -> None:
    server_tls, _ = self_signed(tmp_path)
    relay, server = await start_relay(require_starttls=True, tls_context=server_tls)
    try:
        # The system's trust store does not know this certificate.
        with pytest.raises(TemporaryFailure):
            await EmailSink(settings(relay.port, tls=TlsMode.STARTTLS)).send(outgoing())
        assert relay.mailbox.received == []
    finally:
        server.close()
        await server.wait_closed()


def test_settings_refuse_a_password_in_clear() -> None:
    with pytest.raises(ValueError, match="starttls or tls"):
        settings(25, username="u", password=load_secret(env="P", environ={"P": "x"}))


def test_default_ports() -> None:
    assert SmtpSettings(host="h", from_address="a@b.org").effective_port == 587
    assert SmtpSettings(host="h", from_address="a@b.org", tls=TlsMode.TLS).effective_port == 465
    assert SmtpSettings(host="h", from_address="a@b.org", tls=TlsMode.NONE).effective_port == 25


async def test_a_non_ascii_job_name_survives_the_subject(relay: Relay) -> None:
    message = render(
        NotifyEvent.JOB_COMPLETED, {**JOB, "name": "träning-ß", "status": "COMPLETED"}, now=NOW
    )
    sent = Outgoing(
        delivery_id="dlv-2", idempotency_key=KEY, target="carol@example.edu", message=message
    )
    await EmailSink(settings(relay.port)).send(sent)
    mail = relay.mailbox.message()
    assert mail["Subject"] == "[slurmcast] Job 1251 (träning-ß) COMPLETED after 2h 5m"
    assert "träning-ß" in mail.get_content()


def test_outgoing_from_a_claimed_delivery() -> None:
    delivery = Delivery(
        id="dlv-7",
        notification_id="n-1",
        owner="carol",
        rule_id="rule-1",
        kind="email",
        target="default",
        payload={},
        idempotency_key=KEY,
        state=DeliveryState.DELIVERING,
        attempts=1,
        next_attempt_at=NOW,
        last_error=None,
        claimed_by="i-1",
        claimed_until=NOW,
        created_at=NOW,
        delivered_at=None,
    )
    message = render(NotifyEvent.JOB_FAILED, JOB, now=NOW)
    resolved = Outgoing.of(delivery, message, target="carol@example.edu")
    assert (resolved.delivery_id, resolved.idempotency_key, resolved.target) == (
        "dlv-7",
        KEY,
        "carol@example.edu",
    )
    assert Outgoing.of(delivery, message).target == "default"
