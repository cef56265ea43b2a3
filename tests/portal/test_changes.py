"""Day two through the real worker and Terraform: change = plan, review, confirm (issue 16).

A change of `demo-ecs` parameters is planned by a plan-only run (nothing applied), shown per
resource, and applied only on confirm - exactly the saved plan. Stale plans are refused, and
a failed update apply leaves the environment `update_failed` with its state intact.
"""

import hashlib
import json
import signal
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from portal.models import ChangePlan, Endpoint, Environment, Run, RunKind, RunStage, RunStatus, StateLock, StateVersion
from portal.services import changes, environments
from portal.services.errors import Conflict, InvalidRequest, NotAllowed
from portal.services.reaper import reap_expired
from tests.factories import make_account, make_department, make_pool, make_product, make_user
from tests.waiting import wait_for_environment, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(web_server, celery_worker):
    department = make_department("payments")
    account = make_account(department, dns_zone="sandbox.example.test", max_concurrent_runs=2)
    make_pool(account, "10.60.0.0/16", prefix_length=24)
    return {
        "product": make_product(department, slug="shop"),
        "owner": make_user("owner", departments=[department]),
        "stranger": make_user("stranger"),
    }


def ready_environment(world, name="dev", **params):
    run = environments.request_create(
        user=world["owner"], product=world["product"], pattern_slug="demo-ecs", name=name, parameters=params
    )
    return wait_for_environment(run.environment_id, {"ready"})


def planned(plan: ChangePlan) -> ChangePlan:
    wait_until(lambda: Run.objects.get(pk=plan.plan_run_id).status in (RunStatus.SUCCEEDED, RunStatus.FAILED,
                                                                      RunStatus.ERRORED), "the plan run to end")
    plan = ChangePlan.objects.select_related("plan_run", "environment").get(pk=plan.pk)
    assert plan.plan_run.status == RunStatus.SUCCEEDED, plan.plan_run.explanation
    return plan


def state_of(env):
    version = StateVersion.objects.filter(environment=env).order_by("-id").first()
    return version, json.loads(bytes(version.content))


def test_a_parameter_change_is_planned_shown_and_applied_only_on_confirm(world):
    env = ready_environment(world)
    before_version, before_state = state_of(env)

    plan = changes.request_change(user=world["owner"], environment=env, parameters={"desired_count": 3, "app_name": "shop"})
    assert Environment.objects.get(pk=env.pk).status == "planning"
    plan = planned(plan)
    env.refresh_from_db()
    # Planning changed nothing: same status, parameters, state and endpoints.
    assert env.status == "ready" and env.parameters["desired_count"] == 1
    assert StateVersion.objects.filter(environment=env).order_by("-id").first().pk == before_version.pk
    assert plan.plan_run.kind == RunKind.PLAN and plan.plan_file and plan.state_serial == before_version.serial
    # Exactly the resources whose inputs change: those named after the app, and the service (count).
    by_address = {c["address"]: c for c in plan.resource_changes}
    assert set(by_address) == {"terraform_data.service", "terraform_data.dns_record", "terraform_data.listener_rule",
                               "terraform_data.image_repository"}, plan.resource_changes
    assert {c["action"] for c in plan.resource_changes} == {"update"}
    assert by_address["terraform_data.service"]["attributes"] == ["input", "output"]  # output: known after apply
    assert plan.summary == {"add": 0, "change": 4, "destroy": 0, "replace": 0, "move": 0}

    update = changes.confirm_change(user=world["owner"], plan=plan)
    env = wait_for_environment(env.pk, {"ready"})
    update.refresh_from_db()
    assert update.kind == RunKind.UPDATE and update.status == RunStatus.SUCCEEDED
    assert [c["step"] for c in update.commands] == ["init", "apply"]
    assert (update.resources_done, update.resources_planned) == (4, 4)
    assert env.parameters["desired_count"] == 3 and env.parameters["app_name"] == "shop"
    assert env.outputs["app_fqdn"] == "shop-dev.sandbox.example.test"
    assert env.code_snapshot == plan.code_snapshot
    # Its resources are its own, not leftovers: no orphan report after a plan or an update.
    assert env.orphans == [] and env.orphans_checked_at is None
    live = list(Endpoint.objects.filter(environment=env, released_at__isnull=True).values_list("fqdn", flat=True))
    assert live == ["shop-dev.sandbox.example.test"]
    assert Endpoint.objects.filter(environment=env, fqdn="app-dev.sandbox.example.test", released_at__isnull=False).exists()
    version, document = state_of(env)
    assert version.serial > before_version.serial and version.resource_count == 7
    assert document["lineage"] == before_state["lineage"]

    # Confirming the same plan twice applies nothing more.
    with pytest.raises(Conflict, match="already confirmed"):
        changes.confirm_change(user=world["owner"], plan=ChangePlan.objects.get(pk=plan.pk))


