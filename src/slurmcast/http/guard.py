"""Who may use the HTTP API: ``ApiGuard``, and the credentials a request offers.

Write endpoints need an admin: an ``X-API-Key`` equal to the configured key
(compared in constant time) or an ``Authorization: Bearer`` JWT with the
``admin`` role. With neither an API key nor JWT auth configured (the
zero-setup default) they are open. Readers (snapshots, notifications) need a
valid token or the API key only while JWT auth is on.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from slurmcast.auth.jwt import parse_bearer
from slurmcast.core.policy import ADMIN_ROLE, ANONYMOUS, Principal
from slurmcast.errors import AuthError, ErrorCode
from slurmcast.http.errors import HttpError

#: Whoever presents the API key acts as an admin.
API_KEY_ADMIN = Principal("api-key", frozenset({ADMIN_ROLE}))


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request offers to prove who it is (None: not offered).

    ``bearer`` is kept as sent: it is judged only when used, so that a
    broken token beside an API key, which wins, changes nothing.
    """

    api_key: str | None
    bearer: str | None

    def token(self) -> str | None:
        """The Bearer token, if any.

        Raises:
            HttpError: 401 ``invalid_token`` for one that cannot be a JWT.
        """
        if self.bearer is not None and not self.bearer.isascii():
            # A JWT is base64url and dots; the verifier would choke on other characters.
            raise HttpError(401, ErrorCode.INVALID_TOKEN, "the token is not valid: it is not ASCII")
        return self.bearer


def credentials(request: web.Request) -> Credentials:
    """The ``X-API-Key`` header and the ``Authorization: Bearer`` token of a request."""
    return Credentials(
        api_key=request.headers.get("X-API-Key"),
        bearer=parse_bearer(request.headers.get("Authorization")),
    )


class ApiGuard:
    """Decides who is an admin of the HTTP API, and who is reading.

    Args:
        api_key: the configured key ('' = none).
        verify: the JWT verifier when JWT auth is on, else None.
    """

    def __init__(self, api_key: str, verify: Callable[[str], Principal] | None) -> None:
        self._api_key = _header_bytes(api_key)
        self._verify = verify
        #: Refused credentials by error code (``unauthorized``, ``invalid_token``,
        #: ``token_expired``, ``forbidden``): GET /metrics. ``is_admin`` (the
        #: check behind /health's full answer) does not count.
        self.failures: Counter[str] = Counter()

    @property
    def protected(self) -> bool:
        return bool(self._api_key) or self._verify is not None

    def require_admin(self, request: web.Request) -> str:
        """Who the admin is ("api-key" or the user); raises 401/403 ``HttpError``."""
        return self.admin(request)[0]

    def admin(self, request: web.Request) -> tuple[str, Principal | None]:
        """Who the admin is, and their token's principal when they came with one.

        Raises:
            HttpError: 401 without valid credentials, 403 for a token without the admin role.
        """
        try:
            return self._admin(request)
        except HttpError as exc:
            self.failures[exc.wire_code] += 1
            raise

    def _admin(self, request: web.Request) -> tuple[str, Principal | None]:
        if not self.protected:
            return "anonymous", None
        offered = credentials(request)
        if offered.api_key is not None:
            if self._api_key and self._key_matches(offered.api_key):
                return "api-key", None
            raise HttpError(401, ErrorCode.UNAUTHORIZED, "the API key is not valid")
        token = offered.token()
        if token is None:
            raise HttpError(
                401,
                ErrorCode.UNAUTHORIZED,
                "this endpoint needs an X-API-Key header or an admin's Bearer token",
            )
        if self._verify is None:
            raise HttpError(401, ErrorCode.UNAUTHORIZED, "JWT authentication is not enabled")
        principal = self._verified(token)
        if not principal.is_admin:
            raise HttpError(403, ErrorCode.FORBIDDEN, "this endpoint is for admins")
        return principal.user or "admin", principal

    def reader(self, request: web.Request) -> Principal:
        """Who is reading: an admin (API key), a token's user, or anyone when auth is off.

        Raises:
            HttpError: 401 when JWT auth is on and no valid credentials came.
        """
        try:
            return self._reader(request)
        except HttpError as exc:
            self.failures[exc.wire_code] += 1
            raise

    def _reader(self, request: web.Request) -> Principal:
        if self._verify is None:
            return ANONYMOUS
        offered = credentials(request)
        # Without a configured key the header proves nothing: the token decides.
        if offered.api_key is not None and self._api_key:
            if self._key_matches(offered.api_key):
                return API_KEY_ADMIN
            raise HttpError(401, ErrorCode.UNAUTHORIZED, "the API key is not valid")
        token = offered.token()
        if token is None:
            raise HttpError(
                401, ErrorCode.UNAUTHORIZED, "this endpoint needs a Bearer token or an X-API-Key"
            )
        return self._verified(token)

    def is_admin(self, request: web.Request) -> bool:
        try:
            self._admin(request)
        except HttpError:
            return False
        return True

    def _key_matches(self, offered: str) -> bool:
        return hmac.compare_digest(_header_bytes(offered), self._api_key)

    def _verified(self, token: str) -> Principal:
        assert self._verify is not None
        try:
            return self._verify(token)
        except AuthError as exc:
            raise HttpError(401, exc.code, exc.message) from None


def _header_bytes(value: str) -> bytes:
    """A header value as bytes, whatever it holds.

    aiohttp decodes header bytes that are not UTF-8 into lone surrogates,
    which a strict ``encode()`` refuses: a credential is compared as bytes.
    """
    return value.encode("utf-8", "surrogatepass")
