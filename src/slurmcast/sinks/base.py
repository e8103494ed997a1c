"""What every notification sink shares: the message to send, the result, the typed failures.

A sink is an adapter: it takes one ``Outgoing`` (a claimed outbox delivery, its target
resolved, its message rendered by ``core.notify.messages.render``) and either returns a
``SendResult`` or raises a ``SendFailure`` that tells the delivery worker what to do:

- ``PermanentFailure``: trying again cannot help (an HTTP 4xx other than 408/429, a refused
  recipient, an unsafe or malformed address, a redirect): the delivery becomes a dead letter
  at once.
- ``TemporaryFailure``: try again on the retry schedule (timeouts, refused connections, 5xx,
  408, 429, an SMTP 4xx); ``retry_after_s`` is the destination's own request to wait
  (``Retry-After``), to pass to ``core.notify.retry.next_attempt(not_before_s=...)``.

A failure's message is safe to store as the delivery's ``last_error`` and to log: it never
holds a secret, and at most a short, cleaned excerpt of what the destination answered.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from slurmcast.core.notify.messages import Rendered, clean
from slurmcast.errors import ConfigError, SlurmcastError

if TYPE_CHECKING:
    from slurmcast.storage.outbox import Delivery

#: How much of a destination's answer a failure's message quotes.
EXCERPT_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One delivery to send.

    ``target`` is resolved: an e-mail address, or a URL, or ``default`` for the Slack and
    webhook sinks' operator-configured URL (an e-mail ``default`` must be resolved to the
    owner's address by the worker). ``idempotency_key`` is the same on every attempt: the
    e-mail's ``Message-ID`` and the webhook's delivery header are derived from it.
    """

    delivery_id: str
    idempotency_key: str
    target: str
    message: Rendered

    @classmethod
    def of(cls, delivery: Delivery, message: Rendered, *, target: str | None = None) -> Outgoing:
        """From a claimed delivery; ``target`` overrides the stored one (a resolved address)."""
        return cls(
            delivery_id=delivery.id,
            idempotency_key=delivery.idempotency_key,
            target=delivery.target if target is None else target,
            message=message,
        )


@dataclass(frozen=True, slots=True)
class SendResult:
    """A delivery the destination accepted.

    ``detail`` is a short description for logs (``HTTP 200``, ``250 OK``); ``status`` the
    HTTP status or SMTP reply code; ``body`` at most the sink's response limit.
    """

    detail: str
    status: int | None = None
    body: bytes = b""


class SendFailure(SlurmcastError):
    """A delivery that was not accepted. ``temporary`` says whether to try again."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class PermanentFailure(SendFailure):
    """Trying again cannot succeed: dead-letter the delivery."""

    temporary = False


class TemporaryFailure(SendFailure):
    """Try again later (not before ``retry_after_s`` seconds when it is set)."""

    temporary = True


class Sink(Protocol):
    """A destination kind: ``email``, ``slack`` or ``webhook`` (``outbox.DestinationKind``)."""

    @property
    def kind(self) -> str: ...

    async def send(self, outgoing: Outgoing) -> SendResult:
        """Send one delivery.

        Raises:
            PermanentFailure: the destination refused it for good, or may not be called.
            TemporaryFailure: it may succeed later.
        """
        ...


def excerpt(value: object) -> str:
    """A destination's answer, shortened and cleaned for a failure's message."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return clean(value, EXCERPT_LENGTH)


class Secret:
    """A password or key that never shows in a ``repr``, a log line or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def load_secret(
    *, file: str | None = None, env: str | None = None, environ: Mapping[str, str] | None = None
) -> Secret:
    """A secret from a file (surrounding whitespace and a final newline dropped) or from the
    environment variable named ``env``: exactly one of them.

    Raises:
        ConfigError: neither or both given, the file unreadable, the variable unset, or empty.
    """
    if (file is None) == (env is None):
        raise ConfigError("a secret comes from exactly one of a file or an environment variable")
    if file is not None:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as exc:
            raise ConfigError(
                f"cannot read the secret file {file}: {exc.__class__.__name__}"
            ) from None
        where = f"the secret file {file}"
    else:
        assert env is not None
        value = (os.environ if environ is None else environ).get(env, "").strip()
        where = f"the environment variable {env}"
    if not value:
        raise ConfigError(f"{where} is empty or unset")
    return Secret(value)
