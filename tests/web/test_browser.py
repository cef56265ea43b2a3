"""The browser UI in real Chromium against the real portal (gunicorn) and a real Celery worker
running real Terraform: create, watch live, delete; and a failed apply that is rolled back.

Screenshots of every step go to tests/artifacts/screenshots/ (ignored by git).
"""

import json
import time

import pytest

from portal.models import Environment, Run
from tests.factories import DEFAULT_PASSWORD, make_account, make_department, make_pool, make_product, make_user
from tests.web.browser import NavigationCounter, RequestRecorder, Screenshots, browser, log_in, page  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIVE_PATH = r"^/runs/\d+/live/$"
FINISHED = 180_000  # ms: a create with an 8 s apply, on a busy machine


@pytest.fixture
def portal(web_server, celery_worker):
    """A department with a local sandbox account, a product, and a developer who may use it."""
    department = make_department("payments", name="Payments")
    account = make_account(department, name="Local sandbox", dns_zone="sandbox.example.test", max_concurrent_runs=2)
    make_pool(account, "10.70.0.0/16", prefix_length=24)
    product = make_product(department, slug="shop", name="Shop")
    make_user("dev", departments=[department])
    return {"url": str(web_server), "product": product, "account": account}


def request_environment(page, portal, *, name, delay, fail_on=""):
    page.get_by_role("link", name="New environment").first.click()
    page.wait_for_url(f"{portal['url']}/environments/new/")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Delay (seconds)").fill(str(delay))
    page.get_by_label("Tags").fill("team=payments\nowner=dev")
    if fail_on:
        page.get_by_label("Fail on create of").select_option(fail_on)


def progress_value(page) -> float:
    return page.eval_on_selector("#run-progress", "p => p.hasAttribute('value') ? p.value : -1")


def log_lines(page) -> int:
    return page.locator("#run-log .log-line").count()


def test_create_watch_live_and_delete_an_environment(page, portal):
    shot = Screenshots("create-delete")
    url = portal["url"]
    log_in(page, url, "dev", DEFAULT_PASSWORD)
    shot(page, "environments-empty")

    request_environment(page, portal, name="web-demo", delay=8)
    page.wait_for_selector("#preflight >> text=The name is free in Shop.")
    shot(page, "create-form")
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_url(f"{url}/runs/*/")
    run = Run.objects.get(environment__name="web-demo")
    assert page.url == f"{url}/runs/{run.pk}/"

    # From here on the page must never navigate again: everything arrives by polling.
    navigations = NavigationCounter(page)
    navigations.reset(1)  # the arrival on the run page
    recorder = RequestRecorder(page, LIVE_PATH)
    page.evaluate("window.__sameDocument = true")

    page.wait_for_function("() => { const p = document.querySelector('#run-progress'); return p.hasAttribute('value') && p.value > 0; }", timeout=FINISHED)
    first_value, first_lines = progress_value(page), log_lines(page)
    shot(page, "run-applying")

    # Measure the polling cost while the apply is going on.
    window_start = time.monotonic()
    page.wait_for_timeout(5_000)
    window_end = time.monotonic()
    polls = recorder.count_between(window_start, window_end)
    assert 3 <= polls <= 6, f"{polls} poll requests in 5 s (expected about one per second)"

    page.wait_for_function(
        "v => { const p = document.querySelector('#run-progress'); return p.value > v; }", arg=first_value, timeout=FINISHED
    )
    assert progress_value(page) > first_value
    assert log_lines(page) > first_lines

    page.wait_for_selector('[data-bind="run-status"] [data-status="succeeded"]', timeout=FINISHED)
    page.wait_for_selector('[data-bind="env-status"] [data-status="ready"]')
    fqdn_link = page.get_by_role("link", name="app-web-demo.sandbox.example.test")
    assert fqdn_link.get_attribute("href") == "https://app-web-demo.sandbox.example.test/"
    assert progress_value(page) == page.eval_on_selector("#run-progress", "p => p.max") == 7
    assert page.locator('.stage--done').count() == 7
    assert "Apply complete! Resources: 7 added" in page.inner_text("#run-log")
    assert page.locator('[data-bind="plan"] tbody tr').count() == 7  # the plan table arrived live
    assert navigations.count == 1 and page.evaluate("window.__sameDocument") is True
    shot(page, "run-ready")

    # Polling stopped once the run had finished; answers with nothing new were small.
    settled = len(recorder.requests)
    page.wait_for_timeout(2_500)
    assert len(recorder.requests) == settled, "the page kept polling a finished run"
    idle_sizes = []
    for response in recorder.responses:
        body = response.body()
        if not json.loads(body)["events"]:
            idle_sizes.append(len(body))
    assert idle_sizes and max(idle_sizes) < 20_000, idle_sizes
    print(f"\npolls in 5 s: {polls}; idle answers: {min(idle_sizes)}-{max(idle_sizes)} bytes; total polls: {settled}")

    # The environment page: ready, with its FQDN, outputs and run history.
    page.get_by_role("link", name="shop/web-demo").first.click()
    page.wait_for_selector("text=Run history")
    assert page.get_by_role("link", name="app-web-demo.sandbox.example.test").is_visible()
    shot(page, "environment-ready")

    # Delete: a wrong name is refused with a message, the right one starts the destroy.
    page.get_by_label("Type web-demo to confirm").fill("web-dem")
    page.get_by_role("button", name="Delete web-demo").click()
    page.wait_for_selector("text=That is not the name of this environment")
    assert Environment.objects.get(name="web-demo").status == "ready"
    shot(page, "delete-wrong-name")
    page.get_by_label("Type web-demo to confirm").fill("web-demo")
    page.get_by_role("button", name="Delete web-demo").click()
    page.wait_for_url(f"{url}/runs/*/")
    page.wait_for_selector('[data-bind="run-status"] [data-status="succeeded"]', timeout=FINISHED)
    page.wait_for_selector('[data-bind="env-status"] [data-status="deleted"]')
    assert page.locator(".stage--done").count() == 5
    shot(page, "destroy-done")

    page.get_by_role("link", name="shop/web-demo").first.click()
    page.wait_for_selector(".pagehead [data-status='deleted']")
    shot(page, "environment-deleted")

    page.get_by_role("link", name="Environments", exact=True).first.click()
    page.get_by_label("Include deleted").check()
    page.get_by_role("button", name="Filter").click()
    page.wait_for_selector("td >> text=web-demo")
    shot(page, "environments-with-deleted")
    assert page.external_requests == []


