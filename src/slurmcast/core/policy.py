"""Who may do what: pure permission rules over a verified identity.

A ``Principal`` is what a verified token says about its bearer; an
``AccessPolicy`` answers every permission question the server asks. Keeping
the rules here, away from tokens and sockets, lets each one be tested with
plain values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from slurmcast.core.channels import Channel, channel_user

ADMIN_ROLE = "admin"

#: Channels whose messages concern one user's jobs (the PrivateData=jobs question).
JOB_CHANNELS = frozenset({Channel.JOBS.value, Channel.NOTIFICATIONS.value})


class JobsVisibility(StrEnum):
    OWN = "own"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified identity.

    Attributes:
        user: the Slurm user name (the token's ``sub``); None when
            authentication is disabled.
        roles: e.g. ``{"admin"}``.
        channels: the token's optional allow-list of channels; None allows
            every channel the roles allow.
        expires_at: the token's ``exp`` (epoch seconds); None never expires.
        email: the token's e-mail claim as given (unchecked); None without one.
    """

    user: str | None
    roles: frozenset[str] = frozenset()
    channels: frozenset[str] | None = None
    expires_at: float | None = None
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    @property
    def authenticated(self) -> bool:
        return self.user is not None


#: Everyone, when authentication is disabled.
ANONYMOUS = Principal(user=None)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The permission rules.

    Args:
        auth_enabled: False means every client is ``ANONYMOUS`` and may read
            everything (the default for ``make run``); client broadcast still
            needs an admin, so it is refused.
        jobs_visibility: ``own`` restricts a non-admin to their own jobs on
            ``jobs`` and ``notifications``; ``all`` shows every job to every
            authenticated user.
    """

    auth_enabled: bool = False
    jobs_visibility: JobsVisibility = JobsVisibility.OWN

    def subscribe_denial(self, principal: Principal, channel: str) -> str | None:
        """Why ``principal`` may not subscribe to ``channel``, or None if it may.

        A token's ``channels`` claim narrows what its roles allow, for admins
        too: a dashboard's admin token limited to ``nodes`` reads nothing else.
        The user's own private channel always stays reachable.
        """
        if not self.auth_enabled:
            return None
        owner = channel_user(channel)
        if owner is not None and owner == principal.user:
            return None
        if owner is not None and not principal.is_admin:
            return f"channel {channel} is private to user {owner}"
        if principal.channels is not None and channel not in principal.channels:
            return f"your token does not allow channel {channel}"
        return None

    def broadcast_denial(self, principal: Principal, channel: str) -> str | None:
        """Why ``principal`` may not broadcast on ``channel`` (``all``: to everyone), or None."""
        if not self.may_broadcast(principal):
            if not self.auth_enabled:
                return (
                    "client broadcast is reserved for admins and needs authentication; "
                    "use POST /broadcast on the HTTP API"
                )
            return "client broadcast is reserved for admins"
        if principal.channels is not None and channel not in principal.channels:
            return f"your token does not allow channel {channel}"
        return None

    def may_broadcast(self, principal: Principal) -> bool:
        return self.auth_enabled and principal.is_admin

    def restricted_to_own_jobs(self, principal: Principal, channel: str) -> bool:
        """Whether messages on ``channel`` must be filtered to ``principal``'s own jobs."""
        return (
            self.auth_enabled
            and not principal.is_admin
            and self.jobs_visibility is JobsVisibility.OWN
            and channel in JOB_CHANNELS
        )

    def may_see(self, principal: Principal, channel: str, owner: str | None) -> bool:
        """Whether a message about ``owner``'s job on ``channel`` may reach ``principal``.

        Messages about no one in particular (``owner`` None: node events,
        operator broadcasts) are visible to every subscriber.
        """
        if owner is None or not self.restricted_to_own_jobs(principal, channel):
            return True
        return owner == principal.user


def parse_roles(value: object) -> frozenset[str]:
    """The ``roles`` claim: a list of strings (a single string is accepted)."""
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, Iterable):
        return frozenset(str(role) for role in value if isinstance(role, str))
    return frozenset()
