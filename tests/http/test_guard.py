"""``http.guard``: the credentials a request offers, and who the guard takes it for."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from aiohttp.web import Request

from slurmcast.core.policy import ADMIN_ROLE, ANONYMOUS, Principal
from slurmcast.errors import AuthError
from slurmcast.http.errors import HttpError
from slurmcast.http.guard import API_KEY_ADMIN, ApiGuard, Credentials, credentials

KEY = "k-0123456789abcdef"
ALICE = Principal("alice")
ROOT = Principal("root", frozenset({ADMIN_ROLE}))


def request(**headers: str) -> Request:
    return make_mocked_request("GET", "/", headers=headers)


def verify(token: str) -> Principal:
    users = {"alice-token": ALICE, "root-token": ROOT}
    if token not in users:
        raise AuthError("the token is not valid")
    return users[token]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-API-Key": KEY}, Credentials(api_key=KEY, bearer=None)),
        ({"Authorization": "Bearer abc.def.ghi"}, Credentials(api_key=None, bearer="abc.def.ghi")),
        ({"Authorization": "bearer  abc "}, Credentials(api_key=None, bearer="abc")),
        ({"X-API-Key": KEY, "Authorization": "Bearer t"}, Credentials(api_key=KEY, bearer="t")),
        ({}, Credentials(api_key=None, bearer=None)),
        ({"X-API-Key": ""}, Credentials(api_key="", bearer=None)),
    ],
)
def test_credentials_are_the_api_key_header_and_the_bearer_token(
    headers: dict[str, str], expected: Credentials
) -> None:
    assert credentials(request(**headers)) == expected


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "abc", ""])
def test_an_authorization_header_that_is_not_bearer_offers_no_token(authorization: str) -> None:
    offered = credentials(request(Authorization=authorization))
    assert offered.bearer is None
    assert offered.token() is None


def test_a_token_that_is_not_ascii_is_refused_when_used() -> None:
    offered = credentials(request(Authorization="Bearer t\u00f6ken"))
    with pytest.raises(HttpError) as caught:
        offered.token()
    assert (caught.value.status, caught.value.wire_code) == (401, "invalid_token")


def test_an_open_api_takes_everyone_for_an_admin_and_a_reader() -> None:
    guard = ApiGuard("", None)
    assert not guard.protected
    assert guard.admin(request(**{"X-API-Key": "wrong"})) == ("anonymous", None)
    assert guard.reader(request()) is ANONYMOUS


@pytest.mark.parametrize(
    ("headers", "who"),
    [
        ({"X-API-Key": KEY}, "api-key"),
        ({"Authorization": "Bearer root-token"}, "root"),
        # The API key wins: a broken token beside it is never looked at.
        ({"X-API-Key": KEY, "Authorization": "Bearer t\u00f6ken"}, "api-key"),
    ],
)
def test_an_admin_comes_with_the_api_key_or_an_admin_token(
    headers: dict[str, str], who: str
) -> None:
    assert ApiGuard(KEY, verify).require_admin(request(**headers)) == who


@pytest.mark.parametrize(
    ("guard", "headers", "status", "code"),
    [
        (ApiGuard(KEY, verify), {}, 401, "unauthorized"),
        (ApiGuard(KEY, verify), {"X-API-Key": "wrong"}, 401, "unauthorized"),
        (ApiGuard(KEY, verify), {"Authorization": "Bearer t\u00f6ken"}, 401, "invalid_token"),
        (ApiGuard(KEY, verify), {"Authorization": "Bearer forged"}, 401, "invalid_token"),
        (ApiGuard(KEY, verify), {"Authorization": "Bearer alice-token"}, 403, "forbidden"),
        (ApiGuard(KEY, None), {"Authorization": "Bearer root-token"}, 401, "unauthorized"),
        # A key header proves nothing when no key is configured.
        (ApiGuard("", verify), {"X-API-Key": ""}, 401, "unauthorized"),
    ],
)
def test_an_admin_check_refuses_anyone_else(
    guard: ApiGuard, headers: dict[str, str], status: int, code: str
) -> None:
    with pytest.raises(HttpError) as caught:
        guard.admin(request(**headers))
    assert (caught.value.status, caught.value.wire_code) == (status, code)
    assert not guard.is_admin(request(**headers))


@pytest.mark.parametrize(
    ("guard", "headers", "principal"),
    [
        (ApiGuard(KEY, None), {}, ANONYMOUS),
        (ApiGuard(KEY, verify), {"X-API-Key": KEY}, API_KEY_ADMIN),
        (ApiGuard(KEY, verify), {"Authorization": "Bearer alice-token"}, ALICE),
        # Without a configured key, a reader's key header is ignored for the token.
        (ApiGuard("", verify), {"X-API-Key": KEY, "Authorization": "Bearer alice-token"}, ALICE),
    ],
)
def test_a_reader_is_anyone_without_jwt_auth_else_the_key_or_a_token(
    guard: ApiGuard, headers: dict[str, str], principal: Principal
) -> None:
    assert guard.reader(request(**headers)) == principal


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"X-API-Key": "wrong", "Authorization": "Bearer alice-token"}, "unauthorized"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "unauthorized"),
        ({"Authorization": "Bearer forged"}, "invalid_token"),
    ],
)
def test_a_reader_without_valid_credentials_is_refused(headers: dict[str, str], code: str) -> None:
    with pytest.raises(HttpError) as caught:
        ApiGuard(KEY, verify).reader(request(**headers))
    assert (caught.value.status, caught.value.wire_code) == (401, code)
