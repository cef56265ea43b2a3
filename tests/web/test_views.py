"""The browser UI's pages and actions, through Django's test client.

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

from portal.models import ApiToken, Environment, GitHubMirror, Run, RunKind, RunStatus
from portal.services import tokens as token_service
from portal.services.catalog import get_catalog
from tests.factories import (
    make_allocation,
    make_department,
    make_endpoint,
    make_environment,
    make_product,
    make_run,
    make_run_event,
    make_user,
)
from tests.world import world  # noqa: F401

pytestmark = pytest.mark.django_db

CREATE_URL = reverse("environment-create")


def login(client, user):
    client.force_login(user)
    return client


def as_user(client, world, who):
    """A client logged in as `who` of the world (None = anonymous)."""
    if who is not None:
        client.force_login(getattr(world, who))
    return client


def create_post(world, **overrides):
    data = {
        "product": world.product.pk,
        "pattern": "demo-ecs",
        "name": "dev",
        "account": "",
        "param-app_name": "app",
        "param-container_image": "public.ecr.aws/nginx/nginx:latest",
        "param-cpu": "256",
        "param-desired_count": "1",
        "param-note": "",
        "param-tags": "",
        "param-delay_seconds": "0",
        "param-fail_on": "",
        "param-fail_on_destroy": "",
    }
    data.update(overrides)
    return data


def text(response) -> str:
    return response.content.decode()


# --- anonymous ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, args",
    [
        ("home", []),
        ("environment-create", []),
        ("environment-detail", ["ENV"]),
        ("run-detail", ["RUN"]),
        ("run-live", ["RUN"]),
        ("token-list", []),
    ],
)
def test_anonymous_visitors_are_sent_to_the_login_page(client, world, name, args):
    env = make_environment(world.product)
    run = make_run(env)
    url = reverse(name, args=[{"ENV": env.pk, "RUN": run.pk}[a] for a in args])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


@pytest.mark.parametrize("action", ["environment-delete", "environment-retry", "run-cancel", "token-revoke"])
def test_anonymous_posts_change_nothing_and_go_to_login(client, world, action):
    env = make_environment(world.product, status="incomplete")
    run = make_run(env, status=RunStatus.QUEUED)
    target = {"run-cancel": run.pk, "token-revoke": 1}.get(action, env.pk)
    response = client.post(reverse(action, args=[target]), {"confirm_name": env.name})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert Run.objects.count() == 1 and Run.objects.get().status == RunStatus.QUEUED


def test_the_login_page_logs_in_and_out(client, world):
    page = client.get(reverse("login"))
    assert page.status_code == 200 and 'name="username"' in text(page) and "portal.css" in text(page)
    response = client.post(reverse("login"), {"username": "owner", "password": "correct-horse-battery-staple"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    bad = client.post(reverse("login"), {"username": "owner", "password": "nope"})
    assert bad.status_code == 200 and "enter a correct username and password" in text(bad)
    out = client.post(reverse("logout"))
    assert out.status_code == 302 and client.get("/").status_code == 302


# --- environments list ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "stranger", "staff"])
def test_every_user_sees_every_environment(client, world, who):
    mine = make_environment(world.product, name="alpha")
    theirs = make_environment(world.other_product, name="bravo")
    response = as_user(client, world, who).get("/")
    assert response.status_code == 200
    assert {mine, theirs} <= set(response.context["environments"])
    assert 'href="/environments/%d/"' % mine.pk in text(response)


def test_the_list_shows_badges_endpoints_and_the_active_run(client, world):
    env = make_environment(world.product, name="alpha", status="ready")
    make_endpoint(env, fqdn="app-alpha.payments.sandbox.test", url="https://app-alpha.payments.sandbox.test/")
    busy = make_environment(world.product, name="busy", status="provisioning")
    run = make_run(busy, status=RunStatus.RUNNING)
    page = text(login(client, world.owner).get("/"))
    assert '<span class="badge badge--ok" data-status="ready">Ready</span>' in page
    assert 'href="https://app-alpha.payments.sandbox.test/"' in page
    assert f'href="/runs/{run.pk}/"' in page


def test_the_list_filters_by_department_product_pattern_and_status(client, world):
    make_environment(world.product, name="alpha", status="ready")
    make_environment(world.other_product, name="bravo", status="failed")
    make_environment(world.product, name="charlie", status="ready", pattern_slug="aws-ecs")
    make_environment(world.product, name="gone", status="deleted")
    login(client, world.owner)

    def names(query):
        response = client.get("/", query)
        assert response.status_code == 200
        return {env.name for env in response.context["environments"]}

    assert names({}) == {"alpha", "bravo", "charlie"}
    assert names({"department": "logistics"}) == {"bravo"}
    assert names({"product": "shop"}) == {"alpha", "charlie"}
    assert names({"pattern": "demo-ecs"}) == {"alpha", "bravo"}
    assert names({"status": "failed"}) == {"bravo"}
    assert names({"status": "deleted"}) == {"gone"}
    assert names({"include_deleted": "on", "product": "shop"}) == {"alpha", "charlie", "gone"}
    assert names({"product": "shop", "status": "ready", "pattern": "aws-ecs"}) == {"charlie"}


def test_the_list_searches_names_and_fqdns(client, world):
    env = make_environment(world.product, name="alpha")
    make_environment(world.product, name="bravo")
    make_endpoint(env, fqdn="checkout-eu.payments.sandbox.test")
    login(client, world.owner)
    assert [e.name for e in client.get("/", {"q": "brav"}).context["environments"]] == ["bravo"]
    assert [e.name for e in client.get("/", {"q": "checkout-eu"}).context["environments"]] == ["alpha"]
    empty = client.get("/", {"q": "nothing-like-this"})
    assert "No environment matches these filters" in text(empty)


def test_the_list_is_paginated_and_keeps_the_filters(client, world):
    for number in range(30):
        make_environment(world.product, name=f"env-{number:02d}")
    login(client, world.owner)
    first = client.get("/", {"product": "shop"})
    assert len(first.context["environments"]) == 25
    assert 'href="?product=shop&amp;page=2"' in text(first)
    second = client.get("/", {"product": "shop", "page": 2})
    assert len(second.context["environments"]) == 5 and "Page 2 of 2" in text(second)


def test_the_list_costs_the_same_queries_for_many_rows(client, world):
    login(client, world.owner)

    def queries_for_page():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/").status_code == 200
        return len(captured)

    def add(count):
        for _ in range(count):
            env = make_environment(world.product)
            make_endpoint(env)
            make_run(env, status=RunStatus.SUCCEEDED)

    add(2)
    few = queries_for_page()
    add(15)
    many = queries_for_page()
    assert many == few, f"{few} queries for 2 rows but {many} for 17"


# --- create --------------------------------------------------------------------------------------


def test_the_create_form_offers_only_the_users_products_and_suggests_a_name(client, world):
    page = login(client, world.owner).get(CREATE_URL)
    assert page.status_code == 200
    html = text(page)
    assert ">Shop (Payments)</option>" in html and "Parcel" not in html
    assert 'value="sandbox-1"' in html
    assert "Demo ECS service (offline)" in html and "~30s" in html  # the pattern and its duration
    staff_page = text(login(client, world.staff).get(CREATE_URL))
    assert "Shop (Payments)" in staff_page and "Parcel (Logistics)" in staff_page


def test_the_parameter_form_is_generated_from_the_schema(client, world):
    html = text(login(client, world.owner).get(CREATE_URL))
    # enum of integers -> a select with the default chosen
    assert '<select name="param-cpu"' in html and '<option value="256" selected>256</option>' in html
    # integer with limits -> a number input carrying them; description as help text
    assert 'type="number" name="param-desired_count" value="1"' in html and 'max="4"' in html and 'min="1"' in html
    assert "How many copies of the task run behind the load balancer." in html
    # object of strings -> key=value textarea; long string -> textarea
    assert '<textarea name="param-tags"' in html and '<textarea name="param-note"' in html
    # enum with "" -> a "none" choice
    assert '<option value="" selected>— none —</option>' in html


def test_a_user_of_no_department_is_told_why_there_is_no_form(client, world):
    loner = make_user("loner")
    response = login(client, loner).get(CREATE_URL)
    assert response.status_code == 403
    assert "not a member of any department" in text(response)


def test_creating_redirects_to_the_run_page_at_once(client, world, django_capture_on_commit_callbacks):
    login(client, world.owner)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(CREATE_URL, create_post(world, **{"param-desired_count": "2", "param-tags": "team=pay\nowner = alice"}))
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert (run.kind, run.status) == (RunKind.CREATE, RunStatus.QUEUED)
    env = run.environment
    assert env.name == "dev" and env.requested_by == world.owner and env.account == world.account
    assert env.parameters["desired_count"] == 2 and env.parameters["tags"] == {"team": "pay", "owner": "alice"}
    page = client.get(response["Location"])
    assert "dev requested: run #%d is queued." % run.pk in text(page)


def test_staff_may_create_for_any_product(client, world, django_capture_on_commit_callbacks):
    login(client, world.staff)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(CREATE_URL, create_post(world, product=world.other_product.pk))
    assert response.status_code == 302
    assert Environment.objects.get().product == world.other_product


def test_creating_for_another_departments_product_is_refused_with_a_clear_403(client, world):
    login(client, world.stranger)
    response = client.post(CREATE_URL, create_post(world))
    assert response.status_code == 403
    assert "only members of Payments (or staff) may" in text(response)
    assert not Environment.objects.exists()


def test_parameter_errors_from_the_service_land_on_their_fields_and_keep_the_input(client, world):
    login(client, world.owner)
    response = client.post(
        CREATE_URL,
        create_post(world, name="my-env", **{"param-desired_count": "9", "param-app_name": "Bad Name", "param-note": "keep me"}),
    )
    assert response.status_code == 200 and not Environment.objects.exists()
    params = response.context["parameter_form"]
    assert params.errors["desired_count"] == ["must be at most 4"]
    assert "is not in the required form" in params.errors["app_name"][0]
    html = text(response)
    assert "Some parameters are not valid." in html
    assert 'value="my-env"' in html and "keep me</textarea>" in html and 'value="Bad Name"' in html


def test_a_key_value_line_without_equals_is_refused_on_the_field(client, world):
    response = login(client, world.owner).post(CREATE_URL, create_post(world, **{"param-tags": "team=pay\nnonsense"}))
    assert response.context["parameter_form"].errors["tags"] == ["line 2: write key=value"]


def test_a_taken_name_is_an_error_on_the_name_field(client, world):
    make_environment(world.product, name="dev")
    response = login(client, world.owner).post(CREATE_URL, create_post(world))
    assert response.status_code == 200
    assert response.context["form"].errors["name"] == ["shop/dev already exists; choose another name."]


def test_an_invalid_name_is_explained(client, world):
    response = login(client, world.owner).post(CREATE_URL, create_post(world, name="Not_OK"))
    assert "lowercase letters, digits and hyphens" in response.context["form"].errors["name"][0]


def test_an_account_of_another_department_is_refused_on_the_account_field(client, world):
    response = login(client, world.owner).post(CREATE_URL, create_post(world, account=world.other_account.pk))
    assert "belongs to another department" in response.context["form"].errors["account"][0]


def test_no_free_network_is_shown_before_and_refused_on_submit(client, world):
    world.account.cidr_pools.update(cidr="10.80.0.0/24", prefix_length=24)
    holder = make_environment(world.product, name="holder")
    make_allocation(holder, pool=world.account.cidr_pools.get(), cidr="10.80.0.0/24")
    login(client, world.owner)
    assert "No free network left in the account" in text(client.get(CREATE_URL))
    response = client.post(CREATE_URL, create_post(world))
    assert "No free network left in the pools" in response.context["form"].errors["account"][0]


def test_the_form_shows_a_busy_accounts_queue_and_expected_wait(client, world):
    # payments-sandbox has 2 slots: 2 running + 1 queued = 3 ahead -> one round of ~30 s.
    for name in ("a", "b", "c"):
        env = make_environment(world.product, name=name, status="provisioning")
        make_run(env, status=RunStatus.RUNNING if name != "c" else RunStatus.QUEUED)
    html = text(login(client, world.owner).get(CREATE_URL))
    assert "2 running, 1 queued of 2 slots. 3 runs ahead, expected wait ~1 min." in html


def test_the_name_check_runs_before_submit(client, world):
    make_environment(world.product, name="taken")
    html = text(login(client, world.owner).get(CREATE_URL, {"refresh": "1", "product": world.product.pk, "pattern": "demo-ecs", "name": "taken"}))
    assert "shop/taken already exists; choose another name." in html


def test_switching_the_pattern_rerenders_the_fields_as_an_htmx_fragment(client, world):
    login(client, world.owner)
    query = {"refresh": "1", "product": world.product.pk, "pattern": "demo-ecs", "name": "mine", "suggested_name": "sandbox-1", "param-note": "typed"}
    fragment = client.get(CREATE_URL, query, headers={"HX-Request": "true"})
    html = text(fragment)
    assert fragment.status_code == 200 and not html.lstrip().startswith("<!doctype")
    assert html.lstrip().startswith('<div id="create-body"') and 'name="param-cpu"' in html
    assert 'value="mine"' in html and "typed</textarea>" in html
    # Without JavaScript, the same GET renders the whole page.
    page = client.get(CREATE_URL, query)
    assert text(page).startswith("<!doctype html>") and "typed</textarea>" in text(page)


def test_values_of_the_previous_patterns_fields_do_not_carry_into_another_pattern(client, world):
    """The fields were rendered for `parameters_of`: after a pattern switch the new pattern's
    own defaults show, while a refresh of the same pattern keeps what was typed."""
    login(client, world.owner)
    base = {"refresh": "1", "product": world.product.pk, "name": "mine", "param-container_image": "public.ecr.aws/nginx/nginx:latest"}
    switched = text(client.get(CREATE_URL, {**base, "pattern": "ecs-fullstack", "parameters_of": "demo-ecs"}))
    assert 'value="public.ecr.aws/nginx/nginx:stable"' in switched and "nginx:latest" not in switched
    assert 'name="parameters_of" value="ecs-fullstack"' in switched
    kept = text(client.get(CREATE_URL, {**base, "pattern": "ecs-fullstack", "parameters_of": "ecs-fullstack"}))
    assert 'value="public.ecr.aws/nginx/nginx:latest"' in kept


def test_the_panel_names_the_fqdn_of_the_typed_parameters(client, world):
    login(client, world.owner)
    query = {"refresh": "1", "product": world.product.pk, "pattern": "demo-ecs", "name": "mine",
             "parameters_of": "demo-ecs", "param-app_name": "shop", "param-container_image": "nginx:1"}
    html = text(client.get(CREATE_URL, query, headers={"HX-Request": "true"}))
    assert "It would be reachable at <span class=\"mono\">shop-mine." in html


def test_an_untouched_suggested_name_follows_the_product(client, world):
    make_environment(world.product, name="sandbox-1")
    login(client, world.staff)
    html = text(client.get(CREATE_URL, {"refresh": "1", "product": world.product.pk, "name": "sandbox-1", "suggested_name": "sandbox-1"}))
    assert 'name="name" value="sandbox-2"' in html


# --- environment page ------------------------------------------------------------------------------


def test_the_environment_page_shows_everything_about_it(client, world):
    env = make_environment(
        world.product,
        name="alpha",
        status="ready",
        cidr="10.80.3.0/24",
        outputs={"app_fqdn": "app-alpha.payments.sandbox.test", "app_url": "https://app-alpha.payments.sandbox.test/", "tags": {"a": "b"}},
        parameters={"cpu": 256, "note": ""},
        orphans=[{"arn": "arn:aws:ecs:eu-west-1:000000000001:service/left-behind"}],
    )
    make_endpoint(env, fqdn="app-alpha.payments.sandbox.test", url="https://app-alpha.payments.sandbox.test/")
    create = make_run(env, status=RunStatus.SUCCEEDED, requested_by=world.owner)
    GitHubMirror.objects.create(
        run=create, repository="acme/provisioning", issue_number=12, issue_url="https://github.com/acme/provisioning/issues/12",
        commit_sha="abcdef1234567890", commit_url="https://github.com/acme/provisioning/commit/abcdef1234567890",
    )
    html = text(login(client, world.stranger).get(reverse("environment-detail", args=[env.pk])))
    assert "10.80.3.0/24" in html and "Demo ECS service (offline)" in html and "v1.1.0" in html
    assert 'href="https://app-alpha.payments.sandbox.test/"' in html
    assert "arn:aws:ecs:eu-west-1:000000000001:service/left-behind" in html
    assert 'href="https://github.com/acme/provisioning/issues/12"' in html and "commit abcdef1" in html
    assert f'href="/runs/{create.pk}/"' in html
    assert "Only members of Payments (or staff) may delete" in html and 'id="delete-form"' not in html


def test_a_member_sees_delete_with_name_confirmation_and_retry_when_incomplete(client, world):
    env = make_environment(world.product, name="alpha", status="incomplete", status_reason="Create cancelled during apply")
    html = text(login(client, world.member).get(reverse("environment-detail", args=[env.pk])))
    assert 'id="delete-form"' in html and "Retry create" in html and "Create cancelled during apply" in html


def test_an_unknown_environment_is_a_404_page(client, world):
    response = login(client, world.owner).get(reverse("environment-detail", args=[9999]))
    assert response.status_code == 404 and "No such environment." in text(response)


# --- delete ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("who, allowed", [("owner", True), ("member", True), ("staff", True), ("stranger", False)])
def test_delete_permission_matrix(client, world, who, allowed, django_capture_on_commit_callbacks):
    env = make_environment(world.product, name="alpha", status="ready")
    as_user(client, world, who)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("environment-delete", args=[env.pk]), {"confirm_name": "alpha"})
    env.refresh_from_db()
    if allowed:
        run = Run.objects.get(kind=RunKind.DESTROY)
        assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
        assert env.status == "deleting"
    else:
        assert response.status_code == 403
        assert "You may not delete environments of Shop: only members of Payments (or staff) may." in text(response)
        assert env.status == "ready" and not Run.objects.exists()


def test_delete_needs_the_exact_name(client, world):
    env = make_environment(world.product, name="alpha", status="ready")
    response = login(client, world.owner).post(reverse("environment-delete", args=[env.pk]), {"confirm_name": "alph"})
    assert response.status_code == 400
    assert "That is not the name of this environment: type alpha exactly to delete it." in text(response)
    assert not Run.objects.exists()


def test_deleting_an_environment_that_is_still_provisioning_is_explained(client, world):
    env = make_environment(world.product, name="alpha", status="provisioning")
    make_run(env, status=RunStatus.RUNNING)
    response = login(client, world.owner).post(reverse("environment-delete", args=[env.pk]), {"confirm_name": "alpha"})
    assert response.status_code == 409
    assert "it can be deleted once its current run ends" in text(response)


# --- retry ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who, allowed", [("owner", True), ("staff", True), ("stranger", False)])
def test_retry_permission_matrix(client, world, who, allowed, django_capture_on_commit_callbacks):
    env = make_environment(world.product, name="alpha", status="incomplete")
    as_user(client, world, who)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("environment-retry", args=[env.pk]))
    if allowed:
        run = Run.objects.get()
        assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    else:
        assert response.status_code == 403 and "You may not retry environments of Shop" in text(response)
        assert not Run.objects.exists()


def test_retrying_a_ready_environment_is_explained(client, world):
    env = make_environment(world.product, name="alpha", status="ready")
    response = login(client, world.owner).post(reverse("environment-retry", args=[env.pk]))
    assert response.status_code == 409 and "Only an incomplete environment can be retried" in text(response)


# --- cancel -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("who, allowed", [("owner", True), ("member", True), ("staff", True), ("stranger", False)])
def test_cancel_permission_matrix(client, world, who, allowed):
    env = make_environment(world.product, name="alpha", status="provisioning")
    run = make_run(env, status=RunStatus.QUEUED)
    response = as_user(client, world, who).post(reverse("run-cancel", args=[run.pk]))
    run.refresh_from_db()
    if allowed:
        assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
        assert run.status == RunStatus.CANCELLED
        assert "was cancelled before it started" in text(client.get(response["Location"]))
    else:
        assert response.status_code == 403
        assert "You may not cancel runs of environments of Shop" in text(response)
        assert run.status == RunStatus.QUEUED


def test_cancelling_a_running_run_asks_terraform_to_stop(client, world):
    env = make_environment(world.product, status="provisioning")
    run = make_run(env, status=RunStatus.RUNNING, stage="apply")
    response = login(client, world.owner).post(reverse("run-cancel", args=[run.pk]), follow=True)
    run.refresh_from_db()
    assert run.cancel_requested_at is not None and "Terraform is being stopped" in text(response)


def test_cancel_buttons_only_for_those_who_may(client, world):
    run = make_run(make_environment(world.product, status="provisioning"), status=RunStatus.QUEUED)
    url = reverse("run-detail", args=[run.pk])
    assert "Cancel run…" in text(login(client, world.owner).get(url))
    assert "Cancel run…" not in text(login(client, world.stranger).get(url))


# --- run page and its live endpoint ------------------------------------------------------------


def poll(client, run, **query):
    """One poll of the run page, as htmx sends it: (status, main part, out-of-band part, next query).

    The main part is what htmx appends to the log; the out-of-band part holds the fragments
    with `hx-swap-oob`; the next query is what the re-rendered poller asks for next (None: stopped).
    """
    response = client.get(reverse("run-live", args=[run.pk]), query, HTTP_HX_REQUEST="true")
    html = text(response)
    cut = html.find(" hx-swap-oob=")
    cut = html.rfind("<", 0, cut) if cut >= 0 else len(html)
    poller = re.search(r'<div id="run-poller" hidden(?: hx-get="[^"?]+\?after=(\d+)&amp;v=([0-9a-f.]*)")?', html)
    assert poller, "every answer re-renders the poller"
    following = {"after": poller[1], "v": poller[2]} if poller[1] else None
    return response, html[:cut], html[cut:], following


def seqs(html) -> list[int]:
    return [int(seq) for seq in re.findall(r'class="log-line[^"]*" data-seq="(\d+)"', html)]


def test_the_run_page_shows_stages_progress_plan_and_log(client, world):
    env = make_environment(world.product, name="alpha", status="provisioning")
    plan = {"add": 2, "change": 0, "destroy": 0, "replace": 0, "resources": [
        {"address": "terraform_data.network", "type": "terraform_data", "name": "network", "module": None, "actions": ["create"]},
        {"address": "terraform_data.service", "type": "terraform_data", "name": "service", "module": None, "actions": ["create"]},
    ]}
    run = make_run(env, status=RunStatus.RUNNING, stage="apply", plan_summary=plan, resources_planned=2, resources_done=1, started_at=timezone.now())
    make_run_event(run, "terraform_data.network: Creation complete after 1s")
    make_run_event(run, "<script>alert(1)</script>", level="error")
    html = text(login(client, world.stranger).get(reverse("run-detail", args=[run.pk])))
    assert '<li class="stage stage--done" data-step="plan"' in html
    assert '<li class="stage stage--current" data-step="apply" aria-current="step"' in html
    assert '<progress id="run-progress" max="2" value="1"' in html and "1 of 2 resources (50%)" in html
    assert "terraform_data.service" in html and "+2 to add" in html
    assert "terraform_data.network: Creation complete after 1s" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    # The poller asks for the lines after the last one shown, every second; htmx is local.
    assert f'hx-get="/runs/{run.pk}/live/?after=2&amp;v="' in html and 'hx-trigger="every 1s"' in html
    assert 'role="log"' in html and "/static/django_htmx/htmx-2.min.js" in html and "hx-swap-oob" not in html


def test_the_live_endpoint_appends_new_lines_and_swaps_only_what_changed(client, world):
    env = make_environment(world.product, status="provisioning")
    run = make_run(env, status=RunStatus.RUNNING, stage="plan", started_at=timezone.now(), worker="host:1")
    for number in range(3):
        make_run_event(run, f"line {number}")
    login(client, world.owner)
    first, lines, oob, following = poll(client, run, after=0)
    assert first.status_code == 200 and "no-cache" in first["Cache-Control"]
    assert seqs(lines) == [1, 2, 3] and lines.index("line 0") < lines.index("line 1") < lines.index("line 2")
    assert following["after"] == "3" and len(following["v"].split(".")) == 9
    # Out of band: the status, the stage bar, the progress, the panel and the poller.
    assert '<span id="run-status-badges" class="status-line__live" aria-live="polite" hx-swap-oob="innerHTML">' in oob
    assert '<li class="stage stage--current" data-step="plan" aria-current="step">' in oob
    assert 'id="run-progress-box" hx-swap-oob="innerHTML"' in oob and "<dt>Worker</dt><dd class=\"mono small\">host:1</dd>" in oob
    assert 'id="run-poller" hidden hx-get=' in oob and oob.rstrip().endswith("></div>")
    assert 'id="flash"' not in oob  # the arrival's messages stay while the run goes on

    # Nothing new: no lines, no fragments, only the elapsed time and the next poller.
    idle, lines, oob, again = poll(client, run, **following)
    assert idle.status_code == 200 and seqs(lines) == [] and again == following
    assert "run-status-badges" not in oob and "run-stages" not in oob and len(idle.content) < 2000, len(idle.content)

    # A new line and a stage: only those arrive.
    make_run_event(run, "line 3")
    Run.objects.filter(pk=run.pk).update(stage="apply")
    _, lines, oob, _ = poll(client, run, **following)
    assert seqs(lines) == [4] and "run-stages" in oob and "run-about" not in oob and "run-plan" not in oob


def test_the_live_endpoint_respects_after_and_junk_is_read_as_zero(client, world):
    run = make_run(make_environment(world.product, status="provisioning"), status=RunStatus.RUNNING, stage="apply")
    for number in range(5):
        make_run_event(run, f"line {number}")
    login(client, world.owner)
    assert seqs(poll(client, run, after=3)[1]) == [4, 5]
    assert seqs(poll(client, run, after=5)[1]) == [] and poll(client, run, after=5)[3]["after"] == "5"
    assert seqs(poll(client, run, after="abc")[1]) == [1, 2, 3, 4, 5]


def test_the_live_endpoint_sends_the_plan_once_and_answers_286_when_finished(client, world):
    env = make_environment(world.product, status="provisioning")
    make_endpoint(env, fqdn="app-x.payments.sandbox.test", url="javascript:alert(1)")
    plan = {"add": 1, "change": 0, "destroy": 0, "resources": []}
    run = make_run(env, status=RunStatus.RUNNING, stage="outputs", plan_summary=plan, resources_planned=1, resources_done=1)
    make_run_event(run, "Stage: outputs", kind="stage", data={"stage": "outputs"})
    login(client, world.owner)
    _, _, oob, following = poll(client, run, after=1)
    assert '<div id="run-plan" hx-swap-oob="innerHTML">' in oob and "+1 to add" in oob
    assert "Cancel run…" in oob and "csrfmiddlewaretoken" in oob
    _, _, oob, following = poll(client, run, **following)
    assert "run-plan" not in oob and "run-actions" not in oob  # the page has them (a new CSRF mask is no change)

    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    Environment.objects.filter(pk=env.pk).update(status="ready")
    done, _, oob, stopped = poll(client, run, **following)
    assert done.status_code == 286 and stopped is None  # htmx stops polling; the poller is inert
    assert oob.count('class="stage stage--done"') == 7 and ">Finished</span>" in oob and "run-plan" not in oob
    assert 'href="https://app-x.payments.sandbox.test/"' in oob and "javascript:" not in oob
    assert 'id="run-actions" hx-swap-oob="innerHTML"></div>' in oob  # no cancel button any more
    assert 'id="run-environment-status" href="/environments/' in oob and 'data-status="ready"' in oob
    # The flash of the page's arrival ("run #N is queued") is cleared.
    assert '<div id="flash" class="flash" role="status" hidden hx-swap-oob="true"></div>' in oob


def test_a_failed_create_links_its_rollback_and_polls_until_the_rollback_ends(client, world):
    env = make_environment(world.product, status="provisioning")
    create = make_run(env, status=RunStatus.FAILED, stage="apply", explanation="terraform apply failed (exit 1): fail_on=service")
    rollback = make_run(env, kind=RunKind.ROLLBACK, status=RunStatus.RUNNING, stage="destroy", rollback_of=create)
    login(client, world.owner)
    html = text(client.get(reverse("run-detail", args=[create.pk])))
    assert f'href="/runs/{rollback.pk}/"' in html and "fail_on=service" in html
    assert '<li class="stage stage--failed" data-step="apply"' in html
    assert f'hx-get="/runs/{create.pk}/live/' in html  # the rollback is unfinished: the page polls
    response, _, oob, following = poll(client, create, after=0)
    assert response.status_code == 200 and following is not None
    assert f'<a href="/runs/{rollback.pk}/">#{rollback.pk}</a>' in oob and 'data-status="running"' in oob
    states = re.findall(r'class="stage stage--(\w+)" data-step', oob)
    assert states == ["done", "done", "done", "done", "failed", "todo", "todo"]
    rollback_page = text(client.get(reverse("run-detail", args=[rollback.pk])))
    assert f'create run #{create.pk}</a>, whose apply failed' in rollback_page
    Run.objects.filter(pk=rollback.pk).update(status=RunStatus.SUCCEEDED)
    response, _, oob, following = poll(client, create, **following)
    assert response.status_code == 286 and following is None
    assert '<span id="run-rollback-status"><span class="badge badge--ok" data-status="succeeded">' in oob


def test_a_queued_run_shows_its_place_in_the_queue_and_the_expected_wait(client, world):
    world.account.max_concurrent_runs = 1
    world.account.save()
    busy = make_environment(world.product, name="busy", status="provisioning")
    make_run(busy, status=RunStatus.RUNNING)
    first = make_run(make_environment(world.product, name="first", status="provisioning"), status=RunStatus.QUEUED)
    second = make_run(make_environment(world.product, name="second", status="provisioning"), status=RunStatus.QUEUED)
    login(client, world.owner)
    assert "Position 1 in the queue of payments-sandbox. 1 run ahead, expected wait ~1 min." in text(client.get(reverse("run-detail", args=[first.pk])))
    _, _, oob, _ = poll(client, second)
    assert '<p class="queue">Position 2 in the queue of payments-sandbox. 2 runs ahead, expected wait ~1 min.</p>' in oob


# --- API tokens --------------------------------------------------------------------------------------


def token_form(client, **data):
    """The create-token form's fields, with the one-time nonce of a freshly loaded page."""
    return {"nonce": client.get(reverse("token-list")).context["nonce"], "expires_at": "", **data}


