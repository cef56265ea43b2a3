"""Authentication (tokens, sessions with CSRF) and the one error shape on every status."""

import pytest
from rest_framework import exceptions
from rest_framework.test import APIClient

from portal.api.errors import exception_handler, flatten
from portal.services import tokens
from portal.services.errors import Conflict, InvalidRequest, NotAllowed
from tests.api.conftest import error_of
from tests.factories import DEFAULT_PASSWORD, make_environment, make_user

pytestmark = pytest.mark.django_db


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/", "/api/v1/environments/", "/api/v1/runs/1/", "/api/v1/endpoints/by-fqdn/x.test/"])
def test_anonymous_gets_401_with_www_authenticate(api, path):
    response = api.anonymous.get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Token realm="api"'
    assert error_of(response)["code"] == "not_authenticated"


@pytest.mark.parametrize("header", ["Token", "Token sbx_wrong", "Token a b", "token sbx_nope"])
def test_a_bad_token_is_401_never_anonymous(world, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/departments/")
    assert response.status_code == 401 and response["WWW-Authenticate"]
    assert error_of(response)["code"] == "authentication_failed"


def test_a_token_of_an_inactive_user_is_refused(world):
    _, key = tokens.create_token(user=world.owner, name="t")
    world.owner.is_active = False
    world.owner.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/departments/").status_code == 401


def test_a_browser_session_reads_but_writes_need_the_csrf_token(world):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="owner", password=DEFAULT_PASSWORD)
    assert client.get("/api/v1/environments/").status_code == 200
    response = client.post("/api/v1/tokens/", {"name": "from the browser"}, format="json")
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "permission_denied" and "CSRF" in error["message"]
    client.get("/login/")  # sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    response = client.post("/api/v1/tokens/", {"name": "from the browser"}, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201


def test_token_requests_need_no_csrf_token(world):
    client = APIClient(enforce_csrf_checks=True)
    _, key = tokens.create_token(user=world.owner, name="t")
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.post("/api/v1/tokens/", {"name": "script"}, format="json").status_code == 201


# --- the error shape, status by status ------------------------------------------------------


def test_400_names_the_fields(api):
    error = error_of(api.staff.post("/api/v1/products/", {"slug": "shop2"}, format="json"))
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"name", "department"}
    assert error["message"] == "department: This field is required. (and 1 more)"


def test_400_for_a_body_that_is_not_json(api):
    response = api.staff.post("/api/v1/products/", "{not json", content_type="application/json")
    assert response.status_code == 400 and error_of(response)["code"] == "parse_error"


def test_403_says_why(api, world):
    response = api.stranger.post("/api/v1/environments/", {"product": "shop", "pattern": "demo-ecs"}, format="json")
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "permission_denied" and "Payments" in error["message"]


def test_404_for_a_missing_object_and_for_an_unknown_path(api):
    response = api.owner.get("/api/v1/environments/999999/")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = api.owner.get("/api/v1/no-such-thing/")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = api.anonymous.get("/api/nothing")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_404_without_the_trailing_slash_suggests_it(api):
    response = api.owner.get("/api/v1/environments")
    assert response.status_code == 404
    assert "/api/v1/environments/" in error_of(response)["message"]


def test_405_for_a_method_the_resource_does_not_have(api):
    response = api.owner.put("/api/v1/runs/", {}, format="json")
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"
    response = api.owner.patch("/api/v1/patterns/demo-ecs/", {}, format="json")
    assert response.status_code == 405


def test_409_for_a_protected_delete(api, world):
    response = api.staff.delete(f"/api/v1/departments/{world.payments.pk}/")
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "protected" and "Shop" in error["message"]


def test_409_for_a_conflicting_request(api, world):
    make_environment(world.product, name="dev")
    response = api.owner.post("/api/v1/environments/", {"product": "shop", "pattern": "demo-ecs", "name": "dev"}, format="json")
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict" and error["fields"] == {"name": [error["message"]]}


def test_415_for_an_unsupported_body(api):
    response = api.staff.post("/api/v1/products/", "x", content_type="text/csv")
    assert response.status_code == 415 and error_of(response)["code"] == "unsupported_media_type"


def test_429_is_in_the_shape_too():
    response = exception_handler(exceptions.Throttled(wait=7), {})
    assert response.status_code == 429 and response["Retry-After"] == "7"
    assert response.data["error"]["code"] == "throttled"


def test_500_is_logged_and_answered_in_the_shape(api, monkeypatch):
    from portal.api import views

    monkeypatch.setattr(views, "get_catalog", lambda: 1 / 0)
    client = api.owner
    client.raise_request_exception = False
    response = client.get("/api/v1/patterns/")
    assert response.status_code == 500 and error_of(response)["code"] == "server_error"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (NotAllowed("no"), 403, "permission_denied"),
        (Conflict("taken", field="name"), 409, "conflict"),
        (InvalidRequest("bad", errors={"param:cpu": "must be one of 256, 512", "name": "bad name"}), 400, "invalid"),
    ],
)
def test_service_errors_map_to_statuses_and_body_paths(exc, status, code):
    response = exception_handler(exc, {})
    assert response.status_code == status and response.data["error"]["code"] == code
    if isinstance(exc, InvalidRequest):
        assert response.data["error"]["fields"] == {"parameters.cpu": ["must be one of 256, 512"], "name": ["bad name"]}


def test_nested_errors_are_flattened_to_dotted_paths():
    fields, general = flatten(
        {"non_field_errors": ["whole request"], "parameters": {"tags": {"x": ["too long"]}}, "items": [{}, {"a": ["no"]}]}
    )
    assert general == ["whole request"]
    assert fields == {"parameters.tags.x": ["too long"], "items.1.a": ["no"]}


def test_a_user_without_departments_still_reads_everything(world):
    lonely = make_user("lonely")
    _, key = tokens.create_token(user=lonely, name="t")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    make_environment(world.product, name="visible")
    assert [row["name"] for row in client.get("/api/v1/environments/").json()["results"]] == ["visible"]
