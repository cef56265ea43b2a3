"""Fixtures of the API tests: the shared permission world, and an API client per person of it
authenticated the way scripts do (a real token in `Authorization: Token <key>`)."""

import pytest
from rest_framework.test import APIClient

from portal.services import tokens
from tests.world import world  # noqa: F401  (the shared owner/member/stranger/staff fixture)

ROLES = ("owner", "member", "stranger", "staff")


def token_client(user) -> APIClient:
    """An APIClient sending a freshly created token of `user` (None = anonymous)."""
    client = APIClient()
    if user is not None:
        _, key = tokens.create_token(user=user, name="tests")
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def api(world):  # noqa: F811
    """`api.owner`, `api.member`, `api.stranger`, `api.staff`, `api.anonymous`: clients."""

    class Clients:
        anonymous = token_client(None)

    for role in ROLES:
        setattr(Clients, role, token_client(getattr(world, role)))
    return Clients


def error_of(response) -> dict:
    """The `error` object of an error response, after checking the one shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    assert all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in error["fields"].values())
    return error
