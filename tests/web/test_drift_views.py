"""Drift and the fleet in the browser UI, server-rendered: the list's drift badge and filter,
the environment page's drift card (badge, explanation, drifted resources, history, "Check
now", "Plan to fix") and the fleet page, through Django's test client. Drift checks are
written as rows here (as the drift worker leaves them); the checks themselves are tested in
tests/portal/test_drift.py. One test plans a fix with the real worker and Terraform.

Permission matrix (STYLE rule 18, `tests.world`): owner/member of Payments (owns `shop`),
stranger (Logistics only), staff, anonymous.
"""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from portal.models import ChangePlan, DriftCheck, Environment, EnvironmentStatus, Run, RunKind, RunStatus
from portal.services import environments as environment_service
from portal.services.catalog import get_pattern
from provisioning.parameters import validate_parameters
from tests.factories import make_endpoint, make_environment, make_run
from tests.waiting import wait_for_environment, wait_until
from tests.world import world  # noqa: F401

VERSION = get_pattern("demo-ecs").version
LONG_POLICY = {"Statement": [{"Effect": "Allow", "Action": f"s3:Get{n}", "Resource": "*"} for n in range(20)]}
DRIFTED = [
    {"address": "terraform_data.service", "type": "terraform_data", "action": "update",
     "attributes": [{"attribute": "input", "before": {"image": "nginx:1"}, "after": {"image": "nginx:evil"}},
                    {"attribute": "policy", "before": LONG_POLICY, "after": None}]},
    {"address": "terraform_data.cache", "type": "terraform_data", "action": "delete", "attributes": []},
]


def text(response) -> str:
    return response.content.decode()


def as_user(client, world, who):
    if who is not None:
        client.force_login(getattr(world, who))
    return client


def ready_environment(world, name="dev", status=EnvironmentStatus.READY, **fields):
    """A demo-ecs environment running the schema defaults."""
    parameters = validate_parameters(get_pattern("demo-ecs"), {})
    return make_environment(world.product, name=name, status=status, parameters=parameters, pattern_version=VERSION,
                            **fields)


def finished_check(environment, status, *, resources=(), explanation="", requested_by=None, ago=0) -> DriftCheck:
    """A check as the drift worker leaves it, with the environment's drift status to match."""
    when = timezone.now() - timedelta(minutes=ago)
    check = DriftCheck.objects.create(environment=environment, status=status, resources=list(resources),
                                      explanation=explanation, requested_by=requested_by)
    DriftCheck.objects.filter(pk=check.pk).update(queued_at=when, started_at=when, finished_at=when)
    if status in ("in_sync", "drifted", "failed"):
        Environment.objects.filter(pk=environment.pk).update(drift_status=status, drift_checked_at=when)
    return DriftCheck.objects.get(pk=check.pk)


def page(client, environment):
    response = client.get(reverse("environment-detail", args=[environment.pk]))
    assert response.status_code == 200
    return text(response)


# --- the environment list ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_list_shows_a_drift_badge_per_row(client, world):
    calm = ready_environment(world, name="calm", drift_status="in_sync", drift_checked_at=timezone.now())
    moved = ready_environment(world, name="moved", drift_status="drifted", drift_checked_at=timezone.now())
    broken = ready_environment(world, name="broken", drift_status="failed", drift_checked_at=timezone.now())
    ready_environment(world, name="fresh")
    html = text(as_user(client, world, "member").get("/"))
    assert '<th scope="col">Drift</th>' in html
    assert '<span class="badge badge--ok" data-status="in_sync">In sync</span>' in html
    assert '<span class="badge badge--warn" data-status="drifted">Drifted</span>' in html
    assert '<span class="badge badge--bad" data-status="failed">Check failed</span>' in html
    assert html.count(">not checked</span>") == 1  # "fresh": muted text, no badge
    assert all(f'href="/environments/{env.pk}/"' in html for env in (calm, moved, broken))