def test_a_stale_plan_is_refused_with_the_reason(world):
    env = ready_environment(world)
    first = planned(changes.request_change(user=world["owner"], environment=env, parameters={"desired_count": 2}))
    # Another change planned and applied moves the state and adds runs: the first plan is stale.
    second = planned(changes.request_change(user=world["owner"], environment=env, parameters={"cpu": 512}))
    changes.confirm_change(user=world["owner"], plan=second)
    wait_for_environment(env.pk, {"ready"})
    with pytest.raises(Conflict, match="another run since it was planned"):
        changes.confirm_change(user=world["owner"], plan=ChangePlan.objects.get(pk=first.pk))

    # The state moving under a plan (a run no one recorded as such) is caught by its serial.
    third = planned(changes.request_change(user=world["owner"], environment=env, parameters={"desired_count": 4}))
    latest = StateVersion.objects.filter(environment=env).order_by("-id").first()
    ChangePlan.objects.filter(pk=third.pk).update(state_serial=latest.serial - 1)
    with pytest.raises(Conflict, match="state has moved since it was planned"):
        changes.confirm_change(user=world["owner"], plan=ChangePlan.objects.get(pk=third.pk))
    # And an old plan is refused by its age.
    fourth = planned(changes.request_change(user=world["owner"], environment=env, parameters={"desired_count": 4}))
    ChangePlan.objects.filter(pk=fourth.pk).update(planned_at=fourth.planned_at - timedelta(days=1))
    with pytest.raises(Conflict, match="older than"):
        changes.confirm_change(user=world["owner"], plan=ChangePlan.objects.get(pk=fourth.pk))
    env.refresh_from_db()
    assert env.status == "ready" and env.parameters["cpu"] == 512 and env.parameters["desired_count"] == 1


def test_a_failed_update_apply_leaves_update_failed_with_nothing_destroyed_and_the_state_intact(world):
    env = ready_environment(world)
    # A new image replaces the service; the drill makes the new service fail while being created.
    plan = planned(changes.request_change(user=world["owner"], environment=env,
                                          parameters={"container_image": "nginx:2", "fail_on": "service"}))
    assert {c["address"]: c["action"] for c in plan.resource_changes}["terraform_data.service"] == "replace"
    update = changes.confirm_change(user=world["owner"], plan=plan)
    env = wait_for_environment(env.pk, {"update_failed"})
    update.refresh_from_db()
    assert update.status == RunStatus.FAILED
    assert not Run.objects.filter(environment=env, kind=RunKind.ROLLBACK).exists()  # never rolled back
    assert "nothing was destroyed for it and the state is kept" in env.status_reason
    # The environment keeps what it ran: parameters, code; the state lists every resource
    # (the failed service as tainted), and its endpoint is still recorded.
    assert env.parameters["container_image"] != "nginx:2" and env.code_snapshot != plan.code_snapshot
    version, document = state_of(env)
    assert version.resource_count == 7
    assert Endpoint.objects.filter(environment=env, released_at__isnull=True).count() == 1

    # It can be planned again (the fix) and comes back ready.
    fix = planned(changes.request_change(user=world["owner"], environment=env,
                                         parameters={"container_image": "nginx:2", "fail_on": ""}))
    changes.confirm_change(user=world["owner"], plan=fix)
    env = wait_for_environment(env.pk, {"ready"})
    assert env.parameters["container_image"] == "nginx:2"


