"""/api/v1/endpoints/: FQDNs and who owns them."""

import pytest
from django.utils import timezone

from tests.api.conftest import error_of
from tests.factories import make_endpoint, make_environment

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoints(world):
    world.owner.first_name, world.owner.last_name = "Olga", "Owner"
    world.owner.save()
    dev = make_environment(world.product, name="dev", requested_by=world.owner, cidr="10.80.0.0/24")
    stage = make_environment(world.other_product, name="stage")
    return {
        "app": make_endpoint(dev, "app.dev.payments.sandbox.test"),
        "api": make_endpoint(dev, "api.dev.payments.sandbox.test", kind="api"),
        "stage": make_endpoint(stage, "app.stage.logistics.sandbox.test"),
        "released": make_endpoint(dev, "old.dev.payments.sandbox.test", released_at=timezone.now()),
    }


def fqdns(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["fqdn"] for row in response.json()["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["api.dev.payments.sandbox.test", "app.dev.payments.sandbox.test", "app.stage.logistics.sandbox.test"]),
        ("fqdn=APP.dev.payments.sandbox.test.", ["app.dev.payments.sandbox.test"]),
        ("fqdn=old.dev.payments.sandbox.test", []),
        ("q=stage", ["app.stage.logistics.sandbox.test"]),
        ("include_released=true&q=dev", ["api.dev.payments.sandbox.test", "app.dev.payments.sandbox.test", "old.dev.payments.sandbox.test"]),
    ],
)
def test_the_list_filters(api, endpoints, query, expected):
    assert fqdns(api.stranger.get(f"/api/v1/endpoints/?{query}")) == expected


def test_filter_by_environment(api, endpoints):
    environment = endpoints["stage"].environment_id
    assert fqdns(api.owner.get(f"/api/v1/endpoints/?environment={environment}")) == ["app.stage.logistics.sandbox.test"]


def test_by_fqdn_says_which_environment_owns_it_and_who_asked(api, world, endpoints):
    response = api.stranger.get("/api/v1/endpoints/by-fqdn/App.Dev.Payments.Sandbox.Test./")
    assert response.status_code == 200
    body = response.json()
    assert body["fqdn"] == "app.dev.payments.sandbox.test" and body["url"] == "https://app.dev.payments.sandbox.test/"
    assert body["environment"]["name"] == "dev" and body["environment"]["cidr"] == "10.80.0.0/24"
    assert body["environment"]["account"]["name"] == "payments-sandbox"
    assert body["product"] == {"id": world.product.pk, "slug": "shop", "name": "Shop"}
    assert body["department"] == {"id": world.payments.pk, "slug": "payments", "name": "Payments"}
    assert body["requester"] == {
        "id": world.owner.pk,
        "username": "owner",
        "full_name": "Olga Owner",
        "email": "owner@example.test",
    }


def test_the_list_item_and_by_fqdn_have_the_same_shape(api, endpoints):
    listed = api.owner.get("/api/v1/endpoints/?fqdn=app.dev.payments.sandbox.test").json()["results"][0]
    assert api.owner.get("/api/v1/endpoints/by-fqdn/app.dev.payments.sandbox.test/").json() == listed
    assert api.owner.get(f"/api/v1/endpoints/{listed['id']}/").json() == listed


def test_by_fqdn_of_an_unowned_name_is_404_and_names_the_former_owner(api, endpoints):
    response = api.owner.get("/api/v1/endpoints/by-fqdn/old.dev.payments.sandbox.test/")
    assert response.status_code == 404
    assert "shop/dev" in error_of(response)["message"]
    response = api.owner.get("/api/v1/endpoints/by-fqdn/never.seen.test/")
    assert response.status_code == 404 and error_of(response)["message"] == "No live environment owns never.seen.test."


def test_an_environment_without_requester_has_a_null_requester(api, world):
    make_endpoint(make_environment(world.product, name="seeded"), "seeded.payments.sandbox.test")
    assert api.owner.get("/api/v1/endpoints/by-fqdn/seeded.payments.sandbox.test/").json()["requester"] is None


def test_a_released_endpoint_is_still_found_by_id(api, endpoints):
    body = api.owner.get(f"/api/v1/endpoints/{endpoints['released'].pk}/").json()
    assert body["released_at"] is not None


def test_anonymous_cannot_look_up(api, endpoints):
    assert api.anonymous.get("/api/v1/endpoints/by-fqdn/app.dev.payments.sandbox.test/").status_code == 401


def test_the_list_costs_the_same_queries_at_any_size(api, world, django_assert_max_num_queries):
    for index in range(15):
        make_endpoint(make_environment(world.product, name=f"e{index}", requested_by=world.member))
    api.owner.get("/api/v1/endpoints/?limit=1")
    with django_assert_max_num_queries(3):  # token, count, page
        assert len(api.owner.get("/api/v1/endpoints/?limit=15").json()["results"]) == 15
