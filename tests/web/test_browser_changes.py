"""Day two in real Chromium, against the real portal (gunicorn), a real Celery worker and real
Terraform: change an environment from its page - plan, review, confirm.

A demo-ecs environment is created, changed to a new container image (which replaces its
service), the plan arrives on the change plan's page without a reload and calls the
replacement out, and confirming it applies exactly that plan until the environment is ready
again with the new image.
"""

import json

import pytest

from portal.models import ChangePlan, Environment, Run, RunKind
from tests.factories import DEFAULT_PASSWORD
from tests.web.browser import (  # noqa: F401 (fixtures)
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

FINISHED = 180_000  # ms: a create, a plan or an update of the demo pattern, on a busy machine
NEW_IMAGE = "public.ecr.aws/nginx/nginx:1.27"


def outputs(page) -> dict[str, str]:
    """The environment page's Outputs table as {name: text}."""
    return page.eval_on_selector(
        "#outputs-title + table",
        "t => Object.fromEntries([...t.querySelectorAll('tr')].map(r => [r.querySelector('th').textContent.trim(), r.querySelector('td').textContent.trim()]))",
    )


def test_change_an_environment_plan_review_confirm(page, portal):
    shot = Screenshots("change")
    url = portal["url"]
    log_in(page, url, "dev", DEFAULT_PASSWORD)
    request_environment(page, portal, name="day-two", delay=0)
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_url(f"{url}/runs/*/")
    page.wait_for_selector('#run-environment-status [data-status="ready"]', timeout=FINISHED)
    env = Environment.objects.get(name="day-two")
    old_image = env.parameters["container_image"]
    assert old_image != NEW_IMAGE

    page.get_by_role("link", name="shop/day-two").first.click()
    page.wait_for_selector("text=Run history")
    before = outputs(page)
    service_id_before = json.loads(before["resource_ids"])["service"]
    page.get_by_role("link", name="Change…").click()
    page.wait_for_url(f"{url}/environments/{env.pk}/change/")
    # Prefilled with what it runs.
    assert page.input_value("#id_param-container_image") == old_image
    assert page.input_value("#id_param-tags") == "team=payments\nowner=dev"
    shot(page, "form")

    page.get_by_label("Container image").fill(NEW_IMAGE)
    recorder = RequestRecorder(page, r"^/changes/\d+/$")  # the page itself, then its polls
    page.get_by_role("button", name="Plan the change").click()
    page.wait_for_url(f"{url}/changes/*/")
    plan = ChangePlan.objects.get(environment=env)
    assert page.url == f"{url}/changes/{plan.pk}/"
    navigations = NavigationCounter(page)

    # The plan arrives by polling, without a reload; nothing was applied meanwhile.
    page.wait_for_selector("#change-resources", timeout=FINISHED)
    statuses = [response.status for response in recorder.responses]
    # (One response only if Terraform had planned before the page loaded.) The last poll said stop.
    assert statuses[0] == 200 and (len(statuses) == 1 or statuses[-1] == 286), statuses
    assert navigations.count == 0
    assert Environment.objects.get(pk=env.pk).parameters["container_image"] == old_image
    warning = page.inner_text("#change-warning")
    assert "replaces 1 resource" in warning and "destroys" not in warning
    service = page.locator('#change-resources tr[data-address="terraform_data.service"]')
    assert service.get_attribute("data-action") == "replace" and "is-destructive" in service.get_attribute("class")
    assert "replace" in service.inner_text()
    assert NEW_IMAGE in page.inner_text("#change-parameters") and old_image in page.inner_text("#change-parameters")
    confirm = page.get_by_role("button", name="Confirm and apply")
    assert confirm.is_enabled()
    shot(page, "plan")

    confirm.click()
    page.wait_for_url(f"{url}/runs/*/")
    update = Run.objects.get(environment=env, kind=RunKind.UPDATE)
    assert page.url == f"{url}/runs/{update.pk}/"
    page.wait_for_selector('#run-status [data-status="succeeded"]', timeout=FINISHED)
    page.wait_for_selector('#run-environment-status [data-status="ready"]', timeout=FINISHED)
    shot(page, "updated")

    page.get_by_role("link", name="shop/day-two").first.click()
    page.wait_for_selector("text=Run history")
    # The environment runs the new image now: its parameters say so, and the outputs show the
    # service that replaced the old one (demo-ecs does not output the image itself).
    assert NEW_IMAGE in page.inner_text("#parameters-title + table")
    after = outputs(page)
    assert json.loads(after["resource_ids"])["service"] != service_id_before
    assert after["app_fqdn"] == before["app_fqdn"]
    assert page.locator(f'#change-plans a[href="/runs/{update.pk}/"]').is_visible()
    assert Environment.objects.get(pk=env.pk).parameters["container_image"] == NEW_IMAGE
    shot(page, "environment")

    # The plan cannot be confirmed again: its page says so, and offers no button.
    page.goto(f"{url}/changes/{plan.pk}/")
    assert f"update run #{update.pk}" in page.inner_text("#change-confirm")
    assert page.get_by_role("button", name="Confirm and apply").count() == 0
    assert page.external_requests == []
