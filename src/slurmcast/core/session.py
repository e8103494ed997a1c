"""One client's protocol state machine, without I/O.

The transport feeds every received frame to ``Session.receive`` and carries
out the returned actions in order: replies are written, subscriptions are
added to or removed from the hub. Keeping the decisions
here lets every rule be tested with plain values (websockets' sans-I/O core
is the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slurmcast.core import protocol
from slurmcast.core.channels import Channel
from slurmcast.errors import ErrorCode, ProtocolError


@dataclass(frozen=True, slots=True)
class SendReply:
    """Write this JSON object to the client."""

    reply: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AddSubscription:
    channel: Channel


@dataclass(frozen=True, slots=True)
class RemoveSubscription:
    channel: Channel


Action = SendReply | AddSubscription | RemoveSubscription


class Session:
    """The protocol state of one connection: what it is subscribed to.

    ``receive`` never raises for bad input: every rejected frame becomes an
    ``error`` reply and the connection stays usable.
    """

    def __init__(self) -> None:
        self.channels: set[Channel] = set()

    def receive(self, frame: str | bytes, now: float) -> list[Action]:
        """Handle one frame from the client.

        Args:
            frame: a text frame (str) or a binary frame (bytes).
            now: monotonic seconds, for time-based rules.

        Returns:
            The actions the transport must perform, in order.
        """
        if isinstance(frame, bytes):
            return [
                SendReply(
                    protocol.error(
                        ErrorCode.BINARY_NOT_SUPPORTED,
                        "binary frames are not supported; send JSON as text frames",
                    )
                )
            ]
        try:
            request = protocol.parse_request(protocol.decode_frame(frame))
        except ProtocolError as exc:
            return [SendReply(protocol.error(exc.code, exc.message, exc.request_id))]
        return self._handle(request)

    def _handle(self, request: protocol.Request) -> list[Action]:
        match request:
            case protocol.Subscribe(channels, request_id):
                return self._subscribe(channels, request_id)
            case protocol.Unsubscribe(channels, request_id):
                return self._unsubscribe(channels, request_id)
            case protocol.Ping(request_id):
                return [SendReply(protocol.pong(request_id))]
            case protocol.Broadcast(_, _, request_id):
                # Client broadcast needs an authenticated admin; until auth is
                # configured nobody is one, so it is always refused.
                return [
                    SendReply(
                        protocol.error(
                            ErrorCode.FORBIDDEN,
                            "client broadcast is reserved for admins and needs authentication; "
                            "use POST /broadcast on the HTTP API",
                            request_id,
                        )
                    )
                ]
        raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover

    def _subscribe(
        self, channels: tuple[Channel, ...], request_id: protocol.RequestId | None
    ) -> list[Action]:
        actions: list[Action] = []
        for channel in channels:
            already = channel in self.channels
            if not already:
                self.channels.add(channel)
                actions.append(AddSubscription(channel))
            actions.append(SendReply(protocol.subscribed(channel, request_id, already=already)))
        return actions

    def _unsubscribe(
        self, channels: tuple[Channel, ...], request_id: protocol.RequestId | None
    ) -> list[Action]:
        actions: list[Action] = []
        for channel in channels:
            was = channel in self.channels
            if was:
                self.channels.discard(channel)
                actions.append(RemoveSubscription(channel))
            actions.append(
                SendReply(protocol.unsubscribed(channel, request_id, was_subscribed=was))
            )
        return actions
