"""The day-two API: plan a change (202, nothing applied), read the plan, confirm it.

The plan-only and update runs themselves are tested with the real worker in
tests/portal/test_changes.py; here the API's shapes, refusals and idempotency."""

import pytest

from portal.models import ChangePlan, EnvironmentStatus, Run, RunKind, RunStatus
from tests.api.conftest import error_of
from tests.factories import make_environment, make_run

pytestmark = pytest.mark.django_db


def plan_change(client, environment, body, **headers):
    return client.post(f"/api/v1/environments/{environment.pk}/changes/", body, format="json", **headers)


def test_a_change_is_queued_as_a_plan_only_run(api, world, django_capture_on_commit_callbacks):
    environment = make_environment(world.product, name="dev")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = plan_change(api.member, environment, {"parameters": {"cpu": 512}})
    assert response.status_code == 202 and callbacks, response.content
    body = response.json()
    assert body["run"]["kind"] == "plan" and body["run"]["status"] == "queued"
    assert body["environment"]["status"] == "planning"
    change = body["change"]
    assert change["plan_run"] == body["run"]["id"] and change["apply_run"] is None
    assert change["parameters"]["cpu"] == 512 and change["pattern_version"] == change["pattern_version_before"]
    assert change["summary"] is None and change["resource_changes"] == []

    detail = api.member.get(f"/api/v1/changes/{change['id']}/").json()
    assert detail["stale_reason"] == "its plan run has not succeeded, so there is no plan to apply."
    listed = api.member.get(f"/api/v1/changes/?environment={environment.pk}").json()
    assert [c["id"] for c in listed["results"]] == [change["id"]] and "stale_reason" not in listed["results"][0]


def test_an_unplanned_change_cannot_be_confirmed(api, world, django_capture_on_commit_callbacks):
    environment = make_environment(world.product, name="dev")
    with django_capture_on_commit_callbacks(execute=False):
        change = plan_change(api.owner, environment, {"parameters": {"cpu": 512}}).json()["change"]
    response = api.owner.post(f"/api/v1/changes/{change['id']}/confirm/")
    assert response.status_code == 409 and "cannot be confirmed" in error_of(response)["message"]
    assert not Run.objects.filter(kind=RunKind.UPDATE).exists()


def test_a_planned_change_is_confirmed_into_an_update_run(api, world, django_capture_on_commit_callbacks):
    environment = make_environment(world.product, name="dev")
    with django_capture_on_commit_callbacks(execute=False):
        change = plan_change(api.owner, environment, {"parameters": {"cpu": 512}}).json()["change"]
    # As the worker's succeed_plan leaves it (the engine is tested with the real worker).
    plan = ChangePlan.objects.get(pk=change["id"])
    Run.objects.filter(pk=plan.plan_run_id).update(status=RunStatus.SUCCEEDED)
    environment.__class__.objects.filter(pk=environment.pk).update(status=EnvironmentStatus.READY)
    from django.utils import timezone

    ChangePlan.objects.filter(pk=plan.pk).update(plan_file=b"plan", planned_at=timezone.now(), state_serial=None)
    assert api.member.get(f"/api/v1/changes/{plan.pk}/").json()["stale_reason"] is None
    assert api.stranger.post(f"/api/v1/changes/{plan.pk}/confirm/").status_code == 403
    with django_capture_on_commit_callbacks(execute=False):
        first = api.owner.post(f"/api/v1/changes/{plan.pk}/confirm/", HTTP_IDEMPOTENCY_KEY="confirm-1")
        again = api.owner.post(f"/api/v1/changes/{plan.pk}/confirm/", HTTP_IDEMPOTENCY_KEY="confirm-1")
    assert first.status_code == 202 and again.status_code == 202 and again.json() == first.json()
    body = first.json()
    assert body["run"]["kind"] == "update" and body["environment"]["status"] == "updating"
    assert body["change"]["apply_run"] == body["run"]["id"]
    assert Run.objects.filter(kind=RunKind.UPDATE).count() == 1
    response = api.owner.post(f"/api/v1/changes/{plan.pk}/confirm/")
    assert response.status_code == 409 and "already confirmed" in error_of(response)["message"]


def test_bad_changes_are_4xx_and_write_nothing(api, world):
    from portal.services.catalog import get_pattern
    from provisioning.parameters import validate_parameters

    environment = make_environment(world.product, name="dev", parameters=validate_parameters(get_pattern("demo-ecs"), {}))
    response = plan_change(api.owner, environment, {"parameters": {"cpu": 333}})
    assert response.status_code == 400 and any(f.startswith("parameters") for f in error_of(response)["fields"])
    response = plan_change(api.owner, environment, {"pattern_version": "0.0.1"})
    assert response.status_code == 400 and "holds no version 0.0.1" in error_of(response)["message"]
    response = plan_change(api.owner, environment, {"parameters": {}})
    assert response.status_code == 400 and "changes nothing" in error_of(response)["message"]
    response = plan_change(api.owner, environment, {"parameters": ["cpu"]})
    assert response.status_code == 400
    assert plan_change(api.stranger, environment, {"parameters": {"cpu": 512}}).status_code == 403
    busy = make_environment(world.product, name="busy", status=EnvironmentStatus.PROVISIONING)
    make_run(busy, status=RunStatus.RUNNING)
    response = plan_change(api.owner, busy, {"parameters": {"cpu": 512}})
    assert response.status_code == 409 and "can be changed" in error_of(response)["message"]
    assert plan_change(api.owner, type("Missing", (), {"pk": 424242})(), {}).status_code == 404
    assert not ChangePlan.objects.exists() and not Run.objects.filter(kind=RunKind.PLAN).exists()
