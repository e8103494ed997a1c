"""Opening a connection: the WebSocket handshake, then first-message authentication.

Each failure becomes a typed error the reconnection logic can act on: a
refused token is ``AuthenticationFailed`` (not retried blindly), anything
else is ``ConnectionFailed`` (retried with backoff).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from slurmcast import __version__
from slurmcast.client.closes import Reaction, reaction_to_close
from slurmcast.client.errors import (
    CONNECTION_FAILED,
    CONNECTION_LOST,
    AuthenticationFailed,
    ConnectionFailed,
)
from slurmcast.client.requests import error_from_reply
from slurmcast.client.stream import Message
from slurmcast.client.wire import (
    MSGPACK_SUBPROTOCOL,
    UndecodableFrame,
    WireFormat,
    decode,
    encode,
    format_of,
    subprotocols_for,
)

log = logging.getLogger("slurmcast.client")

#: Largest frame accepted from the server: a history reply holds up to 1000 messages.
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: The ``id`` of the authentication request (other requests have integer ids).
AUTH_ID = "auth"


async def open_connection(
    url: str, *, timeout: float, wire_format: WireFormat = "json", compression: bool = True
) -> ClientConnection:
    """The opening handshake, asking for ``wire_format`` and, with
    ``compression``, offering permessage-deflate. The server may grant
    neither: ``wire.format_of`` says what this connection speaks.

    Raises:
        AuthenticationFailed: HTTP 401 (a token in the URL was refused).
        ConnectionFailed: unreachable, timed out, or another HTTP refusal
            (403 origin, 429 too many connections, 503 server full).
    """
    try:
        ws = await connect(
            url,
            open_timeout=timeout,
            max_size=MAX_MESSAGE_SIZE,
            user_agent_header=f"slurmcast-client/{__version__}",
            subprotocols=subprotocols_for(wire_format),
            compression="deflate" if compression else None,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        code, message = _refusal(exc.response.body)
        text = f"the server refused the connection: HTTP {status}" + (
            f" ({message})" if message else ""
        )
        if status == 401:
            raise AuthenticationFailed(code or "invalid_token", text) from None
        raise ConnectionFailed(CONNECTION_FAILED, text) from None
    except (OSError, InvalidHandshake) as exc:
        raise ConnectionFailed(CONNECTION_FAILED, f"cannot connect to {url}: {exc}") from None
    if wire_format != format_of(ws):
        log.info(
            "%s did not agree to the %s subprotocol (an older server?); this connection uses JSON",
            url,
            MSGPACK_SUBPROTOCOL,
        )
    return ws


async def authenticate(ws: ClientConnection, token: str, *, timeout: float) -> Message:
    """Send ``{"type": "auth"}`` and return the ``authenticated`` reply.

    Works on servers without authentication too (they answer ``authenticated``
    with no user).

    Raises:
        AuthenticationFailed: the token was refused (the server closes with 1008).
        ConnectionFailed: the connection closed otherwise (4029: too many
            connections for the user), or no reply came within ``timeout``.
    """
    wire_format = format_of(ws)
    try:
        async with asyncio.timeout(timeout):
            await ws.send(encode({"type": "auth", "token": token, "id": AUTH_ID}, wire_format))
            while True:
                try:
                    message = decode(await ws.recv(), wire_format)
                except UndecodableFrame as exc:
                    log.warning("ignoring a frame during authentication: %s", exc)
                    continue
                if isinstance(message, dict) and message.get("id") == AUTH_ID:
                    break
    except ConnectionClosed:
        code, reason = ws.close_code, ws.close_reason or ""
        if reaction_to_close(code, reason) is Reaction.REAUTHENTICATE:
            raise AuthenticationFailed("invalid_token", reason) from None
        closed = f"{code} {reason}".rstrip()
        raise ConnectionFailed(
            CONNECTION_LOST, f"the server closed the connection during authentication: {closed}"
        ) from None
    except TimeoutError:
        raise ConnectionFailed(
            CONNECTION_FAILED, f"no reply to authentication within {timeout:g}s"
        ) from None
    if message.get("type") == "error":
        error = error_from_reply(message)
        raise AuthenticationFailed(error.code, error.message)
    reply: dict[str, Any] = message
    return reply


def _refusal(body: bytes | bytearray | None) -> tuple[str | None, str | None]:
    """The ``code`` and ``message`` of the server's JSON refusal body, if it has them."""
    try:
        value = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(value, dict):
        return None, None
    code, message = value.get("code"), value.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )
