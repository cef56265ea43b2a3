"""First-hour snags: what a new user hits in the browser UI before anything else."""

import html
import re

import pytest
from django.urls import reverse

from portal.models import EnvironmentStatus, ListenerPriority, ReaperPass
from portal.services import tokens as token_service
from tests.factories import make_environment
from tests.world import world  # noqa: F401

pytestmark = pytest.mark.django_db


def test_the_token_page_shows_the_header_the_api_accepts(client, world):
    client.force_login(world.owner)
    page = client.get(reverse("token-list")).content.decode()
    match = re.search(r"<code data-auth-header>Authorization: (.+?)</code>", page)
    assert match, "the token page shows no Authorization header"
    _, key = token_service.create_token(user=world.owner, name="ci")
    header = html.unescape(match.group(1)).replace("<key>", key)

    anonymous = client.__class__()
    assert anonymous.get("/api/v1/environments/", HTTP_AUTHORIZATION=header).status_code == 200
    assert anonymous.get("/api/v1/environments/").status_code in (401, 403)


def test_get_on_the_delete_url_goes_to_the_environment_page(client, world):
    env = make_environment(world.product)
    client.force_login(world.owner)
    response = client.get(reverse("environment-delete", args=[env.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("environment-detail", args=[env.pk])


def test_the_delete_url_still_needs_a_login(client, world):
    env = make_environment(world.product)
    response = client.get(reverse("environment-delete", args=[env.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_filter_bar_shows_when_no_live_environment_is_listed(client, world):
    make_environment(world.product, status=EnvironmentStatus.DELETED)
    client.force_login(world.owner)
    page = client.get(reverse("home")).content.decode()
    assert "No environments yet" in page
    assert re.search(r'<input[^>]+name="include_deleted"', page)


def test_favicon_ico_redirects_to_the_svg(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"].endswith("favicon.svg")


def test_model_plurals_read_as_english():
    assert ListenerPriority._meta.verbose_name_plural == "listener priorities"
    assert ReaperPass._meta.verbose_name_plural == "reaper passes"
