"""/api/v1/patterns/: the design-pattern catalog, read-only."""

import pytest

from portal.services.catalog import get_catalog
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db


def test_the_catalog_is_listed_with_pagination(api):
    page = api.stranger.get("/api/v1/patterns/").json()
    assert page["count"] == len(get_catalog())
    assert [row["slug"] for row in page["results"]] == sorted(get_catalog())


def test_a_pattern_shows_its_parameters_schema_endpoints_and_defaults(api):
    pattern = get_catalog()["demo-ecs"]
    body = api.owner.get("/api/v1/patterns/demo-ecs/").json()
    assert body["name"] == pattern.name and body["version"] == pattern.version and body["cloud"] == "none"
    assert body["expected_duration_seconds"] == pattern.expected_duration_seconds
    assert body["parameters"] == pattern.parameters
    assert body["defaults"]["delay_seconds"] == 0
    assert body["endpoints"] == [{"output": "app_fqdn", "kind": "app", "url_output": "app_url"}]


def test_an_unknown_pattern_is_404(api):
    response = api.owner.get("/api/v1/patterns/nope/")
    assert response.status_code == 404 and "nope" in error_of(response)["message"]


def test_patterns_cannot_be_written(api):
    assert api.staff.post("/api/v1/patterns/", {}, format="json").status_code == 405
    assert api.staff.delete("/api/v1/patterns/demo-ecs/").status_code == 405
