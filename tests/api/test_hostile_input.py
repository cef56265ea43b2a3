"""Inputs that once crashed the database driver (found by the schemathesis run) are 400s."""

import pytest

from portal.models import Environment, SandboxAccount
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/endpoints/", "/api/v1/runs/"])
@pytest.mark.parametrize("value", ["-6.07e+291", "1e300", "9223372036854775808", "1.5", "0"])
def test_an_id_filter_out_of_range_is_a_400(api, path, value):
    response = api.owner.get(path, {"environment": value})
    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"environment"}


def test_a_nul_in_a_reference_is_a_400(api):
    response = api.staff.post("/api/v1/products/", {"department": "pay\x00ments", "slug": "x", "name": "X"}, format="json")
    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"department"}
    response = api.owner.post("/api/v1/environments/", {"product": "sh\x00op", "pattern": "demo-ecs"}, format="json")
    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"product"}


@pytest.mark.parametrize("note", ["a\\u0000b", "\\ud800"])
def test_a_nul_or_lone_surrogate_in_parameters_is_a_400(api, note):
    body = '{"product": "shop", "pattern": "demo-ecs", "parameters": {"note": "%s"}}' % note
    response = api.owner.post("/api/v1/environments/", body, content_type="application/json")
    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"parameters.note"}
    assert not Environment.objects.exists()


def test_a_nul_in_a_json_field_of_an_account_is_a_400(api, world):
    response = api.staff.patch(
        f"/api/v1/accounts/{world.account.pk}/", {"shared_infrastructure": {"vpc_id": "vpc-\x00"}}, format="json"
    )
    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"shared_infrastructure.vpc_id"}


def test_form_data_is_refused_the_api_speaks_json_only(api, world):
    # Form encodings made every value a string and every empty field "" (issue 12: the schema
    # could not describe what they accepted); the API now takes JSON only, as documented.
    response = api.staff.patch(f"/api/v1/accounts/{world.account.pk}/", {"shared_infrastructure": "null"}, format="multipart")
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"
    assert SandboxAccount.objects.get(pk=world.account.pk).shared_infrastructure == {}


def test_a_nul_in_an_fqdn_path_is_a_400(api):
    response = api.owner.get("/api/v1/endpoints/by-fqdn/a%00b.test/")
    assert response.status_code == 400 and set(error_of(response)["fields"]) == {"fqdn"}
