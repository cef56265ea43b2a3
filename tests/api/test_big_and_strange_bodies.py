"""Bodies that used to get a 500 (issue 12): over Django's upload limit, a bare number as a
PATCH body. Each must get a 4xx in the one error shape and change nothing."""

import json

import pytest

from portal.models import Environment, Product
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db


def test_a_body_over_the_upload_limit_gets_413_in_the_error_shape(api, world, settings):
    big = json.dumps({"product": world.product.slug, "pattern": "demo-ecs",
                      "parameters": {"note": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)}})
    response = api.owner.post("/api/v1/environments/", big, content_type="application/json")
    assert response.status_code == 413, response.content[:300]
    error = error_of(response)
    assert error["code"] == "too_large" and str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in error["message"]
    assert not Environment.objects.exists()


@pytest.mark.parametrize("body", ["5", "[1, 2]", '"text"', "null"])
def test_a_patch_body_that_is_not_an_object_gets_400(api, world, body):
    response = api.staff.patch(f"/api/v1/products/{world.product.pk}/", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert error_of(response)["code"] == "invalid"
    assert Product.objects.get(pk=world.product.pk).name == "Shop"
