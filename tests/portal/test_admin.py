"""The admin: every page renders, admins' mistakes get clear messages, engine rows stay read-only."""

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from portal.models import (
    CidrPool,
    Department,
    Environment,
    NotificationTarget,
    Product,
    Run,
    RunEvent,
    SandboxAccount,
    StateVersion,
)
from tests.factories import (
    make_account,
    make_allocation,
    make_department,
    make_endpoint,
    make_environment,
    make_pool,
    make_product,
    make_run,
    make_run_event,
    make_state_lock,
    make_state_lock_release,
    make_state_version,
    make_superuser,
    make_user,
)

pytestmark = pytest.mark.django_db

REGISTERED = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
REGISTERED_IDS = [model._meta.label for model, _ in REGISTERED]
# Admins manage these; every other model of the portal is written by the engine.
ADMIN_MANAGED = {Department, SandboxAccount, CidrPool, Product, NotificationTarget}
ENGINE_MODELS = sorted(
    (model for model in admin.site._registry if model._meta.app_label == "portal" and model not in ADMIN_MANAGED),
    key=lambda model: model._meta.label,
)


@pytest.fixture
def admin_user(db):
    """A superuser (replaces pytest-django's, which pays for a password hash in every test)."""
    return make_superuser()


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def _url(model, view, *args):
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def make_world():
    """One row of every model (and of auth's), linked the way the engine links them."""
    from django.contrib.auth.models import Group

    from portal.models import ChangePlan, DriftCheck, GitHubMirror, IdempotencyRecord, ListenerPriority, PatternVersion
    from portal.services.tokens import create_token

    department = make_department()
    developer = make_user(departments=[department])
    Group.objects.get_or_create(name="Operators")
    account = make_account(department)
    pool = make_pool(account, "10.60.0.0/16")
    product = make_product(department)
    environment = make_environment(
        product,
        account=account,
        requested_by=developer,
        parameters={"desired_count": 2},
        outputs={"url": "https://app.example.test"},
        code_snapshot={"main.tf": 'module "app" {}', "locals.tf": 'locals { name = "<script>" }'},
    )
    make_allocation(environment, pool=pool)
    make_endpoint(environment)
    create = make_run(environment, requested_by=developer, resources_planned=4, resources_done=4)
    rollback = make_run(environment, kind="rollback", status="failed", rollback_of=create, traceback="Traceback ...")
    make_run_event(create, "Plan: 4 to add, 0 to change, 0 to destroy.")
    make_run_event(create, "<b>Apply complete!</b>")
    make_run_event(rollback, "destroying")
    make_state_version(environment, run=create, resources=4)
    make_state_lock(environment, run=rollback)
    make_state_lock_release(environment, released_by=developer)
    token, _ = create_token(user=developer, name="ci")
    IdempotencyRecord.objects.create(
        user=developer, key=f"k{token.pk}", method="POST", path="/api/v1/environments/",
        request_hash="0" * 64, response_status=202, response_body={"a": 1},
    )
    ListenerPriority.objects.create(
        account=account, listener_arn="arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/x/y/z",
        priority=100, environment=environment,
    )
    GitHubMirror.objects.create(run=create, repository="acme/provisioning", issue_number=7, last_error="boom")
    from portal.models import Notification
    from portal.services.notifications import encrypt_url

    target = NotificationTarget.objects.create(department=department, name="chat", url_hint="json://hooks.example.test",
                                               url_encrypted=encrypt_url("json://hooks.example.test/in/secret"))
    Notification.objects.create(target=target, event="ready", environment=environment, dedupe_key=f"ready:run:{create.pk}",
                                title="<b>ready</b>", body="b", status="failed", attempts=6, last_error="refused")
    plan_run = make_run(environment, kind="plan", status="succeeded", requested_by=developer)
    drifted = DriftCheck.objects.create(
        environment=environment, status="drifted", explanation="1 resource(s) changed outside Terraform",
        resources=[{"address": "terraform_data.web", "type": "terraform_data", "action": "update",
                    "attributes": [{"attribute": "input", "before": "<b>a</b>", "after": "b"}]}],
        log="$ terraform plan -> exit 0",
    )
    ChangePlan.objects.create(
        environment=environment, plan_run=plan_run, requested_by=developer, parameters={"desired_count": 3},
        pattern_version="1.1.0", pattern_version_before="1.0.0", code_snapshot={"main.tf": ""}, plan_file=b"PK",
        resource_changes=[{"address": "terraform_data.web", "action": "update", "moved_from": "", "attributes": ["input"]}],
        fixes_drift=drifted,
    )
    PatternVersion.objects.get_or_create(slug="demo-ecs", version="1.1.0", defaults={"digest": "0" * 64, "source": "bundled"})
    return environment


