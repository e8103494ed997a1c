"""Errors the client raises.

Exception tree::

    ClientError                  code, message, temporary: every failure the client reports
    ├── AuthenticationFailed     the server refused the token (invalid_token, token_expired)
    ├── ConnectionFailed         no connection, or lost before the reply (a ConnectionError)
    └── ClientClosed             the client was closed while the call was waiting

``code`` is the server's error code for a refused request (``unknown_channel``,
``forbidden``, ``rate_limited``, ...), or one of the client's own codes below.
"""

from __future__ import annotations

#: The client could not connect (refused, timed out, HTTP status at the handshake).
CONNECTION_FAILED = "connection_failed"
#: The connection was lost while a request waited for its reply.
CONNECTION_LOST = "connection_lost"
#: ``close()`` was called.
CLOSED = "closed"
#: A request before ``connect()``.
NOT_CONNECTED = "not_connected"
#: The token provider raised.
TOKEN_PROVIDER_FAILED = "token_provider_failed"


class ClientError(Exception):
    """A request was refused, or the client could not do what was asked.

    Attributes:
        code: the server's error code, or one of this module's codes.
        message: what went wrong, in words.
        temporary: True when the same call may succeed later unchanged.
        retry_after: seconds the server asked to wait (``rate_limited``).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        temporary: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.temporary = temporary
        self.retry_after = retry_after


class AuthenticationFailed(ClientError):
    """The server refused the token; the client does not retry it blindly."""


class ConnectionFailed(ClientError, ConnectionError):
    """No connection to the server, or it was lost before a reply came."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, temporary=True)


class ClientClosed(ClientError):
    def __init__(self) -> None:
        super().__init__(CLOSED, "the client is closed")
