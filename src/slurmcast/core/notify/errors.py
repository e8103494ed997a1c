"""The typed errors of notification rules and destinations.

They reuse existing codes (``invalid_field``, ``forbidden``) so that the HTTP API and a
WebSocket reply report them like any other rejected request; the subclass says which check
refused, for logs and tests.
"""

from __future__ import annotations

from slurmcast.errors import ErrorCode, ProtocolError


class InvalidRule(ProtocolError):
    """A rule (or one of its fields) is malformed. ``field`` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(ErrorCode.INVALID_FIELD, message)
        self.field = field


class InvalidAddress(InvalidRule):
    """An e-mail address or an address template is malformed."""


class ForbiddenDestination(ProtocolError):
    """The rule is well formed but its owner may not have it: an alert event for a
    non-admin, or mail to an address that is not the owner's."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.FORBIDDEN, message)


class UnsafeDestination(ForbiddenDestination):
    """A webhook URL, or an address it resolves to, that the server refuses to call (SSRF)."""