# --- Every page renders -----------------------------------------------------------------------


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=REGISTERED_IDS)
def test_it_renders_every_changelist_and_add_page(admin_client, model, model_admin, rf, admin_user):
    make_world()
    assert admin_client.get(_url(model, "changelist")).status_code == 200
    assert admin_client.get(_url(model, "changelist"), {"q": "a"}).status_code == 200

    request = rf.get("/")
    request.user = admin_user
    expected = 200 if model_admin.has_add_permission(request) else 403
    assert admin_client.get(_url(model, "add")).status_code == expected


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=REGISTERED_IDS)
def test_it_renders_every_change_page(admin_client, model, model_admin):
    make_world()
    row = model.objects.first()
    assert row is not None, f"make_world() has no {model._meta.label} row: add one so its admin is tested"
    response = admin_client.get(_url(model, "change", row.pk))
    assert response.status_code == 200


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=REGISTERED_IDS)
def test_it_lists_many_rows_with_as_few_queries_as_one(admin_client, model, model_admin):
    make_world()
    with CaptureQueriesContext(connection) as one_world:
        admin_client.get(_url(model, "changelist"))
    for _ in range(3):
        make_world()
    with CaptureQueriesContext(connection) as four_worlds:
        admin_client.get(_url(model, "changelist"))
    assert len(four_worlds) == len(one_world), [query["sql"] for query in four_worlds.captured_queries]


def test_it_shows_an_environment_with_its_endpoints_runs_and_state(admin_client):
    environment = make_world()
    response = admin_client.get(_url(Environment, "change", environment.pk))
    content = response.content.decode()
    assert environment.endpoints.get().fqdn in content
    for run in environment.runs.all():
        assert _url(Run, "change", run.pk) in content
    assert environment.cidr_allocations.get().cidr in content
    assert "&lt;script&gt;" in content and '<script>"' not in content
    assert f"{_url(StateVersion, 'changelist')}?environment__id__exact={environment.pk}" in content


def test_it_shows_a_runs_events_oldest_first_and_escaped(admin_client):
    environment = make_world()
    run = environment.runs.get(kind="create")
    content = admin_client.get(_url(Run, "change", run.pk)).content.decode()
    plan = content.index("Plan: 4 to add")
    apply = content.index("&lt;b&gt;Apply complete!&lt;/b&gt;")
    assert plan < apply
    assert "destroying" not in content  # the rollback's events stay on the rollback's page
    assert "100% (4/4)" in content


def test_it_never_shows_state_content_or_token_hashes(admin_client):
    environment = make_world()
    run = environment.runs.get(kind="create")
    Run.objects.filter(pk=run.pk).update(state_token_hash="pbkdf2-secret-hash")
    version = StateVersion.objects.get()
    run_page = admin_client.get(_url(Run, "change", run.pk)).content.decode()
    state_page = admin_client.get(_url(StateVersion, "change", version.pk)).content.decode()
    assert "pbkdf2-secret-hash" not in run_page
    assert "terraform_data" not in state_page
    assert f"{version.size} bytes, not shown" in state_page


def test_it_offers_department_members_side_by_side(admin_client):
    department = make_department()
    content = admin_client.get(_url(Department, "change", department.pk)).content.decode()
    assert 'class="selectfilter"' in content


def test_it_counts_a_departments_members_products_and_accounts_without_multiplying(admin_client):
    department = make_department(members=[make_user(), make_user(), make_user()])
    make_product(department), make_product(department)
    make_account(department)
    row = admin_client.get(_url(Department, "changelist")).context["cl"].result_list.get(pk=department.pk)
    assert (row._members, row._products, row._accounts) == (3, 2, 1)


# --- Engine rows are read-only ----------------------------------------------------------------


