"""Abuse limits (issue 17): environment requests per user, counted across the API and the
browser, answered with a clear 429 and Retry-After; nothing is created by a throttled request."""

import pytest
from django.core.cache import cache

from portal.models import Environment
from tests.factories import make_account, make_department, make_pool, make_product, make_user

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def limited(monkeypatch):
    """A rate of 2 environment requests per hour, for this test only (monkeypatch puts DRF's
    class-level rates back, so later tests see the configured rate again)."""
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "environment_create": "2/hour"})
    cache.clear()
    department = make_department("payments")
    account = make_account(department, dns_zone="sandbox.example.test")
    make_pool(account, "10.64.0.0/16", prefix_length=24)
    make_product(department, slug="shop")
    yield make_user("owner", departments=[department])
    cache.clear()


def test_the_api_answers_429_with_retry_after_past_the_rate(limited, client, runs_sent_to_workers):
    client.force_login(limited)
    body = {"product": "shop", "pattern": "demo-ecs"}
    answers = [client.post("/api/v1/environments/", body, content_type="application/json") for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert int(answers[2]["Retry-After"]) > 0
    error = answers[2].json()["error"]
    assert error["code"] == "throttled" and "Expected available in" in error["message"], error
    assert Environment.objects.count() == 2
    # Reads and dry runs are not counted.
    assert client.get("/api/v1/environments/").status_code == 200
    assert client.post("/api/v1/environments/preflight/", body, content_type="application/json").status_code == 200


def test_the_browser_and_the_api_share_one_count(limited, client, runs_sent_to_workers):
    client.force_login(limited)
    assert client.post("/api/v1/environments/", {"product": "shop", "pattern": "demo-ecs"},
                       content_type="application/json").status_code == 202
    assert client.post("/api/v1/environments/", {"product": "shop", "pattern": "demo-ecs"},
                       content_type="application/json").status_code == 202
    page = client.post("/environments/new/", {"product": "shop", "pattern": "demo-ecs"})
    assert page.status_code == 429 and int(page["Retry-After"]) > 0
    assert "Try again in" in page.content.decode() and Environment.objects.count() == 2


def test_the_configured_rate_is_back_after_a_limited_test():
    from django.conf import settings
    from rest_framework.throttling import SimpleRateThrottle

    assert SimpleRateThrottle.THROTTLE_RATES["environment_create"] == \
        settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["environment_create"]
