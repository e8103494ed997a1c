"""Error and close codes, and the exception tree.

Every failure the server reports to a client carries a stable, documented
string code (``ErrorCode``); every connection it closes on purpose uses a
``CloseCode``. Codes never change meaning once published: clients branch on
them.

Exception tree::

    SlurmcastError                 code, temporary
    ├── ProtocolError              a client request was rejected (reply, keep the connection)
    ├── AuthError                  a token was refused (invalid_token, token_expired)
    ├── ConfigError                settings could not be loaded or are invalid
    ├── SourceError                the cluster source failed (monitor backs off, /health degrades)
    ├── PublishError               a publication could not be delivered to the broker
    └── StorageError               the notifications database could not be reached or failed
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """Codes carried by ``{"type": "error", "code": ...}`` replies and HTTP errors."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_CHANNEL = "missing_channel"
    UNKNOWN_CHANNEL = "unknown_channel"
    INVALID_FIELD = "invalid_field"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    #: A binary frame on the ``slurmcast.msgpack`` subprotocol that is not one msgpack request.
    INVALID_MSGPACK = "invalid_msgpack"
    FORBIDDEN = "forbidden"
    MISSING_MESSAGE = "missing_message"
    #: A broadcast whose ``type`` is one the server emits itself (``job_update``, ``pong``...).
    RESERVED_TYPE = "reserved_type"
    #: A broadcast with fields beside ``type`` and ``data``, which would be lost.
    INVALID_MESSAGE = "invalid_message"
    MISSING_TOKEN = "missing_token"
    UNAUTHORIZED = "unauthorized"
    INVALID_TOKEN = "invalid_token"
    TOKEN_EXPIRED = "token_expired"
    ALREADY_AUTHENTICATED = "already_authenticated"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_CHANNELS = "too_many_channels"
    INVALID_FILTER = "invalid_filter"
    SNAPSHOT_NOT_AVAILABLE = "snapshot_not_available"
    NOT_SUBSCRIBED = "not_subscribed"
    NOT_FOUND = "not_found"
    INTERNAL = "internal"
    #: The notifications database is down: the request may succeed later (HTTP API, /health).
    STORAGE_UNAVAILABLE = "storage_unavailable"
    # Not sent to WebSocket clients: used in /health and logs.
    SOURCE_FAILED = "source_failed"
    SOURCE_TIMEOUT = "source_timeout"
    CONFIG_INVALID = "config_invalid"
    PUBLISH_FAILED = "publish_failed"
    BROKER_UNAVAILABLE = "broker_unavailable"
    NOT_LEADER = "not_leader"


class CloseCode(IntEnum):
    """WebSocket close codes the server uses.

    4000-4499 tell the client it may reconnect (and should recover);
    4500-4999 are terminal until the client changes something.
    """

    NORMAL = 1000
    GOING_AWAY = 1001
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    #: The token expired and no refresh came within the grace period: reconnect with a new one.
    TOKEN_EXPIRED = 4001
    SLOW_CONSUMER = 4008
    #: The channel's stream was lost under this instance (Redis restarted, a gap
    #: history could not fill): reconnect and recover (or resync from a snapshot).
    STREAM_LOST = 4010
    #: Too many connections for this user: reconnect later.
    TOO_MANY_CONNECTIONS = 4029


class SlurmcastError(Exception):
    """Base of every error slurmcast raises on purpose.

    Attributes:
        code: the stable error code reported to clients or in /health.
        temporary: True when retrying the same thing later may succeed.
    """

    code: ErrorCode = ErrorCode.INTERNAL
    temporary: bool = False

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ProtocolError(SlurmcastError):
    """A client request was malformed or not allowed.

    ``request_id`` is the request's ``id`` when one could be read, so the
    error reply can still be correlated by the client.
    """

    def __init__(
        self, code: ErrorCode, message: str, *, request_id: str | int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.request_id = request_id


class AuthError(SlurmcastError):
    """A token was refused. The message says why and never contains the token."""

    code = ErrorCode.INVALID_TOKEN


class ConfigError(SlurmcastError):
    code = ErrorCode.CONFIG_INVALID


class SourceError(SlurmcastError):
    """The cluster source could not produce a snapshot. Always worth retrying."""

    code = ErrorCode.SOURCE_FAILED
    temporary = True


class PublishError(SlurmcastError):
    code = ErrorCode.PUBLISH_FAILED
    temporary = True


class BrokerUnavailable(PublishError):
    """The shared broker (Redis) cannot be reached: nothing was published."""

    code = ErrorCode.BROKER_UNAVAILABLE


class Fenced(PublishError):
    """This instance no longer holds the polling lease: its monitor's publications
    were refused so that two pollers can never both report a transition."""

    code = ErrorCode.NOT_LEADER


class StorageError(SlurmcastError):
    """The notifications database failed or is unreachable. Worth retrying later.

    The message names the cause (driver error, never the URL's password).
    """

    code = ErrorCode.STORAGE_UNAVAILABLE
    temporary = True