@pytest.mark.parametrize("model", ENGINE_MODELS, ids=lambda model: model._meta.label)
def test_it_lets_no_one_edit_what_the_engine_writes(admin_client, model, rf, admin_user):
    make_world()
    row = model.objects.first()
    model_admin = admin.site._registry[model]
    request = rf.get("/")
    request.user = admin_user
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, row)
    assert not model_admin.has_delete_permission(request, row)
    assert admin_client.post(_url(model, "change", row.pk), {}).status_code == 403
    assert admin_client.post(_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=row.pk).exists()


def test_it_covers_every_engine_model():
    labels = {model._meta.object_name for model in ENGINE_MODELS}
    assert labels == {
        "Environment",
        "Run",
        "Endpoint",
        "CidrAllocation",
        "StateVersion",
        "StateLock",
        "StateLockRelease",
        "ApiToken",
        "IdempotencyRecord",
        "ListenerPriority",
        "GitHubMirror",
        "Notification",
        "ChangePlan",
        "DriftCheck",
        "PatternVersion",
    }


def test_it_keeps_run_events_inside_their_run_page():
    assert RunEvent not in admin.site._registry


def test_it_refuses_to_delete_an_account_in_use_with_a_page_not_an_error(admin_client):
    environment = make_world()
    account = environment.account
    response = admin_client.post(_url(SandboxAccount, "delete", account.pk), {"post": "yes"})
    assert response.status_code == 200
    assert "<title>Cannot delete sandbox account" in response.content.decode()
    assert SandboxAccount.objects.filter(pk=account.pk).exists()


# --- Account form and its pools ---------------------------------------------------------------


def form_data(response) -> dict:
    """The POST data the admin page in `response` would submit unchanged (form, inline forms
    and their management forms), for a test to modify."""
    data = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
        forms.extend(inline.formset.forms)
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is None or value is False:
                continue
            data[form[name].html_name] = "on" if value is True else value
    return data


def add_pools(data: dict, *pools) -> dict:
    """Fill the inline's new rows with `pools` ((cidr, prefix_length) pairs)."""
    initial = int(data["cidr_pools-INITIAL_FORMS"])
    for offset, (cidr, prefix_length) in enumerate(pools):
        index = initial + offset
        data[f"cidr_pools-{index}-cidr"] = cidr
        data[f"cidr_pools-{index}-prefix_length"] = prefix_length
    data["cidr_pools-TOTAL_FORMS"] = initial + max(len(pools), 1)
    return data


def account_add_data(admin_client, **fields) -> dict:
    data = form_data(admin_client.get(_url(SandboxAccount, "add")))
    data.update(
        name="Payments sandbox",
        department=make_department().pk,
        kind="local",
        account_id="123456789012",
        dns_zone="sandbox.example.test",
    )
    data.update(fields)
    return data


def account_change_data(admin_client, account) -> dict:
    return form_data(admin_client.get(_url(SandboxAccount, "change", account.pk)))


def pool_row(data: dict, cidr: str) -> str:
    """The inline prefix (`cidr_pools-N`) of the saved pool `cidr`."""
    for key, value in data.items():
        if key.endswith("-cidr") and value == cidr:
            return key.removesuffix("-cidr")
    raise AssertionError(f"no row for {cidr}")


def test_it_adds_an_account_with_its_pools(admin_client):
    data = add_pools(account_add_data(admin_client), ("10.20.0.0/16", 24), ("10.21.0.0/16", 26))
    response = admin_client.post(_url(SandboxAccount, "add"), data)
    assert response.status_code == 302, response.context["errors"] if response.context else response
    account = SandboxAccount.objects.get(account_id="123456789012")
    assert sorted(account.cidr_pools.values_list("cidr", "prefix_length")) == [
        ("10.20.0.0/16", 24),
        ("10.21.0.0/16", 26),
    ]


def test_it_rejects_an_account_id_that_is_not_12_digits(admin_client):
    response = admin_client.post(_url(SandboxAccount, "add"), account_add_data(admin_client, account_id="12345"))
    assert response.status_code == 200
    assert "An AWS account id is exactly 12 digits." in response.content.decode()
    assert not SandboxAccount.objects.exists()


def test_it_rejects_an_aws_account_without_a_role(admin_client):
    response = admin_client.post(_url(SandboxAccount, "add"), account_add_data(admin_client, kind="aws", role_arn=""))
    assert "An AWS account needs the role the portal assumes." in response.content.decode()
    assert not SandboxAccount.objects.exists()