@pytest.mark.django_db
def test_the_list_filters_by_drift_and_keeps_it_in_the_querystring(client, world):
    for number in range(27):
        ready_environment(world, name=f"moved-{number:02d}", drift_status="drifted")
    ready_environment(world, name="calm", drift_status="in_sync")
    ready_environment(world, name="fresh")
    as_user(client, world, "owner")

    def names(query):
        response = client.get("/", query)
        assert response.status_code == 200
        return {env.name for env in response.context["environments"]}

    assert names({"drift": "in_sync"}) == {"calm"}
    assert names({"drift": "unknown"}) == {"fresh"}
    first = client.get("/", {"drift": "drifted"})
    assert first.context["page"].paginator.count == 27
    html = text(first)
    assert '<option value="drifted" selected>Drifted</option>' in html  # the form shows the filter
    assert 'href="?drift=drifted&amp;page=2"' in html and ">Clear</a>" in html  # the pager keeps it
    assert names({"drift": "drifted", "page": 2}) == {"moved-00", "moved-01"}  # newest first
    assert client.get("/", {"drift": "sideways"}).status_code == 200  # an unknown value is the form's error
    assert "drift: " in text(client.get("/", {"drift": "sideways"}))


@pytest.mark.django_db
def test_the_list_costs_the_same_queries_with_drift_badges_for_many_rows(client, world):
    as_user(client, world, "owner")
    statuses = ["in_sync", "drifted", "failed", "unknown"]

    def queries_for_page():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/", {"drift": statuses}).status_code == 200
        return len(captured)

    def add(count):
        for number in range(count):
            env = make_environment(world.product, drift_status=statuses[number % 4], drift_checked_at=timezone.now())
            make_endpoint(env)
            make_run(env, status=RunStatus.SUCCEEDED)
            DriftCheck.objects.create(environment=env, status="drifted", resources=DRIFTED)

    add(2)
    few = queries_for_page()
    add(15)
    many = queries_for_page()
    assert many == few, f"{few} queries for 2 rows but {many} for 17"


# --- the drift card -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_drifted_environment_shows_what_changed_per_resource_and_attribute(client, world):
    env = ready_environment(world)
    finished_check(env, "in_sync", explanation="Nothing changed outside Terraform.", ago=60)
    check = finished_check(env, "drifted", resources=DRIFTED, requested_by=world.owner,
                           explanation="2 resources changed outside Terraform.", ago=5)
    html = page(as_user(client, world, "member"), env)
    assert 'id="drift"' in html and '<span class="badge badge--warn" data-status="drifted">Drifted</span>' in html
    assert re.search(r"checked <time [^>]+>5\s+minutes ago</time>", html)
    assert "2 resources changed outside Terraform." in html
    assert 'id="drift-resources"' in html
    assert 'data-address="terraform_data.service" data-action="update"' in html
    assert "changed outside Terraform</span>" in html and "deleted outside Terraform</span>" in html
    # Values as compact JSON (escaped by the template); a long one cut, the whole in its title.
    assert "{&quot;image&quot;: &quot;nginx:1&quot;}</span> → <span class=\"mono\">{&quot;image&quot;: &quot;nginx:evil&quot;}" in html
    assert "→ <span class=\"mono\">null</span>" in html
    assert "…</span>" in html and 'title="{&quot;Statement&quot;: [{&quot;Action&quot;: &quot;s3:Get0&quot;' in html
    # Who may act gets the fix.
    assert f'action="/drift-checks/{check.pk}/fix/"' in html
    # The history: the latest two, newest first, who asked for each.
    history = html[html.index('id="drift-history"'):]
    assert history.index(f'data-check="{check.pk}"') < history.index(f'data-check="{check.pk - 1}"')
    assert ">owner</td>" in history and "scheduled" in history


@pytest.mark.django_db
def test_the_drift_card_of_an_in_sync_environment_has_no_table_and_no_fix(client, world):
    env = ready_environment(world)
    finished_check(env, "in_sync", explanation="Nothing changed outside Terraform.")
    html = page(as_user(client, world, "owner"), env)
    assert '<span class="badge badge--ok" data-status="in_sync">In sync</span>' in html
    assert "Nothing changed outside Terraform." in html
    assert 'id="drift-resources"' not in html and "/fix/" not in html
    assert f'action="/environments/{env.pk}/drift/check/"' in html


