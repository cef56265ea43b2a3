"""Expiry in real Chromium, against the real portal (gunicorn): an environment's page counts
down to its expiry (the page's own script, allowed by its CSP nonce), and its owner extends
it by a day through the form and sees the new expiry. No worker: extending queues nothing,
so the environment is written as a row.

Screenshots go to tests/artifacts/screenshots/ (ignored by git).
"""

from datetime import timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from portal.models import Environment
from tests.factories import DEFAULT_PASSWORD, make_account, make_department, make_environment, make_product, make_user
from tests.web.browser import Screenshots, browser, log_in, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_countdown_ticks_and_the_owner_extends_the_expiry_by_a_day(page, web_server):
    shot = Screenshots("expiry")
    url = str(web_server)
    payments = make_department("payments", name="Payments")
    make_account(payments, name="Local sandbox", dns_zone="sandbox.example.test")
    product = make_product(payments, slug="shop", name="Shop", default_lifetime_hours=8, max_lifetime_hours=240)
    make_user("dev", departments=[payments])
    env = make_environment(product, name="checkout-dev", expires_at=timezone.now() + timedelta(hours=2, minutes=30))
    env.refresh_from_db()
    before = env.expires_at.astimezone(dt_timezone.utc)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    log_in(page, url, "dev", DEFAULT_PASSWORD)
    page.goto(f"{url}/environments/{env.pk}/")
    countdown = page.locator("#expiry-countdown")
    assert page.locator("#expiry-at").inner_text() == f"{before:%Y-%m-%d %H:%M} UTC"
    first = countdown.inner_text()
    assert first.startswith("2h 2") or first.startswith("2h 30m"), first
    # It ticks: the script rewrites it every second (a CSP refusal would leave it as served).
    page.wait_for_function(
        "seen => document.getElementById('expiry-countdown').textContent !== seen", arg=first, timeout=5_000
    )
    assert countdown.inner_text() != first
    limit = (env.created_at + timedelta(hours=240)).astimezone(dt_timezone.utc)
    assert f"it can be extended until {limit:%Y-%m-%d %H:%M} UTC" in page.inner_text("#expiry-limit")
    shot(page, "countdown")

    page.get_by_role("button", name="+1 day").click()
    page.wait_for_selector(".flash__item--success")
    after = Environment.objects.get(pk=env.pk).expires_at.astimezone(dt_timezone.utc)
    assert after == before + timedelta(hours=24)
    assert page.url == f"{url}/environments/{env.pk}/"
    assert page.inner_text(".flash__item--success") == f"shop/checkout-dev now expires at {after:%Y-%m-%d %H:%M} UTC."
    assert page.locator("#expiry-at").inner_text() == f"{after:%Y-%m-%d %H:%M} UTC"
    assert page.locator("#expiry-countdown").inner_text().startswith("1d 02h")
    shot(page, "extended")

    # The list says so too.
    page.goto(f"{url}/?sort=expires")
    assert page.locator(f'tr:has(a[href="/environments/{env.pk}/"]) .expiry-cell').inner_text() == "in 1 day"
    shot(page, "list")
    assert problems == [] and page.external_requests == []