def test_it_rejects_an_invalid_cidr(admin_client):
    data = add_pools(account_add_data(admin_client), ("10.20.300.0/16", 24))
    response = admin_client.post(_url(SandboxAccount, "add"), data)
    assert "is not a valid IPv4 network in CIDR notation" in response.content.decode()
    assert not SandboxAccount.objects.exists()


def test_it_rejects_a_block_size_that_does_not_fit_the_pool(admin_client):
    data = add_pools(account_add_data(admin_client), ("10.40.0.0/24", 16))
    response = admin_client.post(_url(SandboxAccount, "add"), data)
    assert "A /16 block does not fit in the pool 10.40.0.0/24" in response.content.decode()
    assert not SandboxAccount.objects.exists()


def test_it_rejects_a_pool_overlapping_a_saved_pool(admin_client):
    account = make_account()
    make_pool(account, "10.20.0.0/16")
    data = add_pools(account_change_data(admin_client, account), ("10.20.128.0/17", 24))
    response = admin_client.post(_url(SandboxAccount, "change", account.pk), data)
    assert "10.20.128.0/17 overlaps the pool 10.20.0.0/16 of this account." in response.content.decode()
    assert list(account.cidr_pools.values_list("cidr", flat=True)) == ["10.20.0.0/16"]


def test_it_rejects_two_overlapping_pools_added_together_to_a_new_account(admin_client):
    data = add_pools(account_add_data(admin_client), ("10.20.0.0/16", 24), ("10.20.5.0/24", 24))
    response = admin_client.post(_url(SandboxAccount, "add"), data)
    assert "10.20.5.0/24 overlaps the pool 10.20.0.0/16 entered above." in response.content.decode()
    assert not SandboxAccount.objects.exists()
    assert not CidrPool.objects.exists()


def test_it_rejects_two_overlapping_pools_added_together_to_an_account(admin_client):
    account = make_account()
    make_pool(account, "10.1.0.0/16")
    data = add_pools(account_change_data(admin_client, account), ("10.30.0.0/20", 24), ("10.30.0.0/16", 24))
    response = admin_client.post(_url(SandboxAccount, "change", account.pk), data)
    assert "10.30.0.0/16 overlaps the pool 10.30.0.0/20 entered above." in response.content.decode()
    assert list(account.cidr_pools.values_list("cidr", flat=True)) == ["10.1.0.0/16"]


def test_it_rejects_a_saved_pool_moved_onto_a_new_one(admin_client):
    account = make_account()
    make_pool(account, "10.1.0.0/16")
    data = add_pools(account_change_data(admin_client, account), ("10.2.0.0/16", 24))
    data[f"{pool_row(data, '10.1.0.0/16')}-cidr"] = "10.2.0.0/17"
    response = admin_client.post(_url(SandboxAccount, "change", account.pk), data)
    assert "10.2.0.0/16 overlaps the pool 10.2.0.0/17 entered above." in response.content.decode()
    assert list(account.cidr_pools.values_list("cidr", flat=True)) == ["10.1.0.0/16"]


def test_it_refuses_to_delete_a_pool_with_allocations_from_the_account_page(admin_client):
    account = make_account()
    pool = make_pool(account, "10.20.0.0/16")
    for _ in range(3):
        make_allocation(make_environment(account=account), pool=pool)
    data = account_change_data(admin_client, account)
    data[f"{pool_row(data, '10.20.0.0/16')}-DELETE"] = "on"
    response = admin_client.post(_url(SandboxAccount, "change", account.pk), data)
    assert response.status_code == 200
    assert (
        "10.20.0.0/16 has 3 environment networks allocated; delete those environments first."
        in response.content.decode()
    )
    assert CidrPool.objects.filter(pk=pool.pk).exists()


def test_it_deletes_an_unused_pool_from_the_account_page(admin_client):
    account = make_account()
    make_pool(account, "10.20.0.0/16")
    kept = make_pool(account, "10.21.0.0/16")
    data = account_change_data(admin_client, account)
    data[f"{pool_row(data, '10.20.0.0/16')}-DELETE"] = "on"
    response = admin_client.post(_url(SandboxAccount, "change", account.pk), data)
    assert response.status_code == 302
    assert list(account.cidr_pools.all()) == [kept]


