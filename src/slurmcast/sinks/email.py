"""E-mail over SMTP (aiosmtplib): one message per delivery, to one checked address.

The message is built with the standard library's ``EmailMessage``:

- ``Subject`` and the plain-text body come from ``core.notify.messages.render`` (already one
  line, without control characters);
- ``Message-ID`` is derived from the delivery's idempotency key, so a resend after a lost
  answer carries the same id and mail clients and archives can recognise the duplicate;
- ``Auto-Submitted: auto-generated`` (RFC 3834) and ``X-Auto-Response-Suppress: All``:
  no vacation or out-of-office replies to a robot.

Connection security is the operator's choice: ``starttls`` (required, not opportunistic: the
submission port 587), ``tls`` (implicit TLS, port 465) or ``none`` (a local relay on port 25;
the password is then refused, so that it never crosses the network in clear). The password
comes from a file or an environment variable (``base.load_secret``) and is never logged.

Failures: an SMTP 5xx (recipient, sender, data or authentication refused) is permanent; a 4xx
(greylisting, a full queue), a refused connection, a timeout or a dropped connection is
temporary.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from enum import StrEnum
from typing import Final

import aiosmtplib

from slurmcast.core.notify.addresses import validate_address
from slurmcast.errors import ProtocolError
from slurmcast.sinks.base import (
    Outgoing,
    PermanentFailure,
    Secret,
    SendFailure,
    SendResult,
    TemporaryFailure,
    excerpt,
)
from slurmcast.sinks.posting import Clock, utc_now

# A Message-ID's left part: dot-atom text. A key that is not (or is too long) is hashed.
_ID_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,128}")


class TlsMode(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


_DEFAULT_PORTS: Final = {TlsMode.NONE: 25, TlsMode.STARTTLS: 587, TlsMode.TLS: 465}


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """The operator's SMTP relay.

    ``port`` defaults by ``tls`` (25, 587, 465). ``username`` and ``password`` go together.
    ``message_id_domain`` defaults to the sender's domain. ``tls_context`` replaces the
    system's trust store (a site CA); None verifies against the system's.
    """

    host: str
    from_address: str
    port: int | None = None
    tls: TlsMode = TlsMode.STARTTLS
    username: str | None = None
    password: Secret | None = None
    timeout_s: float = 30.0
    message_id_domain: str | None = None
    local_hostname: str | None = None
    tls_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        validate_address(self.from_address, field="from_address")
        if (self.username is None) != (self.password is None):
            raise ValueError("an SMTP username and password go together")
        if self.password is not None and self.tls is TlsMode.NONE:
            raise ValueError("an SMTP password needs starttls or tls")
        if not self.timeout_s > 0:
            raise ValueError("the SMTP timeout must be positive")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError("the SMTP port must be from 1 to 65535")

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.tls]

    @property
    def id_domain(self) -> str:
        return self.message_id_domain or self.from_address.rpartition("@")[2]


def message_id(idempotency_key: str, domain: str) -> str:
    """The ``Message-ID`` of every attempt of one delivery."""
    part = (
        idempotency_key
        if _ID_PART.fullmatch(idempotency_key)
        else (hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest())
    )
    return f"<slurmcast.{part}@{domain}>"


class EmailSink:
    """Sends a delivery's subject and text to its (resolved) address."""

    kind: Final = "email"

    def __init__(self, settings: SmtpSettings, *, clock: Clock = utc_now) -> None:
        self.settings = settings
        self._clock = clock

    def build(self, outgoing: Outgoing) -> EmailMessage:
        """The message for ``outgoing``.

        Raises:
            PermanentFailure: the target is not a valid address (``default`` unresolved).
        """
        try:
            recipient = validate_address(outgoing.target, field="target")
        except ProtocolError as exc:
            raise PermanentFailure(f"refused recipient: {exc.message}") from None
        settings = self.settings
        message = EmailMessage()
        message["From"] = settings.from_address
        message["To"] = recipient
        message["Subject"] = outgoing.message.subject
        message["Date"] = format_datetime(self._clock())
        message["Message-ID"] = message_id(outgoing.idempotency_key, settings.id_domain)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"
        message.set_content(outgoing.message.text + "\n")
        return message

    async def send(self, outgoing: Outgoing) -> SendResult:
        """Send it through the relay.

        Raises:
            PermanentFailure: an invalid address, an SMTP 5xx.
            TemporaryFailure: an SMTP 4xx, no connection, a timeout, a TLS failure.
        """
        message = self.build(outgoing)
        settings = self.settings
        password = settings.password.reveal() if settings.password is not None else None
        try:
            async with asyncio.timeout(settings.timeout_s * 2):
                responses, reply = await aiosmtplib.send(
                    message,
                    sender=settings.from_address,
                    recipients=[str(message["To"])],
                    hostname=settings.host,
                    port=settings.effective_port,
                    username=settings.username,
                    password=password,
                    local_hostname=settings.local_hostname,
                    timeout=settings.timeout_s,
                    use_tls=settings.tls is TlsMode.TLS,
                    start_tls=settings.tls is TlsMode.STARTTLS,
                    tls_context=settings.tls_context,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _by_code(
                min((r.code for r in exc.recipients), default=550),
                "recipient refused: "
                + "; ".join(f"{r.code} {excerpt(r.message)}" for r in exc.recipients),
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, f"{_what(exc)}: {exc.code} {excerpt(exc.message)}") from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            # Connection refused or dropped, timeouts (TimeoutError is an OSError), TLS.
            raise TemporaryFailure(
                f"SMTP relay {settings.host}:{settings.effective_port}: "
                f"{exc.__class__.__name__}: {excerpt(str(exc))}"
            ) from None
        refused = {rcpt: r for rcpt, r in responses.items() if r.code >= 400}
        if refused:
            worst = min(r.code for r in refused.values())
            raise _by_code(
                worst,
                "recipient refused: "
                + "; ".join(f"{r.code} {excerpt(r.message)}" for r in refused.values()),
            )
        return SendResult(detail=excerpt(reply) or "accepted")


def _by_code(code: int, message: str) -> SendFailure:
    if 500 <= code < 600:
        return PermanentFailure(message, status=code)
    return TemporaryFailure(message, status=code)


def _what(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "authentication refused"
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "sender refused"
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return "recipient refused"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "message refused"
    return "SMTP relay refused"
