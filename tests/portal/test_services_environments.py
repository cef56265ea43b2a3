"""Requesting environments: validation, permissions, allocation, and what a refusal leaves behind."""

import pytest

from portal.models import CidrAllocation, Environment, Run, RunKind, RunStatus
from portal.services import environments
from portal.services.errors import Conflict, InvalidRequest, NotAllowed
from tests.factories import (
    make_account,
    make_department,
    make_environment,
    make_pool,
    make_product,
    make_run,
    make_superuser,
    make_user,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    """owner (member of the product's department), stranger (member of another), staff."""
    department = make_department("payments")
    other = make_department("logistics")
    account = make_account(department, max_concurrent_runs=1)
    make_pool(account, "10.50.0.0/23", prefix_length=24)
    product = make_product(department, slug="shop")
    return {
        "department": department,
        "account": account,
        "product": product,
        "owner": make_user("owner", departments=[department]),
        "stranger": make_user("stranger", departments=[other]),
        "staff": make_superuser("staff"),
    }


def create(world, user="owner", **kwargs):
    kwargs.setdefault("name", "dev")
    kwargs.setdefault("pattern_slug", "demo-ecs")
    return environments.request_create(user=world[user], product=world["product"], **kwargs)


def test_it_queues_a_create_run_with_the_rendered_code_and_a_network(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = create(world, parameters={"delay_seconds": 2})
    env = run.environment
    assert (run.kind, run.status) == (RunKind.CREATE, RunStatus.QUEUED)
    assert env.status == "provisioning" and env.cidr == "10.50.0.0/24"
    assert env.parameters["delay_seconds"] == 2 and env.parameters["fail_on"] == ""
    assert "locals.tf" in env.code_snapshot and "portal_backend.tf" in env.code_snapshot
    assert '"10.50.0.0/24"' in env.code_snapshot["locals.tf"]


def test_members_and_staff_may_create_but_strangers_may_not(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        create(world, "owner", name="a")
        create(world, "staff", name="b")
        with pytest.raises(NotAllowed, match="only members of"):
            create(world, "stranger", name="c")
    assert sorted(Environment.objects.values_list("name", flat=True)) == ["a", "b"]


def test_bad_parameters_get_per_field_errors_and_leave_nothing(world):
    with pytest.raises(InvalidRequest) as caught:
        create(world, parameters={"delay_seconds": 9999, "colour": "red"})
    assert set(caught.value.errors) == {"param:delay_seconds", "param:colour"}
    assert Environment.objects.count() == 0 and CidrAllocation.objects.count() == 0


@pytest.mark.parametrize("name", ["Dev", "-dev", "dev-", "a" * 41, "dev_1", "dév"])
def test_it_refuses_a_bad_name(world, name):
    with pytest.raises(InvalidRequest) as caught:
        create(world, name=name)
    assert caught.value.field == "name"


def test_it_refuses_a_name_already_taken_but_allows_it_after_delete(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first = create(world)
        with pytest.raises(Conflict, match="already exists"):
            create(world)
        Environment.objects.filter(pk=first.environment_id).update(status="deleted")
        Run.objects.filter(pk=first.pk).update(status="succeeded")
        CidrAllocation.objects.update(released_at="2026-01-01T00:00:00Z")
        assert create(world).environment_id != first.environment_id


def test_a_full_pool_is_a_clear_error_before_anything_runs(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        create(world, name="one")
        create(world, name="two")
        with pytest.raises(Conflict, match="No free network left"):
            create(world, name="three")
    assert Environment.objects.count() == 2 and Run.objects.count() == 2


def test_an_unknown_pattern_is_refused(world):
    with pytest.raises(InvalidRequest, match="Unknown design pattern"):
        create(world, pattern_slug="nope")


def test_an_account_of_another_department_is_refused(world):
    foreign = make_account(make_department("elsewhere"))
    with pytest.raises(InvalidRequest, match="another department"):
        create(world, account=foreign)


def test_delete_queues_a_destroy_and_refuses_a_second(world, django_capture_on_commit_callbacks):
    env = make_environment(world["product"], account=world["account"], status="ready")
    with django_capture_on_commit_callbacks(execute=False):
        run = environments.request_delete(user=world["owner"], environment=env)
        assert run.kind == RunKind.DESTROY
        with pytest.raises(Conflict):
            environments.request_delete(user=world["owner"], environment=env)
    env.refresh_from_db()
    assert env.status == "deleting"
    with pytest.raises(NotAllowed):
        environments.request_delete(user=world["stranger"], environment=env)


def test_the_database_refuses_a_second_unfinished_run(world):
    from django.db import IntegrityError, transaction

    env = make_environment(world["product"], account=world["account"], status="ready")
    make_run(env, status=RunStatus.QUEUED)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_run(env, status=RunStatus.RUNNING)


def test_the_portal_passes_the_context_shape_patterns_are_checked_with(world):
    from portal.services.environments import render_context
    from provisioning.render import placeholder_context

    env = make_environment(world["product"], account=world["account"])
    real, placeholder = render_context(env, world["owner"]), placeholder_context()
    assert set(real) == set(placeholder)
    for key in ("environment", "account", "network", "allocations"):
        assert set(real[key]) == set(placeholder[key]), key


def test_a_callers_own_check_is_used_only_for_the_request_it_checked(world, django_capture_on_commit_callbacks):
    from portal.services.preflight import check_request

    checked = check_request(product=world["product"], pattern_slug="demo-ecs", name="dev", parameters={"delay_seconds": 2})
    assert checked.ok and checked.answers(
        product=world["product"], pattern_slug="demo-ecs", name=" dev ", parameters={"delay_seconds": 2}, account=None
    )
    # An ok check of another request never lets this one skip its own check.
    with pytest.raises(InvalidRequest) as refused:
        create(world, name="Bad_Name", parameters={"delay_seconds": 2}, checked=checked)
    assert set(refused.value.errors) == {"name"}
    with pytest.raises(InvalidRequest):
        create(world, name="dev", parameters={"delay_seconds": -5}, checked=checked)
    assert Environment.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=False):
        run = create(world, name="dev", parameters={"delay_seconds": 2}, checked=checked)
    assert run.environment.name == "dev"