def test_bad_changes_are_refused_and_write_nothing(world):
    env = ready_environment(world)
    runs = Run.objects.count()
    with pytest.raises(NotAllowed):
        changes.request_change(user=world["stranger"], environment=env, parameters={"cpu": 512})
    with pytest.raises(InvalidRequest, match="changes nothing"):
        changes.request_change(user=world["owner"], environment=env, parameters={"cpu": env.parameters["cpu"]})
    with pytest.raises(InvalidRequest) as invalid:
        changes.request_change(user=world["owner"], environment=env, parameters={"cpu": 333})
    assert "param:cpu" in invalid.value.errors
    with pytest.raises(InvalidRequest, match="holds no version 0.9.0"):
        changes.request_change(user=world["owner"], environment=env, pattern_version="0.9.0")
    cart = make_product(world["product"].department, slug="cart")
    holder = ready_environment({**world, "product": cart}, name="dev", app_name="taken")  # taken-dev.<zone>
    with pytest.raises(Conflict, match="already belongs to cart/dev"):
        changes.request_change(user=world["owner"], environment=env, parameters={"app_name": "taken", "note": "x"})
    assert Run.objects.count() == runs + 1 and ChangePlan.objects.count() == 0
    # A busy environment cannot be changed.
    changes.request_change(user=world["owner"], environment=holder, parameters={"cpu": 512})
    with pytest.raises(Conflict, match="planning a change"):
        changes.request_change(user=world["owner"], environment=Environment.objects.get(pk=holder.pk),
                               parameters={"cpu": 1024})


def test_the_cli_plans_prints_and_confirms(world, capsys):
    env = ready_environment(world)
    call_command("provision", "--user", "owner", "change", str(env.pk), "--param", "desired_count=2")
    out = capsys.readouterr().out
    assert "update   terraform_data.service" in out and "Confirm with: manage.py provision confirm" in out
    plan = ChangePlan.objects.get(environment=env)
    call_command("provision", "--user", "owner", "confirm", str(plan.pk))
    assert Environment.objects.get(pk=env.pk).parameters["desired_count"] == 2
    with pytest.raises(CommandError, match="already confirmed"):
        call_command("provision", "--user", "owner", "confirm", str(plan.pk))


def test_a_worker_killed_during_an_update_apply_leaves_update_failed_and_loses_nothing(world, celery_worker):
    env = ready_environment(world)
    # A new image replaces the service, whose creation now sleeps 60/7 s: the kill lands in it.
    plan = planned(changes.request_change(user=world["owner"], environment=env,
                                          parameters={"container_image": "nginx:3", "delay_seconds": 60}))
    update = changes.confirm_change(user=world["owner"], plan=plan)
    wait_until(lambda: Run.objects.get(pk=update.pk).stage == RunStage.APPLY
               and StateLock.objects.filter(environment=env).exists(), "the update apply to hold the state lock")
    celery_worker.kill(signal.SIGKILL)  # the whole worker: main process and pool children
    try:
        # Terraform's wrapper stops it as a cancel would (state saved, lock released).
        wait_until(lambda: not StateLock.objects.filter(environment=env).exists(), "Terraform to release its lock", timeout=60)
        wait_until(lambda: reap_expired().get(update.pk) == "interrupted"
                   or Run.objects.get(pk=update.pk).status == RunStatus.INTERRUPTED,
                   "the reaper", timeout=settings.RUN_LEASE_SECONDS + 15)
    finally:
        celery_worker.restart()
    env = wait_for_environment(env.pk, {"update_failed"})
    assert Run.objects.get(pk=update.pk).status == RunStatus.INTERRUPTED
    assert not Run.objects.filter(environment=env, kind=RunKind.ROLLBACK).exists()  # never rolled back
    assert "nothing was destroyed for it and the state is kept" in env.status_reason
    assert env.parameters["container_image"] != "nginx:3" and env.code_snapshot != plan.code_snapshot
    last = StateVersion.objects.filter(environment=env).latest()
    document = json.loads(bytes(last.content))  # intact: parses, and matches its checksum
    assert hashlib.md5(bytes(last.content)).hexdigest() == last.md5 and document["lineage"] == last.lineage
    assert last.resource_count >= 6  # only the service being replaced may be missing
    assert Endpoint.objects.filter(environment=env, released_at__isnull=True).count() == 1

    fix = planned(changes.request_change(user=world["owner"], environment=env,
                                         parameters={"container_image": "nginx:3", "delay_seconds": 0}))
    changes.confirm_change(user=world["owner"], plan=fix)
    env = wait_for_environment(env.pk, {"ready"})
    assert StateVersion.objects.filter(environment=env).latest().resource_count == 7