@pytest.mark.django_db
def test_a_never_checked_environment_says_so(client, world):
    env = ready_environment(world)
    html = page(as_user(client, world, "owner"), env)
    assert 'data-status="unknown">Not checked</span>' in html and "Not checked for drift yet." in html
    assert 'id="drift-history"' not in html


@pytest.mark.django_db
def test_a_failed_check_shows_its_explanation(client, world):
    env = ready_environment(world)
    finished_check(env, "failed", explanation="The drift worker stopped answering (gone:1); nothing was changed.")
    html = page(as_user(client, world, "owner"), env)
    assert '<span class="badge badge--bad" data-status="failed">Check failed</span>' in html
    assert "The drift worker stopped answering (gone:1)" in html and "/fix/" not in html


@pytest.mark.parametrize("who, shown", [("owner", True), ("member", True), ("staff", True), ("stranger", False)])
@pytest.mark.django_db
def test_check_now_and_plan_to_fix_are_offered_to_those_who_may(client, world, who, shown):
    env = ready_environment(world)
    check = finished_check(env, "drifted", resources=DRIFTED)
    html = page(as_user(client, world, who), env)
    assert (f'action="/environments/{env.pk}/drift/check/"' in html) is shown
    assert (f'action="/drift-checks/{check.pk}/fix/"' in html) is shown
    assert 'id="drift-resources"' in html  # everyone sees what drifted


@pytest.mark.parametrize("status", ["provisioning", "updating", "planning", "failed", "incomplete"])
@pytest.mark.django_db
def test_an_environment_that_is_not_ready_offers_no_check_and_no_fix(client, world, status):
    env = ready_environment(world, status=status)
    check = finished_check(env, "drifted", resources=DRIFTED)
    html = page(as_user(client, world, "owner"), env)
    assert "/drift/check/" not in html and f"/drift-checks/{check.pk}/fix/" not in html
    assert 'id="drift-resources"' in html


@pytest.mark.django_db
def test_a_check_in_flight_is_shown_and_the_card_polls_until_it_ends(client, world):
    env = ready_environment(world)
    drifted = finished_check(env, "drifted", resources=DRIFTED, ago=30)
    queued = DriftCheck.objects.create(environment=env, requested_by=world.member)
    as_user(client, world, "owner")
    html = page(client, env)
    assert f"Check #{queued.pk} is queued (asked for by member)" in html
    assert f'hx-get="/environments/{env.pk}/drift/"' in html
    # The drifted check is not the latest any more: it is shown, but not offered for a fix.
    assert 'id="drift-resources"' in html and f"/drift-checks/{drifted.pk}/fix/" not in html
    assert "/drift/check/" not in html  # one is in flight
    poll = client.get(reverse("environment-drift", args=[env.pk]), headers={"HX-Request": "true"})
    assert poll.status_code == 200 and 'hx-trigger="every 2s"' in text(poll)
    DriftCheck.objects.filter(pk=queued.pk).update(status="in_sync", finished_at=timezone.now())
    Environment.objects.filter(pk=env.pk).update(drift_status="in_sync", drift_checked_at=timezone.now())
    poll = client.get(reverse("environment-drift", args=[env.pk]), headers={"HX-Request": "true"})
    assert poll.status_code == 286 and "hx-get" not in text(poll) and "In sync</span>" in text(poll)


@pytest.mark.django_db
def test_a_deleted_environment_never_checked_has_no_drift_card(client, world):
    env = ready_environment(world, status=EnvironmentStatus.DELETED)
    assert 'id="drift"' not in page(as_user(client, world, "owner"), env)


