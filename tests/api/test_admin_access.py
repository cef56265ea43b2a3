"""Admin of API tokens (read-only, revoke action) and idempotency records (read-only)."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from portal.models import ApiToken, IdempotencyRecord
from portal.services import tokens
from tests.factories import make_superuser, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(make_superuser())
    return client


@pytest.fixture
def token(db):
    return tokens.create_token(user=make_user("holder"), name="CI pipeline")[0]


def test_the_token_pages_render_without_the_hash(admin_client, token):
    listing = admin_client.get(reverse("admin:portal_apitoken_changelist")).content.decode()
    assert "CI pipeline" in listing and token.prefix in listing
    page = admin_client.get(reverse("admin:portal_apitoken_change", args=[token.pk])).content.decode()
    assert token.prefix in page and token.key_hash not in page


def test_tokens_cannot_be_added_edited_or_deleted_here(admin_client, token):
    assert admin_client.get(reverse("admin:portal_apitoken_add")).status_code == 403
    assert admin_client.post(reverse("admin:portal_apitoken_change", args=[token.pk]), {"name": "x"}).status_code == 403
    assert admin_client.post(reverse("admin:portal_apitoken_delete", args=[token.pk]), {"post": "yes"}).status_code == 403
    assert ApiToken.objects.get(pk=token.pk).name == "CI pipeline"


def test_the_revoke_action_goes_through_the_token_service(admin_client, token):
    other = tokens.create_token(user=token.user, name="laptop")[0]
    response = admin_client.post(
        reverse("admin:portal_apitoken_changelist"),
        {"action": "revoke_action", ACTION_CHECKBOX_NAME: [token.pk, other.pk]},
        follow=True,
    )
    assert "Revoked 2 token(s)" in response.content.decode()
    assert all(t.revoked_at is not None for t in ApiToken.objects.all())


def test_idempotency_records_are_shown_read_only(admin_client, token):
    record = IdempotencyRecord.objects.create(
        user=token.user, key="abc-123", method="POST", path="/api/v1/environments/", request_hash="0" * 64,
        response_status=202, response_body={"environment": {"id": 1}},
    )
    assert "abc-123" in admin_client.get(reverse("admin:portal_idempotencyrecord_changelist")).content.decode()
    page = admin_client.get(reverse("admin:portal_idempotencyrecord_change", args=[record.pk])).content.decode()
    assert "&quot;environment&quot;" in page
    assert admin_client.get(reverse("admin:portal_idempotencyrecord_add")).status_code == 403
    assert admin_client.post(reverse("admin:portal_idempotencyrecord_delete", args=[record.pk]), {"post": "yes"}).status_code == 403