def test_it_refuses_to_move_a_pool_with_allocations(admin_client):
    account = make_account()
    pool = make_pool(account, "10.20.0.0/16")
    make_allocation(make_environment(account=account), pool=pool)
    data = account_change_data(admin_client, account)
    data[f"{pool_row(data, '10.20.0.0/16')}-prefix_length"] = 26
    response = admin_client.post(_url(SandboxAccount, "change", account.pk), data)
    assert (
        "10.20.0.0/16 cannot change its CIDR or block size: 1 environment network is allocated"
        in response.content.decode()
    )
    pool.refresh_from_db()
    assert pool.prefix_length == 24


# --- The pool's own pages ---------------------------------------------------------------------


def test_it_refuses_to_delete_a_pool_with_allocations_from_its_delete_page(admin_client):
    pool = make_pool(cidr="10.20.0.0/16")
    for _ in range(3):
        make_allocation(make_environment(account=pool.account), pool=pool)
    message = "10.20.0.0/16 has 3 environment networks allocated; delete those environments first."
    for response in (
        admin_client.get(_url(CidrPool, "delete", pool.pk), follow=True),
        admin_client.post(_url(CidrPool, "delete", pool.pk), {"post": "yes"}, follow=True),
    ):
        assert response.redirect_chain == [(_url(CidrPool, "change", pool.pk), 302)]
        assert message in response.content.decode()
    assert CidrPool.objects.filter(pk=pool.pk).exists()


def test_it_refuses_to_delete_a_pool_with_only_released_allocations(admin_client):
    pool = make_pool(cidr="10.20.0.0/16")
    make_allocation(make_environment(account=pool.account), pool=pool, released=True)
    response = admin_client.post(_url(CidrPool, "delete", pool.pk), {"post": "yes"}, follow=True)
    assert "10.20.0.0/16 has 1 released allocation kept for audit" in response.content.decode()
    assert CidrPool.objects.filter(pk=pool.pk).exists()


def test_it_refuses_to_bulk_delete_pools_with_allocations(admin_client):
    used = make_pool(cidr="10.20.0.0/16")
    unused = make_pool(cidr="10.30.0.0/16")
    make_allocation(make_environment(account=used.account), pool=used)
    for post in ({}, {"post": "yes"}):
        response = admin_client.post(
            _url(CidrPool, "changelist"),
            {"action": "delete_selected", "_selected_action": [used.pk, unused.pk], **post},
            follow=True,
        )
        assert (
            "10.20.0.0/16 has 1 environment network allocated; delete those environments first."
            in response.content.decode()
        )
    assert CidrPool.objects.count() == 2


def test_it_deletes_unused_pools_in_bulk(admin_client):
    pools = [make_pool(cidr="10.20.0.0/16"), make_pool(cidr="10.30.0.0/16")]
    response = admin_client.post(
        _url(CidrPool, "changelist"),
        {"action": "delete_selected", "_selected_action": [pool.pk for pool in pools], "post": "yes"},
    )
    assert response.status_code == 302
    assert not CidrPool.objects.exists()


def test_it_deletes_an_unused_pool_from_its_delete_page(admin_client):
    pool = make_pool(cidr="10.20.0.0/16")
    assert admin_client.get(_url(CidrPool, "delete", pool.pk)).status_code == 200
    response = admin_client.post(_url(CidrPool, "delete", pool.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not CidrPool.objects.exists()


def test_it_rejects_a_new_pool_overlapping_another_of_its_account(admin_client):
    account = make_account()
    make_pool(account, "10.20.0.0/16")
    data = form_data(admin_client.get(_url(CidrPool, "add")))
    data.update(account=account.pk, cidr="10.20.1.0/24", prefix_length=28)
    response = admin_client.post(_url(CidrPool, "add"), data)
    assert "10.20.1.0/24 overlaps the pool 10.20.0.0/16 of this account." in response.content.decode()
    assert account.cidr_pools.count() == 1


def test_it_shows_how_full_a_pool_is(admin_client):
    pool = make_pool(cidr="10.20.0.0/22", prefix_length=24)
    make_allocation(make_environment(account=pool.account), pool=pool)
    make_allocation(make_environment(account=pool.account), pool=pool, released=True)
    assert "1 of 4" in admin_client.get(_url(CidrPool, "changelist")).content.decode()