def test_a_failed_apply_shows_the_rollback(page, portal):
    shot = Screenshots("rollback")
    url = portal["url"]
    log_in(page, url, "dev", DEFAULT_PASSWORD)
    request_environment(page, portal, name="drill", delay=2, fail_on="service")
    shot(page, "create-form-drill")
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_url(f"{url}/runs/*/")
    create = Run.objects.get(environment__name="drill", kind="create")
    navigations = NavigationCounter(page)
    navigations.reset(1)

    page.wait_for_selector('[data-bind="rollback"]:not([hidden])', timeout=FINISHED)
    shot(page, "rollback-running")
    page.wait_for_selector('[data-bind="rollback-status"] [data-status="succeeded"]', timeout=FINISHED)
    page.wait_for_selector('[data-bind="env-status"] [data-status="failed"]')
    rollback = Run.objects.get(rollback_of=create)
    assert page.get_by_role("link", name=f"#{rollback.pk}").get_attribute("href") == f"/runs/{rollback.pk}/"
    assert page.locator('[data-bind="run-status"] [data-status="failed"]').is_visible()
    assert page.locator('.stage--failed[data-step="apply"]').count() == 1
    assert "fail_on=service" in page.inner_text('[data-bind="explanation"]')
    assert "rolled back" in page.inner_text('[data-bind="env-reason"]')
    assert navigations.count == 1
    shot(page, "create-failed-rolled-back")

    page.get_by_role("link", name=f"#{rollback.pk}").click()
    page.wait_for_url(f"{url}/runs/{rollback.pk}/")
    assert page.get_by_role("link", name=f"create run #{create.pk}").is_visible()
    assert page.locator(".stage--done").count() == 4
    shot(page, "rollback-run")

    page.get_by_role("link", name="shop/drill").first.click()
    page.wait_for_selector(".pagehead [data-status='failed']")
    assert page.get_by_role("link", name=f"rolled back by #{rollback.pk}").is_visible()
    shot(page, "environment-failed")

    # A narrow screen: the same run page stays usable.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{url}/runs/{create.pk}/")
    shot(page, "run-page-mobile")
    assert page.external_requests == []