# --- Check now --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_check_now_queues_a_drift_check_and_goes_back_to_the_page(client, world, django_capture_on_commit_callbacks):
    env = ready_environment(world)
    as_user(client, world, "member")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("environment-drift-check", args=[env.pk]))
    assert response.status_code == 302 and response["Location"] == f"/environments/{env.pk}/"
    check = DriftCheck.objects.get(environment=env)
    assert check.status == "queued" and check.requested_by == world.member and len(callbacks) == 1
    html = page(client, env)
    assert f"Drift check #{check.pk} of {env} queued" in html
    assert f"Check #{check.pk} is queued (asked for by member)" in html


@pytest.mark.django_db
def test_check_now_is_refused_for_a_stranger(client, world):
    env = ready_environment(world)
    response = as_user(client, world, "stranger").post(reverse("environment-drift-check", args=[env.pk]))
    assert response.status_code == 403
    assert not DriftCheck.objects.exists()


@pytest.mark.django_db
def test_check_now_is_refused_while_one_is_in_flight(client, world):
    env = ready_environment(world)
    DriftCheck.objects.create(environment=env, status="running", started_at=timezone.now())
    response = as_user(client, world, "owner").post(reverse("environment-drift-check", args=[env.pk]))
    assert response.status_code == 409
    assert "already has a drift check queued or running" in text(response)
    assert DriftCheck.objects.count() == 1


@pytest.mark.django_db
def test_check_now_is_refused_on_a_busy_environment(client, world):
    env = ready_environment(world, status=EnvironmentStatus.UPDATING)
    response = as_user(client, world, "owner").post(reverse("environment-drift-check", args=[env.pk]))
    assert response.status_code == 409 and "only a ready environment is checked for drift" in text(response)
    assert not DriftCheck.objects.exists()


@pytest.mark.django_db
def test_check_now_wants_a_post_and_a_login(client, world):
    env = ready_environment(world)
    url = reverse("environment-drift-check", args=[env.pk])
    assert client.post(url).status_code == 302 and not DriftCheck.objects.exists()  # to the login page
    assert as_user(client, world, "owner").get(url).status_code == 405
    assert client.post(reverse("environment-drift-check", args=[999999])).status_code == 404


# --- Plan to fix ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_plan_to_fix_a_check_that_found_no_drift_is_refused_cleanly(client, world):
    env = ready_environment(world)
    check = finished_check(env, "in_sync")
    response = as_user(client, world, "owner").post(reverse("drift-fix", args=[check.pk]))
    assert response.status_code == 400
    assert f"Drift check #{check.pk} found no drift (in sync); there is nothing to fix." in text(response)
    assert not ChangePlan.objects.exists()


@pytest.mark.django_db
def test_plan_to_fix_an_older_check_is_a_conflict(client, world):
    env = ready_environment(world)
    old = finished_check(env, "drifted", resources=DRIFTED, ago=30)
    newer = finished_check(env, "in_sync", ago=5)
    response = as_user(client, world, "owner").post(reverse("drift-fix", args=[old.pk]))
    assert response.status_code == 409 and escape(f"not the environment's latest (#{newer.pk})") in text(response)
    assert not ChangePlan.objects.exists()


@pytest.mark.django_db
def test_plan_to_fix_is_refused_for_a_stranger_and_for_nonsense(client, world):
    env = ready_environment(world)
    check = finished_check(env, "drifted", resources=DRIFTED)
    assert as_user(client, world, "stranger").post(reverse("drift-fix", args=[check.pk])).status_code == 403
    assert client.post(reverse("drift-fix", args=[999999])).status_code == 404
    assert client.get(reverse("drift-fix", args=[check.pk])).status_code == 405
    assert not ChangePlan.objects.exists()


