"""One client's protocol state machine, without I/O.

The transport feeds every received frame to ``Session.receive`` and calls
``Session.on_timer`` when ``Session.deadline`` passes; it carries out the
returned actions in order. Every rule — authentication, token expiry and
refresh, rate limits, permissions — is decided here and can be tested with
plain values (websockets' sans-I/O core is the model).

Requests that need the broker or the store (subscribe, history, broadcast,
mark read) come back as actions the transport awaits; it then hands the
outcome back (``subscription_started``, ``history_found``, ``broadcast_done``,
``marked_read``, or ``request_failed``) and gets the replies to send: what a
client is told, and what a subscription holds, is decided here too.

States::

    AUTHENTICATING --auth ok--> OPEN --token expires--> EXPIRING --refresh ok--> OPEN
          |                                                |
          +-- bad token / timeout: close 1008              +-- grace over: close 4001

``now`` is wall-clock seconds (token expiry times are wall-clock).

Longer than ~400 lines on purpose: every protocol rule of one client is decided here, in
one state machine, so that each can be tested with plain values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from slurmcast.core import protocol
from slurmcast.core.filters import Filter, visible_items
from slurmcast.core.history import HistoryResult, recover
from slurmcast.core.policy import ANONYMOUS, AccessPolicy, Principal
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.core.ratelimit import TokenBucket
from slurmcast.core.subscription import Subscription, SubscriptionStart
from slurmcast.core.timefmt import iso_z
from slurmcast.core.views import SNAPSHOT_CHANNELS, Snapshot
from slurmcast.errors import AuthError, CloseCode, ErrorCode, ProtocolError


@dataclass(frozen=True, slots=True)
class SendReply:
    """Write this JSON object to the client."""

    reply: dict[str, Any]


#: Snapshot items per ``snapshot`` message: keeps frames well under clients' size limits.
SNAPSHOT_CHUNK = 500


@dataclass(frozen=True, slots=True)
class SendPublication:
    """Write this stored publication to the client (a replay, or held while starting)."""

    publication: Publication


@dataclass(frozen=True, slots=True)
class AddSubscription:
    """Start ``subscription`` with the node, then hand the start to ``subscription_started``.

    With ``since``, publications after it are replayed first (or the reply
    says ``recovered: false``); with ``snapshot``, the channel's state comes
    first (only when not recovered, if ``since`` is given too).
    """

    subscription: Subscription
    request_id: protocol.RequestId | None = None
    since: StreamPosition | None = None
    snapshot: bool = False

    @property
    def channel(self) -> str:
        return self.subscription.channel


@dataclass(frozen=True, slots=True)
class RemoveSubscription:
    channel: str


@dataclass(frozen=True, slots=True)
class SendHistory:
    """Reply with the channel's stored messages (filtered for this client).

    ``read_limit`` is how many to read: more than the request's ``limit`` when
    this client sees only some of them, so that the limit counts what it sees.
    """

    request: protocol.History
    read_limit: int


@dataclass(frozen=True, slots=True)
class MarkNotificationsRead:
    """Mark notifications read; ``user`` None may mark anyone's (no auth, or an admin)."""

    ids: tuple[str, ...]
    user: str | None
    request_id: protocol.RequestId | None


@dataclass(frozen=True, slots=True)
class PublishBroadcast:
    """An admin's broadcast: publish, then reply ``published`` with the count."""

    channel: str
    event_type: str
    data: Any
    request_id: protocol.RequestId | None


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The connection now acts for ``principal`` (the transport checks per-user limits)."""

    principal: Principal


@dataclass(frozen=True, slots=True)
class CloseConnection:
    code: CloseCode
    reason: str


Action = (
    SendReply
    | SendPublication
    | AddSubscription
    | RemoveSubscription
    | SendHistory
    | MarkNotificationsRead
    | PublishBroadcast
    | Authenticated
    | CloseConnection
)

#: Checks a token; returns its principal or raises ``AuthError``.
Verifier = Callable[[str], Principal]


class SessionState(Enum):
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    EXPIRING = "expiring"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-connection limits.

    ``rate`` messages per second with bursts of ``burst`` (the design's 60 a
    minute); a client that is refused ``flood_warnings`` times in a row is
    closed with 1008. WebSocket PING frames count as messages (each costs
    its pong), and an answer costs one token per ``reply_bytes_per_token``
    bytes (a history or a snapshot may weigh a thousand times its request).
    """

    auth_timeout: float = 5.0
    refresh_grace: float = 30.0
    rate: float = 1.0
    burst: float = 10.0
    flood_warnings: int = 10
    max_channels: int = 32
    reply_bytes_per_token: int = 65536


