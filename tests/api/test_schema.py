"""/api/schema/ (OpenAPI 3) and /api/docs/ (Swagger UI served from local assets)."""

import pytest
import yaml
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

OPERATIONS_WITH_BODY_AND_202 = [
    ("/api/v1/environments/", "post"),
    ("/api/v1/environments/{id}/", "delete"),
    ("/api/v1/environments/{id}/retry/", "post"),
]


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_the_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)


def test_every_resource_is_documented(schema):
    paths = set(schema["paths"])
    for path in [
        "/api/v1/departments/", "/api/v1/accounts/{id}/", "/api/v1/products/", "/api/v1/patterns/{slug}/",
        "/api/v1/environments/", "/api/v1/environments/{id}/retry/", "/api/v1/runs/{id}/events/",
        "/api/v1/runs/{id}/cancel/", "/api/v1/endpoints/by-fqdn/{fqdn}/", "/api/v1/tokens/{id}/",
    ]:
        assert path in paths, path


@pytest.mark.parametrize(("path", "method"), OPERATIONS_WITH_BODY_AND_202)
def test_requests_that_start_work_answer_202_and_take_an_idempotency_key(schema, path, method):
    operation = schema["paths"][path][method]
    assert "202" in operation["responses"]
    ref = operation["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/EnvironmentRequestResult")
    assert "Idempotency-Key" in [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
    assert {"400", "401", "403", "409", "422"} <= set(operation["responses"])


def test_every_operation_documents_the_error_shape(schema):
    error_ref = "#/components/schemas/Error"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "401" in responses, (method, path)
            assert responses["401"]["content"]["application/json"]["schema"]["$ref"] == error_ref
            if "{" in path:
                assert "404" in responses, (method, path)
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["properties"]) == {"code", "message", "fields"}


def test_token_authentication_is_a_security_scheme(schema):
    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "A personal API token: `Token sbx_...`.",
    }


def test_lists_document_their_filters_and_pagination(schema):
    parameters = {p["name"] for p in schema["paths"]["/api/v1/environments/"]["get"]["parameters"]}
    assert {"q", "department", "product", "pattern", "account", "status", "fqdn", "include_deleted", "limit", "offset"} <= parameters
    page = schema["components"]["schemas"]["PaginatedEnvironmentList"]
    assert {"count", "next", "previous", "results"} <= set(page["properties"])


def test_the_docs_page_uses_local_assets_only(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200
