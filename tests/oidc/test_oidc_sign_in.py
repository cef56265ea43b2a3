"""Sign-in with OpenID Connect against a real provider (node-oidc-provider, tests/oidc/conftest.py):
users made at the first sign-in, departments and staff following the groups on every sign-in,
and ID tokens the provider did not issue, or no longer vouches for, refused by the library's
real validation (PyJWT under mozilla-django-oidc), never by a stand-in."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model

from portal.services import tokens
from tests.factories import make_department, make_user
from tests.oidc.conftest import CLIENT_ID, KEY_ID, STAFF_GROUP, new_rsa_key, sign_in

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def departments(db):
    return {"payments": make_department("payments", name="Payments"), "data": make_department("data", name="Data"),
            "ops": make_department("ops", name="Ops")}


def signed_in_username(client):
    user = client.get("/").wsgi_request.user
    return user.username if user.is_authenticated else None


def member_of(username):
    return set(User.objects.get(username=username).departments.values_list("slug", flat=True))


def test_the_first_sign_in_creates_the_user_in_the_department_of_the_group(client, oidc_settings, oidc_provider, departments):
    oidc_provider.set_user("alice", groups=["sandbox-payments", "unrelated-group"])

    response = sign_in(client, oidc_provider, "alice", next_url="/fleet/")

    assert response.status_code == 302 and response["Location"] == "/fleet/"
    alice = User.objects.get(username="alice")
    assert alice.email == "alice@corp.example.test"
    assert not alice.has_usable_password() and not alice.is_staff and not alice.is_superuser
    assert member_of("alice") == {"payments"}
    assert signed_in_username(client) == "alice"
    assert client.get("/").status_code == 200


def test_removing_the_group_removes_the_membership_at_the_next_sign_in(client, oidc_settings, oidc_provider, departments):
    oidc_provider.set_user("bob", groups=["sandbox-payments", "sandbox-data"])
    sign_in(client, oidc_provider, "bob")
    assert member_of("bob") == {"payments", "data"}
    # A membership the admin gave in a department the mapping does not name is the admin's.
    departments["ops"].members.add(User.objects.get(username="bob"))
    client.logout()

    oidc_provider.set_user("bob", groups=["sandbox-data"])
    response = sign_in(client, oidc_provider, "bob")

    assert response.status_code == 302 and response["Location"] == "/"
    assert member_of("bob") == {"data", "ops"}
    assert User.objects.filter(username="bob").count() == 1

    oidc_provider.set_user("bob", groups=[])
    sign_in(client, oidc_provider, "bob")
    assert member_of("bob") == {"ops"}


def test_the_staff_group_gives_staff_and_removing_it_takes_staff_away(client, oidc_settings, oidc_provider, departments):
    oidc_provider.set_user("carol", groups=[STAFF_GROUP])
    sign_in(client, oidc_provider, "carol")
    assert User.objects.get(username="carol").is_staff
    assert client.get("/admin/").status_code == 200  # staff may open the admin
    client.logout()

    oidc_provider.set_user("carol", groups=["sandbox-payments"])
    sign_in(client, oidc_provider, "carol")

    carol = User.objects.get(username="carol")
    assert not carol.is_staff and not carol.is_superuser
    assert client.get("/admin/").status_code == 302  # sent to the admin's login


def test_a_local_account_with_a_password_is_never_taken_over_by_the_provider(client, oidc_settings, oidc_provider, departments):
    make_user("admin", is_staff=True, is_superuser=True)
    oidc_provider.set_user("admin", groups=["sandbox-payments"])

    response = sign_in(client, oidc_provider, "admin")

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert signed_in_username(client) is None
    page = client.get("/login/").content.decode()
    assert "Sign-in with Test IdP failed" in page and "is a local account with a password" in page
    assert member_of("admin") == set()


def _resign(token: str, key, **changes) -> str:
    """The provider's ID token with `changes` to its claims, signed with `key` under the
    provider's key id."""
    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": KEY_ID})


def test_an_id_token_resigned_with_the_providers_own_key_is_accepted(client, token_tamperer, oidc_provider, departments):
    """The control for the refusals below: the tampering harness alone breaks nothing."""
    oidc_provider.set_user("dave", groups=["sandbox-payments"])
    token_tamperer.tamper = lambda token: _resign(token, oidc_provider.key)

    response = sign_in(client, oidc_provider, "dave")

    assert token_tamperer.exchanges == 1
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_username(client) == "dave"


@pytest.mark.parametrize(("case", "reason"), [
    ("forged", "JWS token verification failed"),
    ("expired", "Signature has expired"),
    ("other audience", "issued for another application"),
])
def test_a_forged_expired_or_misaddressed_id_token_is_refused(client, token_tamperer, oidc_provider, departments, case, reason):
    oidc_provider.set_user("mallory", groups=["sandbox-payments", STAFF_GROUP])
    now = int(time.time())
    token_tamperer.tamper = {
        # Same claims, same key id, another key: only the signature can tell.
        "forged": lambda token: _resign(token, new_rsa_key()),
        # Signed with the provider's real key, but its time is over.
        "expired": lambda token: _resign(token, oidc_provider.key, iat=now - 3600, exp=now - 60),
        # Signed with the real key for another application of the same provider.
        "other audience": lambda token: _resign(token, oidc_provider.key, aud="another-application"),
    }[case]

    response = sign_in(client, oidc_provider, "mallory")

    assert token_tamperer.exchanges == 1
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert signed_in_username(client) is None
    assert not User.objects.filter(username="mallory").exists()
    assert reason in client.get("/login/").content.decode()


def test_the_login_page_offers_the_provider_only_when_one_is_configured(client, settings, oidc_provider, db):
    page = client.get("/login/").content.decode()
    assert "Sign in with" not in page and 'name="password"' in page
    assert client.get("/oidc/authenticate/").status_code == 404

    from tests.oidc.conftest import apply_provider_settings

    apply_provider_settings(settings, oidc_provider)
    page = client.get("/login/").content.decode()
    assert "Sign in with Test IdP" in page and 'name="password"' in page
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302 and start["Location"].startswith(oidc_provider.discovery["authorization_endpoint"])
    assert f"client_id={CLIENT_ID}" in start["Location"] and "code_challenge=" in start["Location"]


def test_api_tokens_keep_working_for_a_user_who_signs_in_with_the_provider(client, oidc_settings, oidc_provider, departments):
    oidc_settings.PORTAL_LOCAL_LOGIN = False
    oidc_provider.set_user("erin", groups=["sandbox-payments"])
    sign_in(client, oidc_provider, "erin")
    _token, key = tokens.create_token(user=User.objects.get(username="erin"), name="CI pipeline")

    from rest_framework.test import APIClient

    machine = APIClient()
    response = machine.get("/api/v1/environments/", HTTP_AUTHORIZATION=f"Token {key}")

    assert response.status_code == 200, response.content


def test_a_deactivated_user_is_not_signed_in_and_is_told_why(client, oidc_settings, oidc_provider, departments):
    oidc_provider.set_user("frank", groups=["sandbox-payments"])
    sign_in(client, oidc_provider, "frank")
    client.logout()
    User.objects.filter(username="frank").update(is_active=False)

    response = sign_in(client, oidc_provider, "frank")

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert signed_in_username(client) is None
    assert "your portal account is deactivated" in client.get("/login/").content.decode()