@pytest.mark.django_db
def test_plan_to_fix_queues_a_plan_of_the_same_code_and_goes_to_the_change_page(client, world,
                                                                               django_capture_on_commit_callbacks):
    env = ready_environment(world)
    check = finished_check(env, "drifted", resources=DRIFTED)
    with django_capture_on_commit_callbacks(execute=False):
        response = as_user(client, world, "owner").post(reverse("drift-fix", args=[check.pk]))
    plan = ChangePlan.objects.get(environment=env)
    assert response.status_code == 302 and response["Location"] == f"/changes/{plan.pk}/"
    assert plan.fixes_drift_id == check.pk and plan.parameters == env.parameters and plan.pattern_version == VERSION
    assert plan.plan_run.kind == RunKind.PLAN
    html = page(client, env)
    assert f'href="/changes/{plan.pk}/"' in html and 'id="drift-fix-plan"' in html


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_plan_to_fix_with_the_real_worker_is_planned_reviewed_and_applied(client, world, web_server, celery_worker):
    run = environment_service.request_create(user=world.owner, product=world.product, pattern_slug="demo-ecs",
                                             name="dev")
    env = wait_for_environment(run.environment_id, {"ready"})
    check = finished_check(env, "drifted", resources=DRIFTED, explanation="1 resource changed outside Terraform.")
    as_user(client, world, "owner")
    response = client.post(reverse("drift-fix", args=[check.pk]))
    assert response.status_code == 302, text(response)
    plan = ChangePlan.objects.get(environment=env)
    assert response["Location"] == f"/changes/{plan.pk}/" and plan.fixes_drift_id == check.pk
    wait_until(lambda: ChangePlan.objects.get(pk=plan.pk).plan_run.is_terminal, "the fix's plan run to finish")
    plan = ChangePlan.objects.get(pk=plan.pk)
    assert plan.plan_run.status == RunStatus.SUCCEEDED and plan.planned_at is not None, plan.plan_run.explanation
    html = text(client.get(f"/changes/{plan.pk}/"))
    assert f'action="/changes/{plan.pk}/confirm/"' in html and "stale-reason" not in html
    wait_for_environment(env.pk, {"ready"})
    confirmed = client.post(reverse("change-confirm", args=[plan.pk]))
    assert confirmed.status_code == 302, text(confirmed)
    update = ChangePlan.objects.get(pk=plan.pk).apply_run
    assert confirmed["Location"] == f"/runs/{update.pk}/"
    wait_until(lambda: Run.objects.get(pk=update.pk).is_terminal, "the fix's update run to finish")
    assert Run.objects.get(pk=update.pk).status == RunStatus.SUCCEEDED, Run.objects.get(pk=update.pk).explanation
    wait_for_environment(env.pk, {"ready"})


# --- the fleet --------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["member", "stranger", "staff"])
@pytest.mark.django_db
def test_the_fleet_lists_versions_with_counts_and_upgrades(client, world, who):
    for name in ("a", "b"):
        ready_environment(world, name=name)
    make_environment(world.other_product, name="old", pattern_version="0.0.1")
    make_environment(world.product, name="gone", status=EnvironmentStatus.DELETED, pattern_version="0.0.1")
    response = as_user(client, world, who).get(reverse("fleet"))
    assert response.status_code == 200
    html = text(response)
    assert 'href="/fleet/" aria-current="page">Fleet</a>' in html
    rows = {(row["pattern"], row["version"]): row for row in response.context["rows"]}
    current = html[html.index(f'data-pattern="demo-ecs" data-version="{VERSION}"'):]
    current = current[:current.index("</tr>")]
    assert '<a href="/?pattern=demo-ecs">2</a>' in current and ">latest</span>" in current
    assert rows[("demo-ecs", VERSION)]["environments"] == 2
    old = html[html.index('data-pattern="demo-ecs" data-version="0.0.1"'):]
    old = old[:old.index("</tr>")]
    assert ">1</a>" in old and f"upgrade to v{VERSION} available" in old and "not in the catalog" in old
    # A pattern nobody runs is listed with no link.
    unused = next(row for row in response.context["rows"] if row["environments"] == 0)
    assert unused["list_url"] == ""


@pytest.mark.django_db
def test_the_fleet_wants_a_login(client):
    response = client.get(reverse("fleet"))
    assert response.status_code == 302 and "/login" in response["Location"]
