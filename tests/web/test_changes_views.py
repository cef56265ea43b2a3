"""Day two in the browser UI, server-rendered: the change form, the change plan's page (plan
run progress, per-resource review, confirm) and the ChangePlan admin, through Django's test
client. The plan and update runs themselves are tested with the real worker and Terraform in
tests/portal/test_changes.py and, in Chromium, tests/web/test_browser_changes.py; here a plan
run is finished by hand as the worker's `succeed_plan` leaves it.

Permission matrix (STYLE rule 18, `tests.world`): owner/member of Payments (owns `shop`),
stranger (Logistics only), staff, anonymous.
"""

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.models import ChangePlan, Environment, EnvironmentStatus, Run, RunKind, RunStatus
from portal.services.catalog import get_pattern
from provisioning.parameters import validate_parameters
from tests.factories import make_environment, make_run, make_superuser
from tests.world import world  # noqa: F401

pytestmark = pytest.mark.django_db

VERSION = get_pattern("demo-ecs").version
REPLACE_SERVICE = [
    {"address": "terraform_data.service", "action": "replace", "moved_from": "",
     "attributes": ["input", "output"], "forces_replacement": ["input"]},
    {"address": "terraform_data.dns_record", "action": "update", "moved_from": "", "attributes": ["input"],
     "forces_replacement": []},
    {"address": "terraform_data.cache", "action": "delete", "moved_from": ""},
    {"address": "terraform_data.database", "action": "move", "moved_from": "terraform_data.db"},
]


def text(response) -> str:
    return response.content.decode()


def as_user(client, world, who):
    if who is not None:
        client.force_login(getattr(world, who))
    return client


def ready_environment(world, name="dev", status=EnvironmentStatus.READY, **params):
    """A demo-ecs environment running the schema defaults (plus `params`)."""
    parameters = validate_parameters(get_pattern("demo-ecs"), params)
    return make_environment(world.product, name=name, status=status, parameters=parameters, pattern_version=VERSION)


def change_post(environment, **overrides):
    """The change form as the browser sends it: every parameter, prefilled with the current ones."""
    data = {"pattern_version": VERSION}
    for key, value in environment.parameters.items():
        if isinstance(value, dict):
            value = "\n".join(f"{k}={v}" for k, v in value.items())
        data[f"param-{key}"] = "" if value is None else str(value)
    data.update({f"param-{key}": value for key, value in overrides.items()})
    return data


def request_change(client, environment, capture, **overrides):
    with capture(execute=False):
        return client.post(reverse("environment-change", args=[environment.pk]), change_post(environment, **overrides))


def planned(plan: ChangePlan, resource_changes=REPLACE_SERVICE) -> ChangePlan:
    """The plan run finished as `services.runs.succeed_plan` leaves it (the environment back to
    what it was, the plan saved against the current state)."""
    from provisioning.pipeline import change_summary

    Run.objects.filter(pk=plan.plan_run_id).update(
        status=RunStatus.SUCCEEDED, stage="finish", finished_at=timezone.now(), plan_summary=change_summary(resource_changes)
    )
    Environment.objects.filter(pk=plan.environment_id).update(status=EnvironmentStatus.READY)
    ChangePlan.objects.filter(pk=plan.pk).update(
        plan_file=b"plan", planned_at=timezone.now(), state_serial=None, resource_changes=resource_changes
    )
    return ChangePlan.objects.get(pk=plan.pk)


@pytest.fixture
def a_plan(client, world, django_capture_on_commit_callbacks):
    """A change of dev's container image, requested by the owner through the form (queued)."""
    env = ready_environment(world)
    response = request_change(as_user(client, world, "owner"), env, django_capture_on_commit_callbacks,
                              container_image="nginx:2")
    assert response.status_code == 302, text(response)
    client.logout()
    return ChangePlan.objects.get(environment=env)


# --- the environment page --------------------------------------------------------------------------