def test_a_token_is_created_and_its_key_shown_once(client, world):
    login(client, world.owner)
    response = client.post(reverse("token-list"), token_form(client, name="CI pipeline"))
    assert response.status_code == 201 and "no-store" in response["Cache-Control"]
    key = response.context["created_key"]
    token = ApiToken.objects.get(user=world.owner)
    assert key.startswith(token.prefix) and key in text(response)
    listing = text(client.get(reverse("token-list")))
    assert "CI pipeline" in listing and key not in listing and f"{token.prefix}…" in listing


def test_resubmitting_the_token_form_makes_no_second_token(client, world):
    login(client, world.owner)
    data = token_form(client, name="CI pipeline")
    assert client.post(reverse("token-list"), data).status_code == 201
    again = client.post(reverse("token-list"), data)
    assert again.status_code == 409 and "already submitted" in text(again) and again.context["created_key"] is None
    assert ApiToken.objects.count() == 1


def test_token_errors_are_shown_on_the_form(client, world):
    login(client, world.owner)
    past = (timezone.now() - timedelta(days=2)).date().isoformat()
    response = client.post(reverse("token-list"), token_form(client, name="old", expires_at=past))
    assert response.status_code == 200 and response.context["form"].errors["expires_at"] == ["The expiry must be in the future."]
    assert not ApiToken.objects.exists()


