"""Every problem of a create request at once: the refusal of `POST /api/v1/environments/`
and its dry run `POST /api/v1/environments/preflight/` come from the one pre-flight check."""

import pytest

from portal.models import Environment
from tests.api.conftest import error_of
from tests.factories import make_endpoint, make_environment, make_product

pytestmark = pytest.mark.django_db

CREATE = {"product": "shop", "pattern": "demo-ecs", "name": "dev", "parameters": {"delay_seconds": 3}}


def test_a_bad_name_does_not_hide_the_parameters_problems(api):
    body = {**CREATE, "name": "Bad_Name-", "parameters": {"delay_seconds": 9999, "colour": "red"}}
    response = api.owner.post("/api/v1/environments/", body, format="json")
    assert response.status_code == 400
    fields = error_of(response)["fields"]
    assert set(fields) == {"name", "parameters.delay_seconds", "parameters.colour"}
    assert fields["name"] == ["Use 1-40 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."]
    assert "must match" not in str(fields)  # readable rules, not raw schema patterns
    assert Environment.objects.count() == 0


def test_the_dry_run_answers_what_the_request_would_get_and_writes_nothing(api, world):
    response = api.owner.post("/api/v1/environments/preflight/", CREATE, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True and body["problems"] == {}
    assert body["name"] == "dev" and body["account"]["account_id"] == world.account.account_id
    assert body["fqdns"] == ["app-dev.payments.sandbox.test"]
    assert body["queue"] == {"running": 0, "queued": 0, "slots": 2}
    assert body["free_networks"] == 256
    assert Environment.objects.count() == 0


def test_the_dry_run_lists_every_problem_at_once(api, world):
    make_environment(world.product, name="dev")
    body = {**CREATE, "parameters": {"delay_seconds": -1, "fail_on": "nowhere"}}
    response = api.owner.post("/api/v1/environments/preflight/", body, format="json")
    assert response.status_code == 200
    answer = response.json()
    assert answer["ok"] is False
    assert set(answer["problems"]) == {"name", "parameters.delay_seconds", "parameters.fail_on"}
    assert "already" in answer["problems"]["name"][0]


def test_an_fqdn_another_products_environment_holds_is_refused_before_anything_is_written(api, world):
    cart = make_product(world.payments, slug="cart", name="Cart")
    holder = make_environment(cart, name="dev", account=world.account)
    make_endpoint(holder, "app-dev.payments.sandbox.test")

    dry = api.owner.post("/api/v1/environments/preflight/", CREATE, format="json").json()
    assert dry["ok"] is False and set(dry["problems"]) == {"fqdn"}
    assert "app-dev.payments.sandbox.test already belongs to cart/dev" in dry["problems"]["fqdn"][0]

    response = api.owner.post("/api/v1/environments/", CREATE, format="json")
    assert response.status_code == 409
    assert set(error_of(response)["fields"]) == {"fqdn"}
    assert Environment.objects.filter(product__slug="shop").count() == 0
    # Another application name gives another FQDN, which is free.
    other = {**CREATE, "parameters": {"app_name": "shop"}}
    assert api.owner.post("/api/v1/environments/preflight/", other, format="json").json()["ok"] is True


def test_strangers_get_no_dry_run(api):
    assert api.stranger.post("/api/v1/environments/preflight/", CREATE, format="json").status_code == 403
    assert api.anonymous.post("/api/v1/environments/preflight/", CREATE, format="json").status_code == 401