@pytest.mark.parametrize("who, shown", [("owner", True), ("member", True), ("staff", True), ("stranger", False)])
def test_a_ready_environment_offers_change_to_those_who_may(client, world, who, shown):
    env = ready_environment(world)
    html = text(as_user(client, world, who).get(reverse("environment-detail", args=[env.pk])))
    assert (f'href="/environments/{env.pk}/change/"' in html) is shown


@pytest.mark.parametrize("status", ["provisioning", "planning", "updating", "failed", "incomplete", "deleted"])
def test_an_environment_that_is_not_changeable_offers_no_change(client, world, status):
    env = ready_environment(world, status=status)
    html = text(as_user(client, world, "owner").get(reverse("environment-detail", args=[env.pk])))
    assert f"/environments/{env.pk}/change/" not in html


def test_the_environment_page_lists_its_change_plans(client, world, a_plan):
    planned(a_plan)
    html = text(as_user(client, world, "member").get(reverse("environment-detail", args=[a_plan.environment_id])))
    assert 'id="change-plans"' in html and f'href="/changes/{a_plan.pk}/"' in html and "not confirmed" in html
    assert "(1 replaced)" in html


def test_an_update_failed_environment_offers_plan_again_with_the_failed_plans_parameters(client, world, a_plan):
    plan = planned(a_plan)
    update = make_run(plan.environment, kind=RunKind.UPDATE, status=RunStatus.FAILED)
    ChangePlan.objects.filter(pk=plan.pk).update(apply_run=update, confirmed_at=timezone.now())
    Environment.objects.filter(pk=plan.environment_id).update(status=EnvironmentStatus.UPDATE_FAILED)
    as_user(client, world, "owner")
    html = text(client.get(reverse("environment-detail", args=[plan.environment_id])))
    again = f'href="/environments/{plan.environment_id}/change/?from={plan.pk}"'
    assert "Plan again" in html and again in html
    form = client.get(reverse("environment-change", args=[plan.environment_id]), {"from": plan.pk})
    assert form.status_code == 200 and form.context["source"] == plan
    assert 'value="nginx:2"' in text(form)  # what the failed change asked for, not what it runs
    assert Environment.objects.get(pk=plan.environment_id).parameters["container_image"] != "nginx:2"


# --- the change form ----------------------------------------------------------------------------------


def test_the_change_form_is_prefilled_with_what_the_environment_runs(client, world):
    env = ready_environment(world, desired_count=3, cpu=512, tags={"team": "payments"}, note="hello")
    response = as_user(client, world, "member").get(reverse("environment-change", args=[env.pk]))
    assert response.status_code == 200
    form = response.context["parameter_form"]
    assert form["desired_count"].value() == 3 and form["note"].value() == "hello"
    html = text(response)
    assert 'name="param-desired_count" value="3"' in html
    assert '<option value="512" selected>' in html and "team=payments" in html
    assert f"<option value=\"{VERSION}\" selected>{VERSION} (runs now, newest)</option>" in html


def test_the_version_select_offers_the_catalogs_versions_and_switching_rerenders_the_fields(client, world, monkeypatch):
    from dataclasses import replace

    from portal.services import catalog

    current = get_pattern("demo-ecs")
    properties = {**current.parameters["properties"], "replicas": {"type": "integer", "title": "Replicas", "default": 2}}
    newer = replace(current, version="9.0.0", parameters={**current.parameters, "properties": properties})
    monkeypatch.setattr(catalog, "get_versions", lambda slug: (newer, current), raising=False)
    env = ready_environment(world)
    url = reverse("environment-change", args=[env.pk])
    as_user(client, world, "owner")

    html = text(client.get(url))
    assert '<option value="9.0.0">9.0.0 (newest)</option>' in html
    assert f'<option value="{VERSION}" selected>{VERSION} (runs now)</option>' in html
    assert 'name="param-replicas"' not in html and f'hx-get="{url}"' in html
    # Choosing the newer version (htmx sends the form with refresh=1): its fields, what was typed kept.
    query = {**change_post(env, container_image="nginx:typed"), "pattern_version": "9.0.0", "refresh": "1"}
    fragment = client.get(url, query, HTTP_HX_REQUEST="true")
    body = text(fragment)
    assert fragment.status_code == 200 and body.lstrip().startswith('<div id="change-body"')
    assert 'name="param-replicas"' in body and 'value="nginx:typed"' in body
    assert '<option value="9.0.0" selected>' in body and "(upgrade)" in body