def test_only_own_tokens_are_listed_and_revocable(client, world):
    mine, _ = token_service.create_token(user=world.owner, name="mine")
    theirs, _ = token_service.create_token(user=world.stranger, name="theirs")
    login(client, world.owner)
    listing = text(client.get(reverse("token-list")))
    assert "mine" in listing and "theirs" not in listing
    refused = client.post(reverse("token-revoke", args=[theirs.pk]))
    assert refused.status_code == 403 and "You may revoke only your own API tokens." in text(refused)
    response = client.post(reverse("token-revoke", args=[mine.pk]), follow=True)
    assert "Token “mine” revoked" in text(response) and ">revoked</span>" in text(response)
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None and theirs.revoked_at is None


# --- the page frame ------------------------------------------------------------------------------------


def test_the_header_has_the_nav_and_admin_only_for_staff(client, world):
    html = text(login(client, world.owner).get("/"))
    assert 'aria-current="page">Environments</a>' in html and "New environment" in html and "API tokens" in html
    assert 'href="/admin/"' not in html
    assert 'href="/admin/"' in text(login(client, world.staff).get("/"))


def test_assets_are_local(client, world):
    html = text(login(client, world.owner).get(CREATE_URL))
    assert "/static/portal/portal.css" in html and "/static/django_htmx/htmx-2.min.js" in html
    assert "http://" not in html.split("<main")[0] and "https://" not in html.split("<main")[0]


