"""What schemathesis found the API accepting against its own schema (issue 12), one by one:
the API refuses what the schema refuses, and the schema states what the API enforces."""

import pytest

from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("query, field", [
    ("offset=1&offset=2", "offset"),
    ("limit=1&limit=2", "limit"),
    ("limit=abc", "limit"),
    ("limit=0", "limit"),
    ("limit=1001", "limit"),
    ("offset=-1", "offset"),
    ("include_deleted=AAA", "include_deleted"),
    ("include_deleted=", "include_deleted"),
])
def test_environment_list_refuses_strange_query_parameters(api, query, field):
    response = api.owner.get(f"/api/v1/environments/?{query}")
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]


def test_a_list_filter_may_repeat(api):
    assert api.owner.get("/api/v1/environments/?status=ready&status=failed").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/accounts/?kind=", "/api/v1/accounts/?is_active=", "/api/v1/runs/?environment="])
def test_an_empty_typed_filter_is_refused_not_ignored(api, path):
    assert api.staff.get(path).status_code == 400


@pytest.mark.parametrize("body, field", [
    ({"slug": "ops", "name": "Ops", "members": {}}, "members"),
    ({"slug": "ops", "name": 0}, "name"),
    ({"slug": 5, "name": "Ops"}, "slug"),
])
def test_wrongly_typed_bodies_are_refused(api, body, field):
    response = api.staff.post("/api/v1/departments/", body, format="json")
    assert response.status_code == 400 and field in error_of(response)["fields"], response.content


def test_the_schema_states_what_the_api_enforces(client):
    schema = client.get("/api/schema/?format=json").json()
    create = schema["paths"]["/api/v1/environments/"]["post"]
    (key,) = [p for p in create["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["schema"]["pattern"] == "^[!-~]{1,255}$"
    runs = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/runs/"]["get"]["parameters"]}
    assert runs["environment"]["minimum"] == 1 and runs["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    components = schema["components"]["schemas"]
    assert "format" not in components["Person"]["properties"]["email"]  # users may have no e-mail
    department = components["DepartmentRequest"]["properties"]
    assert department["slug"]["minLength"] == 1 and department["slug"]["pattern"].startswith("^[a-z]")
    assert set(create["requestBody"]["content"]) == {"application/json"}