@pytest.mark.parametrize("who, allowed", [("owner", True), ("member", True), ("staff", True), ("stranger", False)])
def test_change_permission_matrix(client, world, who, allowed, django_capture_on_commit_callbacks):
    env = ready_environment(world)
    as_user(client, world, who)
    form = client.get(reverse("environment-change", args=[env.pk]))
    response = request_change(client, env, django_capture_on_commit_callbacks, desired_count="2")
    env.refresh_from_db()
    if allowed:
        plan = ChangePlan.objects.get()
        assert form.status_code == 200
        assert response.status_code == 302 and response["Location"] == f"/changes/{plan.pk}/"
        assert plan.plan_run.kind == RunKind.PLAN and plan.plan_run.status == RunStatus.QUEUED
        assert plan.parameters["desired_count"] == 2 and env.status == "planning"
        assert env.parameters["desired_count"] == 1  # nothing applied
    else:
        assert form.status_code == 403 and response.status_code == 403
        assert "You may not change environments of Shop" in text(response)
        assert not ChangePlan.objects.exists() and not Run.objects.exists() and env.status == "ready"


def test_anonymous_visitors_go_to_login_and_change_nothing(client, world, a_plan):
    env = a_plan.environment
    for url in (reverse("environment-change", args=[env.pk]), reverse("change-detail", args=[a_plan.pk])):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"] == f"{reverse('login')}?next={url}"
    planned(a_plan)
    response = client.post(reverse("change-confirm", args=[a_plan.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not Run.objects.filter(kind=RunKind.UPDATE).exists()


def test_unknown_environments_and_plans_are_404(client, world):
    as_user(client, world, "owner")
    assert client.get(reverse("environment-change", args=[9999])).status_code == 404
    assert client.post(reverse("environment-change", args=[9999]), {}).status_code == 404
    missing = client.get(reverse("change-detail", args=[9999]))
    assert missing.status_code == 404 and "No such change plan." in text(missing)
    assert client.post(reverse("change-confirm", args=[9999])).status_code == 404


def test_a_bad_parameter_rerenders_the_form_with_the_services_error_and_keeps_what_was_typed(client, world):
    env = ready_environment(world)
    as_user(client, world, "owner")
    data = change_post(env, desired_count="9", container_image="nginx:typed", note="keep me")
    response = client.post(reverse("environment-change", args=[env.pk]), data)
    assert response.status_code == 400
    errors = response.context["parameter_form"].errors
    assert list(errors) == ["desired_count"] and "4" in errors["desired_count"][0]
    html = text(response)
    assert 'value="nginx:typed"' in html and "keep me" in html and 'value="9"' in html
    assert 'class="field field--error"' in html
    assert not ChangePlan.objects.exists() and not Run.objects.exists()


def test_a_value_the_form_cannot_read_is_a_400_with_the_field_error(client, world):
    env = ready_environment(world)
    response = as_user(client, world, "owner").post(reverse("environment-change", args=[env.pk]),
                                                    change_post(env, desired_count="many"))
    assert response.status_code == 400 and "desired_count" in response.context["parameter_form"].errors
    assert not ChangePlan.objects.exists()


def test_a_change_that_changes_nothing_is_refused_above_the_parameters(client, world):
    env = ready_environment(world)
    response = as_user(client, world, "owner").post(reverse("environment-change", args=[env.pk]), change_post(env))
    assert response.status_code == 400
    assert response.context["parameter_form"].non_field_errors() == [
        "The change changes nothing: the parameters and the version are the ones it runs."
    ]
    assert 'id="parameter-errors"' in text(response) and not ChangePlan.objects.exists()


def test_changing_a_busy_environment_is_a_409_with_the_services_reason(client, world):
    env = ready_environment(world, status=EnvironmentStatus.PROVISIONING)
    make_run(env, status=RunStatus.RUNNING)
    response = as_user(client, world, "owner").post(reverse("environment-change", args=[env.pk]),
                                                    change_post(env, desired_count="2"))
    assert response.status_code == 409
    assert "only a ready environment (or one whose update failed) can be changed" in text(response)
    assert 'value="2"' in text(response) and not ChangePlan.objects.exists()


# --- the change plan's page -----------------------------------------------------------------------


def test_while_planning_the_page_shows_the_plan_run_and_polls_its_review(client, world, a_plan):
    as_user(client, world, "stranger")  # every signed-in user may read it
    page = client.get(reverse("change-detail", args=[a_plan.pk]))
    html = text(page)
    assert page.status_code == 200 and 'id="change-planning"' in html
    assert f'hx-get="/changes/{a_plan.pk}/"' in html and 'hx-trigger="every 1s"' in html
    assert f'href="/runs/{a_plan.plan_run_id}/"' in html and 'data-step="plan"' in html
    assert "/static/django_htmx/htmx-2.min.js" in html
    poll = client.get(reverse("change-detail", args=[a_plan.pk]), HTTP_HX_REQUEST="true")
    assert poll.status_code == 200 and not text(poll).lstrip().startswith("<!doctype")
    assert text(poll).lstrip().startswith('<div id="change-review"') and "no-cache" in poll["Cache-Control"]

    planned(a_plan)
    done = client.get(reverse("change-detail", args=[a_plan.pk]), HTTP_HX_REQUEST="true")
    assert done.status_code == 286 and "hx-trigger" not in text(done)  # htmx stops polling
    assert 'id="change-resources"' in text(done)


def test_a_planned_change_shows_each_resource_and_calls_out_replacements_and_destroys(client, world, a_plan):
    planned(a_plan)
    html = text(as_user(client, world, "member").get(reverse("change-detail", args=[a_plan.pk])))
    assert 'id="change-warning"' in html
    assert "replaces 1 resource</strong>" in html and "destroys 1 resource</strong>" in html
    assert 'data-address="terraform_data.service" data-action="replace"' in html
    assert 'class="change-row change-row--replace is-destructive"' in html
    assert 'class="change-row change-row--delete is-destructive"' in html
    assert 'class="change-row change-row--update"' in html
    assert "moved from terraform_data.db" in html and "only its address changes" in html
    assert "forces replacement" in html
    # The parameters it changes, now -> planned.
    assert 'data-parameter="container_image"' in html and "nginx:2" in html and "public.ecr.aws/nginx/nginx:latest" in html
    assert 'data-parameter="desired_count"' not in html
    assert "Confirm and apply" in html and "disabled" not in html.split('id="change-confirm"')[1]


def test_an_in_place_change_has_no_warning(client, world, a_plan):
    planned(a_plan, resource_changes=[REPLACE_SERVICE[1]])
    html = text(as_user(client, world, "owner").get(reverse("change-detail", args=[a_plan.pk])))
    assert 'id="change-warning"' not in html and "update in place" in html


@pytest.mark.parametrize("who, allowed", [("owner", True), ("member", True), ("staff", True), ("stranger", False)])
def test_confirm_permission_matrix(client, world, who, allowed, a_plan, django_capture_on_commit_callbacks):
    planned(a_plan)
    as_user(client, world, who)
    page = text(client.get(reverse("change-detail", args=[a_plan.pk])))
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("change-confirm", args=[a_plan.pk]))
    plan = ChangePlan.objects.get(pk=a_plan.pk)
    if allowed:
        assert f'action="/changes/{a_plan.pk}/confirm/"' in page
        assert response.status_code == 302 and response["Location"] == f"/runs/{plan.apply_run_id}/"
        assert plan.apply_run.kind == RunKind.UPDATE and plan.confirmed_at is not None
        assert Environment.objects.get(pk=plan.environment_id).status == "updating"
        after = text(client.get(reverse("change-detail", args=[a_plan.pk])))
        assert f"update run #{plan.apply_run_id}" in after and "Confirm and apply" not in after
    else:
        assert "/confirm/" not in page and "may confirm this change" in page
        assert response.status_code == 403 and "You may not change environments of Shop" in text(response)
        assert plan.apply_run_id is None and not Run.objects.filter(kind=RunKind.UPDATE).exists()


def test_a_stale_plan_shows_why_disables_confirm_and_refuses_a_post(client, world, a_plan):
    plan = planned(a_plan)
    ChangePlan.objects.filter(pk=plan.pk).update(planned_at=plan.planned_at - timezone.timedelta(days=1))
    as_user(client, world, "owner")
    html = text(client.get(reverse("change-detail", args=[plan.pk])))
    assert 'id="stale-reason"' in html and "older than" in html
    assert f'href="/environments/{plan.environment_id}/change/?from={plan.pk}"' in html  # plan again
    assert 'disabled aria-disabled="true">Confirm and apply' in html
    response = client.post(reverse("change-confirm", args=[plan.pk]))
    assert response.status_code == 409 and "This plan cannot be confirmed: it is older than" in text(response)
    plan.refresh_from_db()
    assert plan.apply_run_id is None and plan.confirmed_at is None
    assert not Run.objects.filter(kind=RunKind.UPDATE).exists()
    assert Environment.objects.get(pk=plan.environment_id).status == "ready"


def test_an_unplanned_change_cannot_be_confirmed(client, world, a_plan):
    as_user(client, world, "owner")
    html = text(client.get(reverse("change-detail", args=[a_plan.pk])))
    assert 'disabled aria-disabled="true">Confirm and apply' in html
    response = client.post(reverse("change-confirm", args=[a_plan.pk]))
    assert response.status_code == 409 and "its plan run has not succeeded" in text(response)
    assert not Run.objects.filter(kind=RunKind.UPDATE).exists()


def test_a_failed_plan_run_says_so_and_offers_plan_again(client, world, a_plan):
    Run.objects.filter(pk=a_plan.plan_run_id).update(status=RunStatus.FAILED, explanation="Terraform said no.")
    Environment.objects.filter(pk=a_plan.environment_id).update(status=EnvironmentStatus.READY)
    html = text(as_user(client, world, "owner").get(reverse("change-detail", args=[a_plan.pk])))
    assert 'id="change-plan-failed"' in html and "Terraform said no." in html
    assert f"/environments/{a_plan.environment_id}/change/?from={a_plan.pk}" in html
    assert "hx-trigger" not in html


def test_confirm_is_post_only(client, world, a_plan):
    planned(a_plan)
    assert as_user(client, world, "owner").get(reverse("change-confirm", args=[a_plan.pk])).status_code == 405


# --- admin -------------------------------------------------------------------------------------------


def test_the_change_plan_admin_is_read_only_and_shows_versions_counts_and_staleness(client, world, a_plan):
    planned(a_plan)
    client.force_login(make_superuser())
    listing = client.get(reverse("admin:portal_changeplan_changelist"))
    html = text(listing)
    assert listing.status_code == 200 and "+1 ~1 -2 (1 replaced, 1 moved)" in html and VERSION in html
    assert "(can be confirmed)" in html
    detail = client.get(reverse("admin:portal_changeplan_change", args=[a_plan.pk]))
    assert detail.status_code == 200 and "terraform_data.service" in text(detail) and "4 bytes" in text(detail)
    assert 'name="_save"' not in text(detail)
    assert client.get(reverse("admin:portal_changeplan_add")).status_code == 403
    assert client.post(reverse("admin:portal_changeplan_delete", args=[a_plan.pk]), {"post": "yes"}).status_code == 403
    assert ChangePlan.objects.filter(pk=a_plan.pk).exists()
