"""API tokens: the service (shared with the browser UI and the admin) and /api/v1/tokens/."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from portal.models import ApiToken
from portal.services import tokens
from portal.services.errors import InvalidRequest, NotAllowed
from tests.api.conftest import error_of, token_client

pytestmark = pytest.mark.django_db


# --- the service ----------------------------------------------------------------------------


def test_it_stores_only_the_hash_and_a_recognisable_prefix(world):
    token, key = tokens.create_token(user=world.owner, name="  CI pipeline ")
    assert key.startswith("sbx_") and len(key) > 40
    token.refresh_from_db()
    assert token.name == "CI pipeline"
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert token.prefix == key[:8]
    assert key not in {token.name, token.prefix, token.key_hash}


def test_every_key_is_different(world):
    keys = {tokens.create_token(user=world.owner, name=f"t{i}")[1] for i in range(20)}
    assert len(keys) == 20


@pytest.mark.parametrize(
    ("name", "expires_in", "field"),
    [("", None, "name"), ("   ", None, "name"), ("x" * 101, None, "name"), ("ok", timedelta(seconds=-1), "expires_at")],
)
def test_it_refuses_a_bad_name_or_a_past_expiry(world, name, expires_in, field):
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    with pytest.raises(InvalidRequest) as caught:
        tokens.create_token(user=world.owner, name=name, expires_at=expires_at)
    assert caught.value.field == field and field in caught.value.errors
    assert ApiToken.objects.count() == 0


def test_owners_revoke_their_own_tokens_and_staff_anyones(world):
    own, _ = tokens.create_token(user=world.owner, name="own")
    other, _ = tokens.create_token(user=world.member, name="member's")
    assert tokens.revoke_token(user=world.owner, token_id=own.pk).revoked_at is not None
    with pytest.raises(NotAllowed):
        tokens.revoke_token(user=world.owner, token_id=other.pk)
    assert tokens.revoke_token(user=world.staff, token_id=other.pk).revoked_at is not None
    with pytest.raises(InvalidRequest):
        tokens.revoke_token(user=world.owner, token_id=999999)


def test_revoking_twice_keeps_the_first_time(world):
    token, _ = tokens.create_token(user=world.owner, name="t")
    first = tokens.revoke_token(user=world.owner, token_id=token.pk).revoked_at
    assert tokens.revoke_token(user=world.owner, token_id=token.pk).revoked_at == first


def test_list_tokens_shows_only_the_users_own(world):
    tokens.create_token(user=world.owner, name="a")
    tokens.create_token(user=world.member, name="b")
    assert [t.name for t in tokens.list_tokens(world.owner)] == ["a"]


# --- the API --------------------------------------------------------------------------------


def test_post_returns_the_key_once_and_it_works(api, world):
    response = api.owner.post("/api/v1/tokens/", {"name": "laptop"}, format="json")
    assert response.status_code == 201
    created = response.json()
    assert created["key"].startswith("sbx_") and created["prefix"] == created["key"][:8] and created["is_usable"]
    listed = api.owner.get("/api/v1/tokens/").json()
    assert "key" not in listed["results"][0]
    assert {row["name"] for row in listed["results"]} == {"tests", "laptop"}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {created['key']}")
    assert client.get("/api/v1/tokens/").status_code == 200


def test_post_refuses_a_blank_name_in_the_error_shape(api):
    error = error_of(api.owner.post("/api/v1/tokens/", {"name": " "}, format="json"))
    assert error["code"] == "invalid" and "name" in error["fields"]


def test_users_see_and_revoke_only_their_own_tokens(api, world):
    mine = api.member.post("/api/v1/tokens/", {"name": "mine"}, format="json").json()
    assert mine["id"] not in [row["id"] for row in api.owner.get("/api/v1/tokens/").json()["results"]]
    assert api.owner.get(f"/api/v1/tokens/{mine['id']}/").status_code == 404
    assert api.owner.delete(f"/api/v1/tokens/{mine['id']}/").status_code == 404
    assert ApiToken.objects.get(pk=mine["id"]).revoked_at is None


def test_delete_revokes_and_the_key_stops_working(api):
    created = api.owner.post("/api/v1/tokens/", {"name": "short-lived"}, format="json").json()
    response = api.owner.delete(f"/api/v1/tokens/{created['id']}/")
    assert response.status_code == 200 and response.json()["revoked_at"] and not response.json()["is_usable"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {created['key']}")
    response = client.get("/api/v1/tokens/")
    assert response.status_code == 401 and error_of(response)["code"] == "authentication_failed"


def test_a_token_can_expire(api, world):
    token, key = tokens.create_token(user=world.owner, name="t", expires_at=timezone.now() + timedelta(hours=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/departments/").status_code == 401


def test_anonymous_cannot_use_the_tokens_api(api):
    assert api.anonymous.get("/api/v1/tokens/").status_code == 401
    assert api.anonymous.post("/api/v1/tokens/", {"name": "x"}, format="json").status_code == 401


def test_last_used_is_recorded_without_a_write_per_request(world, django_assert_num_queries):
    client = token_client(world.owner)
    client.get("/api/v1/tokens/")
    token = ApiToken.objects.get(user=world.owner)
    assert token.last_used_at is not None
    # token lookup + count + page: no UPDATE within the same minute
    with django_assert_num_queries(3):
        client.get("/api/v1/tokens/")