def _no_verifier(token: str) -> Principal:
    raise AuthError("authentication is not configured")


class Session:
    """The protocol state of one connection.

    Args:
        policy: the permission rules.
        limits: rate, channel and timing limits.
        verify: checks tokens (first-message auth and refresh).
        now: wall-clock seconds at connection time.
        principal: the identity verified at the handshake, if any. With
            authentication disabled every client is ``ANONYMOUS``.

    ``receive`` never raises for bad input: every rejected frame becomes an
    ``error`` reply, and only the rules above close the connection.
    """

    def __init__(
        self,
        policy: AccessPolicy | None = None,
        limits: SessionLimits | None = None,
        verify: Verifier = _no_verifier,
        now: float = 0.0,
        principal: Principal | None = None,
    ) -> None:
        self.policy = policy or AccessPolicy()
        self.limits = limits or SessionLimits()
        self.verify = verify
        #: This client's subscriptions, by channel (the hub points at the same records).
        self.subscriptions: dict[str, Subscription] = {}
        self.bucket = TokenBucket(self.limits.rate, self.limits.burst)
        self.refused_in_a_row = 0
        if principal is None and self.policy.auth_enabled:
            self.principal = ANONYMOUS
            self.state = SessionState.AUTHENTICATING
            self.deadline: float | None = now + self.limits.auth_timeout
        else:
            self.principal = principal or ANONYMOUS
            self.state = SessionState.OPEN
            self.deadline = self.principal.expires_at

    @property
    def user(self) -> str | None:
        return self.principal.user

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self.subscriptions)

    def may_see(self, publication: Publication) -> bool:
        """Visibility: a user's own jobs, an admin's everything (filters aside)."""
        return publication.owner is None or self.policy.may_see(
            self.principal, publication.channel, publication.owner
        )

    # -- outcomes of what the transport awaited ------------------------------------

    def subscription_started(
        self, action: AddSubscription, start: SubscriptionStart
    ) -> list[Action]:
        """The node started a subscription: the reply, the snapshot, the replay, in order."""
        subscription = action.subscription
        actions: list[Action] = [
            SendReply(
                protocol.subscribed(
                    subscription.channel,
                    action.request_id,
                    position=start.position,
                    recovered=start.recovered,
                )
            )
        ]
        if start.snapshot is not None:
            actions += self._snapshot_parts(start.snapshot, subscription.filter)
        wanted = subscription.filter
        actions += [
            SendPublication(p)
            for p in start.publications
            if self.may_see(p) and (wanted is None or wanted.matches(p.tags))
        ]
        return actions

    def request_failed(
        self,
        action: AddSubscription | SendHistory | MarkNotificationsRead | PublishBroadcast,
        code: ErrorCode,
        message: str,
    ) -> list[Action]:
        """What the transport awaited failed (broker or store): the client is told why."""
        if isinstance(action, AddSubscription):
            # Not subscribed after all: the record goes (unless replaced meanwhile).
            if self.subscriptions.get(action.channel) is action.subscription:
                del self.subscriptions[action.channel]
            request_id = action.request_id
        elif isinstance(action, SendHistory):
            request_id = action.request.request_id
        else:
            request_id = action.request_id
        return [_error(code, message, request_id)]

    def history_found(self, action: SendHistory, history: HistoryResult) -> list[Action]:
        request = action.request
        visible = [
            p
            for p in history.publications
            if self.may_see(p) and (request.filter is None or request.filter.matches(p.tags))
        ]
        # The limit counts what this client sees: the newest ones, or with
        # `since` the ones right after it (the client pages forward).
        shown = visible[: request.limit] if request.since is not None else visible[-request.limit :]
        complete = None
        if request.since is not None:
            # Whether these are all the messages after `since` (same epoch, still stored).
            complete = recover(request.since, history, ()).recovered and len(shown) == len(visible)
        return [
            SendReply(
                protocol.history_reply(
                    request.channel, history.top, shown, complete, request.request_id
                )
            )
        ]

    def broadcast_done(self, action: PublishBroadcast, delivered: int) -> list[Action]:
        return [SendReply(protocol.published(action.channel, delivered, action.request_id))]

    def marked_read(self, action: MarkNotificationsRead, ids: list[str]) -> list[Action]:
        return [SendReply(protocol.marked_read(ids, action.request_id))]

    def _snapshot_parts(self, snapshot: Snapshot, wanted: Filter | None) -> list[Action]:
        channel = snapshot.channel
        items = visible_items(snapshot, self.principal, self.policy, wanted)
        chunks = [items[i : i + SNAPSHOT_CHUNK] for i in range(0, len(items), SNAPSHOT_CHUNK)]
        parts = max(len(chunks), 1)
        return [
            SendReply(protocol.snapshot_part(channel, snapshot.position, chunk, number, parts))
            for number, chunk in enumerate(chunks or [[]], start=1)
        ]

    # -- input ---------------------------------------------------------------

    def receive(self, frame: str | bytes, now: float) -> list[Action]:
        """Handle one frame from the client (text as str, binary as bytes)."""
        refused = self._charge(now, frame)
        if refused is not None:
            return refused
        if isinstance(frame, bytes):
            return [
                _error(
                    ErrorCode.BINARY_NOT_SUPPORTED,
                    "binary frames need the slurmcast.msgpack subprotocol; "
                    "send JSON as text frames",
                )
            ]
        try:
            request = protocol.parse_request(protocol.decode_frame(frame))
        except ProtocolError as exc:
            return [_error(exc.code, exc.message, exc.request_id)]
        if self.state is SessionState.AUTHENTICATING:
            return self._authenticate(request, now)
        return self._handle(request, now)

    def receive_undecodable(self, reason: str, now: float) -> list[Action]:
        """A message the transport could not decode (bad msgpack): it costs, and is refused."""
        refused = self._charge(now)
        if refused is not None:
            return refused
        return [_error(ErrorCode.INVALID_MSGPACK, reason)]

    def _charge(self, now: float, frame: str | bytes = b"") -> list[Action] | None:
        """What one frame costs: None when it may be handled, else the answer instead."""
        if self.state is SessionState.CLOSED:
            return []
        retry_after = self.bucket.take(now)
        if retry_after:
            request_id = protocol.peek_request_id(frame) if isinstance(frame, str) else None
            return self._rate_limited(retry_after, request_id)
        self.refused_in_a_row = 0
        return None

    def receive_control(self, now: float) -> list[Action]:
        """Handle a PING frame (its pong is automatic): it costs a message.

        There is nothing to answer when it is over the limit, but it counts
        toward ``flood_warnings`` all the same, so a ping flood gets closed.
        """
        if self.state is SessionState.CLOSED:
            return []
        if self.bucket.take(now):
            self.refused_in_a_row += 1
            if self.refused_in_a_row > self.limits.flood_warnings:
                return self._close(
                    CloseCode.POLICY_VIOLATION, "rate limit exceeded: too many ping frames"
                )
            return []
        self.refused_in_a_row = 0
        return []

    def charge_reply(self, size: int, now: float) -> None:
        """The transport sent an answer of ``size`` bytes: charge what it weighs.

        The request already paid one token; an answer above
        ``reply_bytes_per_token`` pays the rest (see ``TokenBucket.charge``).
        """
        extra = size / self.limits.reply_bytes_per_token - 1.0
        if extra > 0:
            self.bucket.charge(extra, now)

    def on_timer(self, now: float) -> list[Action]:
        """Handle the passing of ``deadline``: auth timeout, token expiry, grace end."""
        if self.deadline is None or now < self.deadline:
            return []
        if self.state is SessionState.AUTHENTICATING:
            return self._close(
                CloseCode.POLICY_VIOLATION,
                f"Authentication failed: no auth message within {self.limits.auth_timeout:g}s",
            )
        if self.state is SessionState.OPEN:
            self.state = SessionState.EXPIRING
            self.deadline = now + self.limits.refresh_grace
            return [
                _error(
                    ErrorCode.TOKEN_EXPIRED,
                    'your token expired; send {"type": "refresh", "token": ...} within '
                    f"{self.limits.refresh_grace:g}s to stay connected",
                )
            ]
        if self.state is SessionState.EXPIRING:
            return self._close(CloseCode.TOKEN_EXPIRED, "token expired: reconnect with a new token")
        return []

    # -- states ----------------------------------------------------------------

    def _authenticate(self, request: protocol.Request, now: float) -> list[Action]:
        if not isinstance(request, protocol.Auth):
            return [
                _error(
                    ErrorCode.UNAUTHORIZED,
                    'authenticate first: send {"type": "auth", "token": "<JWT>"}',
                    request.request_id,
                )
            ]
        try:
            principal = self.verify(request.token)
        except AuthError as exc:
            return [
                _error(exc.code, exc.message, request.request_id),
                *self._close(CloseCode.POLICY_VIOLATION, f"Authentication failed: {exc.message}"),
            ]
        self._become(principal)
        return [Authenticated(principal), SendReply(_authenticated(principal, request.request_id))]

    def _handle(self, request: protocol.Request, now: float) -> list[Action]:
        match request:
            case protocol.Subscribe():
                return self._subscribe(request)
            case protocol.History(channel, _, _, _, request_id):
                denial = self.policy.subscribe_denial(self.principal, channel)
                if denial is not None:
                    return [_error(ErrorCode.FORBIDDEN, denial, request_id)]
                narrowed = request.filter is not None or self.policy.restricted_to_own_jobs(
                    self.principal, channel
                )
                read = protocol.MAX_HISTORY_LIMIT if narrowed else request.limit
                return [SendHistory(request, read)]
            case protocol.MarkRead(ids, request_id):
                return [MarkNotificationsRead(ids, self._notifications_of(), request_id)]
            case protocol.Unsubscribe(channels, request_id):
                return self._unsubscribe(channels, request_id)
            case protocol.Ping(request_id):
                return [SendReply(protocol.pong(request_id))]
            case protocol.Broadcast(channel, event_type, data, request_id):
                return self._broadcast(channel, event_type, data, request_id)
            case protocol.Refresh(token, request_id):
                return self._refresh(token, request_id, now)
            case protocol.Auth(_, request_id):
                if not self.policy.auth_enabled:
                    return [SendReply(_authenticated(self.principal, request_id))]
                return [
                    _error(
                        ErrorCode.ALREADY_AUTHENTICATED,
                        'already authenticated; use {"type": "refresh"} to replace the token',
                        request_id,
                    )
                ]
        raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover

    def _refresh(
        self, token: str, request_id: protocol.RequestId | None, now: float
    ) -> list[Action]:
        if not self.policy.auth_enabled:
            return [SendReply(_authenticated(self.principal, request_id))]
        try:
            principal = self.verify(token)
        except AuthError as exc:
            return [_error(exc.code, exc.message, request_id)]
        if principal.user != self.principal.user:
            return [
                _error(
                    ErrorCode.FORBIDDEN,
                    f"a refresh token must be for the same user ({self.principal.user})",
                    request_id,
                )
            ]
        self._become(principal)
        actions: list[Action] = [Authenticated(principal)]
        # The new token may allow less: drop what it no longer allows.
        for channel in sorted(self.subscriptions):
            denial = self.policy.subscribe_denial(principal, channel)
            if denial is not None:
                del self.subscriptions[channel]
                actions.append(RemoveSubscription(channel))
                actions.append(
                    SendReply({"type": "unsubscribed", "channel": channel, "message": denial})
                )
        reply = _authenticated(principal, request_id)
        reply["type"] = "refreshed"
        actions.append(SendReply(reply))
        return actions

    def _subscribe(self, request: protocol.Subscribe) -> list[Action]:
        channels, request_id = request.channels, request.request_id
        for channel in channels:
            denial = self.policy.subscribe_denial(self.principal, channel)
            if denial is not None:
                return [_error(ErrorCode.FORBIDDEN, denial, request_id)]
            if request.snapshot and channel not in SNAPSHOT_CHANNELS:
                return [
                    _error(
                        ErrorCode.SNAPSHOT_NOT_AVAILABLE,
                        f"channel {channel} has no snapshot; use history, or GET /notifications",
                        request_id,
                    )
                ]
        new = [c for c in channels if c not in self.subscriptions]
        if len(self.subscriptions) + len(new) > self.limits.max_channels:
            return [
                _error(
                    ErrorCode.TOO_MANY_CHANNELS,
                    f"at most {self.limits.max_channels} channels per connection",
                    request_id,
                )
            ]
        actions: list[Action] = []
        for channel in channels:
            if channel in self.subscriptions:
                if not request.has_options:
                    actions.append(
                        SendReply(protocol.subscribed(channel, request_id, already=True))
                    )
                    continue
                # New options (a filter, a position) replace the old subscription.
                actions.append(RemoveSubscription(channel))
            wanted = request.filter
            subscription = Subscription(
                channel, wanted if wanted is not None and wanted.conditions else None
            )
            self.subscriptions[channel] = subscription
            actions.append(
                AddSubscription(subscription, request_id, request.since, request.snapshot)
            )
        return actions

    def _unsubscribe(
        self, channels: tuple[str, ...], request_id: protocol.RequestId | None
    ) -> list[Action]:
        actions: list[Action] = []
        for channel in channels:
            was = channel in self.subscriptions
            if was:
                del self.subscriptions[channel]
                actions.append(RemoveSubscription(channel))
            actions.append(
                SendReply(protocol.unsubscribed(channel, request_id, was_subscribed=was))
            )
        return actions

    def _broadcast(
        self,
        channel: str,
        event_type: str,
        data: Any,
        request_id: protocol.RequestId | None,
    ) -> list[Action]:
        why = self.policy.broadcast_denial(self.principal, channel)
        if why is None:
            return [PublishBroadcast(channel, event_type, data, request_id)]
        return [_error(ErrorCode.FORBIDDEN, why, request_id)]

    # -- helpers -------------------------------------------------------------

    def _notifications_of(self) -> str | None:
        """Whose notifications this client may mark read (None: anyone's).

        An admin may mark anyone's, unless its token's ``channels`` claim
        keeps it away from ``notifications``: then only its own.
        """
        principal = self.principal
        if not principal.is_admin:
            return principal.user
        if principal.channels is not None and "notifications" not in principal.channels:
            return principal.user
        return None

    def _become(self, principal: Principal) -> None:
        self.principal = principal
        self.state = SessionState.OPEN
        self.deadline = principal.expires_at

    def _rate_limited(
        self, retry_after: float, request_id: protocol.RequestId | None = None
    ) -> list[Action]:
        self.refused_in_a_row += 1
        if self.refused_in_a_row > self.limits.flood_warnings:
            return self._close(
                CloseCode.POLICY_VIOLATION, "rate limit exceeded after repeated warnings"
            )
        reply = protocol.error(
            ErrorCode.RATE_LIMITED, f"too many messages; retry in {retry_after:.1f}s", request_id
        )
        reply["retry_after"] = round(retry_after, 3)
        return [SendReply(reply)]

    def _close(self, code: CloseCode, reason: str) -> list[Action]:
        self.state = SessionState.CLOSED
        self.deadline = None
        # A close reason must fit in a control frame (123 bytes of UTF-8).
        return [CloseConnection(code, reason.encode()[:123].decode(errors="ignore"))]


def _error(
    code: ErrorCode, message: str, request_id: protocol.RequestId | None = None
) -> SendReply:
    return SendReply(protocol.error(code, message, request_id))


def _authenticated(principal: Principal, request_id: protocol.RequestId | None) -> dict[str, Any]:
    expires = principal.expires_at
    reply: dict[str, Any] = {
        "type": "authenticated",
        "user": principal.user,
        "roles": sorted(principal.roles),
        "expires_at": iso_z(datetime.fromtimestamp(expires, UTC)) if expires else None,
    }
    if request_id is not None:
        reply["id"] = request_id
    return reply
