"""The browser UI in real Chromium against the real portal (gunicorn) and a real Celery worker
running real Terraform: create, watch live, delete. (The live run page in detail, and a failed
apply rolled back live: test_browser_run_live.py.)

Screenshots of every step go to tests/artifacts/screenshots/ (ignored by git).
"""

import time

import pytest

from portal.models import ApiToken, Environment, Run
from tests.factories import DEFAULT_PASSWORD, make_department, make_endpoint, make_environment, make_product, make_run, make_user
from tests.web.browser import (  # noqa: F401 (fixtures)
    LIVE_PATH,
    NavigationCounter,
    RequestRecorder,
    Screenshots,
    browser,
    log_in,
    page,
    portal,
    request_environment,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FINISHED = 180_000  # ms: a create with an 8 s apply, on a busy machine


def progress_value(page) -> float:
    return page.eval_on_selector("#run-progress", "p => p.hasAttribute('value') ? p.value : -1")


def log_lines(page) -> int:
    return page.locator("#run-log .log-line").count()


def test_create_watch_live_and_delete_an_environment(page, portal):
    shot = Screenshots("create-delete")
    url = portal["url"]
    page.goto(f"{url}/")
    assert page.url == f"{url}/login/?next=/"
    shot(page, "login")
    log_in(page, url, "dev", DEFAULT_PASSWORD)
    shot(page, "environments-empty")

    request_environment(page, portal, name="web-demo", delay=12)
    page.wait_for_selector("#preflight >> text=The name is free in Shop.")
    shot(page, "create-form")
    recorder = RequestRecorder(page, LIVE_PATH)
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_url(f"{url}/runs/*/")
    arrived = time.monotonic()
    run = Run.objects.get(environment__name="web-demo")
    assert page.url == f"{url}/runs/{run.pk}/"

    # From here on the page must never navigate again: everything arrives by polling.
    navigations = NavigationCounter(page)
    navigations.reset(1)  # the arrival on the run page
    page.evaluate("window.__sameDocument = true")

    page.wait_for_function("() => { const p = document.querySelector('#run-progress'); return p.hasAttribute('value') && p.value > 0; }", timeout=FINISHED)
    first_value, first_lines = progress_value(page), log_lines(page)
    shot(page, "run-applying")
    page.eval_on_selector("#run-log", "log => { log.scrollTop = 0; }")  # the reader scrolls up

    # The polling cost over the first 5 s on the page, while the run is surely unfinished.
    page.wait_for_timeout(max(0, 5_000 - (time.monotonic() - arrived) * 1000))
    polls = recorder.count_between(arrived, arrived + 5.0)
    run.refresh_from_db()
    assert not run.is_terminal, "the run ended within the measuring window: make it slower"
    assert 2 <= polls <= 6, f"{polls} poll requests in 5 s (expected about one per second, each after the last answer)"

    # New lines arrive, but the log does not jump away from what the reader is looking at.
    page.wait_for_function("n => document.querySelectorAll('#run-log .log-line').length > n", arg=first_lines, timeout=FINISHED)
    assert page.eval_on_selector("#run-log", "log => log.scrollTop") == 0
    page.get_by_role("button", name="Latest lines").click()
    assert page.eval_on_selector("#run-log", "log => log.scrollHeight - log.scrollTop - log.clientHeight") < 24

    page.wait_for_function(
        "v => { const p = document.querySelector('#run-progress'); return p.value > v; }", arg=first_value, timeout=FINISHED
    )
    assert progress_value(page) > first_value
    assert log_lines(page) > first_lines

    page.wait_for_selector('#run-status [data-status="succeeded"]', timeout=FINISHED)
    page.wait_for_selector('#run-environment-status [data-status="ready"]')
    fqdn_link = page.get_by_role("link", name="app-web-demo.sandbox.example.test")
    assert fqdn_link.get_attribute("href") == "https://app-web-demo.sandbox.example.test/"
    assert progress_value(page) == page.eval_on_selector("#run-progress", "p => p.max") == 7
    assert page.locator('.stage--done').count() == 7
    assert "Apply complete! Resources: 7 added" in page.inner_text("#run-log")
    assert page.locator('#run-plan tbody tr').count() == 7  # the plan table arrived live
    assert navigations.count == 1 and page.evaluate("window.__sameDocument") is True
    shot(page, "run-ready")

    # Polling stopped once the run had finished (286); answers with nothing new were small.
    settled = len(recorder.requests)
    page.wait_for_timeout(2_500)
    assert len(recorder.requests) == settled, "the page kept polling a finished run"
    assert recorder.responses[-1].status == 286
    sizes = [len(response.body()) for response in recorder.responses]
    assert sizes and max(sizes) < 20_000 and min(sizes) < 2_000, sizes
    last_seq = page.eval_on_selector("#run-log .log-line:last-child", "line => line.dataset.seq")
    idle = page.evaluate(
        "url => fetch(url, {credentials: 'same-origin'}).then(r => r.text().then(t => [r.status, t]))",
        f"/runs/{run.pk}/live/?after={last_seq}",
    )
    assert idle[0] == 286 and 'class="log-line' not in idle[1], idle  # nothing new, and the end said
    print(f"\n{polls} polls in 5 s; {settled} polls in all, {min(sizes)}-{max(sizes)} bytes each")

    # The environment page: ready, with its FQDN, outputs and run history.
    page.get_by_role("link", name="shop/web-demo").first.click()
    page.wait_for_selector("text=Run history")
    assert page.get_by_role("link", name="app-web-demo.sandbox.example.test", exact=True).is_visible()
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
    page.wait_for_selector('#run-status [data-status="succeeded"]', timeout=FINISHED)
    page.wait_for_selector('#run-environment-status [data-status="deleted"]')
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

    # An API token: the key is shown once.
    page.get_by_role("link", name="API tokens").first.click()
    page.get_by_label("Name").fill("CI pipeline")
    page.get_by_role("button", name="Create token").click()
    key = page.input_value("#new-token-key")
    assert key.startswith("sbx_")
    shot(page, "token-created")
    page.reload()  # re-submits the POST: refused, no second token, the key is not shown again
    assert page.locator("#new-token-key").count() == 0 and page.get_by_text("already submitted").is_visible()
    assert ApiToken.objects.filter(name="CI pipeline").count() == 1
    assert page.external_requests == []


def test_refusals_are_explained_in_the_browser(page, portal):
    shot = Screenshots("refusal")
    url = portal["url"]
    log_in(page, url, "dev", DEFAULT_PASSWORD)
    request_environment(page, portal, name="my-env", delay=0)
    # A parameter the FQDN is made of refreshes the panel's FQDN as soon as it changes.
    page.get_by_label("Application name").fill("shop")
    page.get_by_label("Application name").press("Tab")
    page.wait_for_selector("#preflight >> text=It would be reachable at shop-my-env.")
    page.get_by_label("Application name").fill("Not A Label")
    page.get_by_label("Note").fill("kept as typed")

    # Changing a select re-renders the form in place (htmx), keeping what was typed.
    navigations = NavigationCounter(page)
    with page.expect_response(lambda r: "refresh=1" in r.url and r.request.headers.get("hx-request") == "true") as answer:
        page.get_by_label("Sandbox account").select_option(label=f"{portal['account'].name} · Local · eu-west-1")
    assert answer.value.status == 200
    page.wait_for_selector("#preflight >> text=Account Local sandbox")
    assert navigations.count == 0
    assert page.input_value("#id_param-note") == "kept as typed" and page.input_value("#id_name") == "my-env"
    page.get_by_role("button", name="Create environment").click()
    # One problem: the summary above the form names it, and the field shows it.
    page.wait_for_selector("text=app_name: is not in the required form")
    assert "is not in the required form" in page.inner_text("#id_param-app_name_error")
    assert page.input_value("#id_param-note") == "kept as typed" and page.input_value("#id_name") == "my-env"
    assert not Environment.objects.filter(name="my-env").exists()
    shot(page, "create-form-errors")

    # Switching the pattern swaps in its own parameter fields, without a page load.
    navigations = NavigationCounter(page)
    page.get_by_label("Design pattern").select_option(label="ECS Fargate full stack (AWS)")
    page.wait_for_selector("#id_param-db_instance_class")
    assert page.locator("#id_param-delay_seconds").count() == 0 and navigations.count == 0
    # The new pattern's own defaults, not the values the previous pattern's fields held.
    assert page.input_value("#id_param-container_image") == "public.ecr.aws/nginx/nginx:stable"
    assert page.input_value("#id_name") == "my-env"
    assert "needs an AWS account" in page.inner_text("#preflight")
    shot(page, "create-form-aws-pattern")
    page.locator(".usermenu summary").click()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{url}/login/")

    make_user("visitor")
    log_in(page, url, "visitor", DEFAULT_PASSWORD)
    page.get_by_role("link", name="New environment").first.click()
    assert "you are not a member of any department" in page.inner_text(".problem__message")
    shot(page, "create-without-department")


def test_the_environment_list_filters_and_searches(page, portal):
    shot = Screenshots("list")
    url = portal["url"]
    product = portal["product"]
    other = make_product(make_department("logistics", name="Logistics"), slug="parcel", name="Parcel")
    rows = [
        (product, "checkout-dev", "ready"), (product, "checkout-qa", "provisioning"), (product, "ledger-perf", "failed"),
        (other, "routes-dev", "ready"), (other, "routes-stuck", "rollback_failed"), (product, "old-demo", "incomplete"),
    ]
    for owner, name, status in rows:
        env = make_environment(owner, name=name, status=status)
        if status == "ready":
            make_endpoint(env, fqdn=f"app-{name}.{env.account.dns_zone}")
        if status == "provisioning":
            make_run(env, status="running", stage="apply")
    log_in(page, url, "dev", DEFAULT_PASSWORD)
    assert page.locator("tbody tr").count() == 6
    shot(page, "all")

    page.get_by_label("Department").select_option(label="Logistics")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**department=logistics**")
    assert sorted(page.locator("tbody tr td:first-child a.strong").all_inner_texts()) == ["routes-dev", "routes-stuck"]
    shot(page, "department-filter")

    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Search").fill("app-checkout-dev")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=app-checkout-dev**")
    assert page.locator("tbody tr td:first-child a.strong").all_inner_texts() == ["checkout-dev"]
    assert page.external_requests == []