def test_a_department_without_an_account_is_explained_before_submit(client, world):
    lonely = make_department("lonely", members=[world.owner])
    product = make_product(lonely, slug="solo")
    html = text(login(client, world.owner).get(CREATE_URL, {"product": product.pk}))
    assert "has no active sandbox account; ask an admin to add one." in html


def test_junk_in_query_strings_is_never_a_server_error(client, world):
    run = make_run(make_environment(world.product))
    login(client, world.owner)
    for url, query in [
        (CREATE_URL, {"refresh": "1", "product": "abc", "pattern": "nope", "account": "x'--", "param-cpu": "lots"}),
        (CREATE_URL, {"product": "999999", "account": "999999"}),
        ("/", {"page": "last-ish", "status": "bogus", "department": "<b>", "include_deleted": "maybe"}),
        (reverse("run-live", args=[run.pk]), {"after": "-5"}),
        (reverse("run-live", args=[run.pk]), {"after": "abc"}),
    ]:
        response = client.get(url, query)
        finished = url.endswith("/live/") and response.status_code == 286  # a finished run: stop polling
        assert response.status_code in (200, 403) or finished, (url, query, response.status_code)
    junk = client.post(CREATE_URL, {"product": "abc", "pattern": "nope", "account": "zzz"})
    assert junk.status_code == 200 and junk.context["form"].errors


@pytest.mark.parametrize("slug", sorted(get_catalog()))
def test_every_pattern_of_the_catalog_gets_its_parameter_form(client, world, slug):
    pattern = get_catalog()[slug]
    response = login(client, world.owner).get(CREATE_URL, {"product": world.product.pk, "pattern": slug})
    assert response.status_code == 200
    html = text(response)
    for param in pattern.parameter_fields():
        assert f'name="param-{param.name}"' in html, param.name
        assert escape(param.description) in html
    if pattern.cloud == "aws":  # the world's accounts are local
        assert f"{pattern.name} needs an AWS account; payments-sandbox is local." in html


def test_the_default_pattern_is_one_the_account_can_run(client, world):
    response = login(client, world.owner).get(CREATE_URL)
    assert response.context["pattern"].cloud != "aws"
