"""Day-two changes under faults (issue 16): the database stopped for 5 s and 60 s during a
change's plan-only run and during its update apply, the web server (the state backend)
SIGKILLed near the end of an update apply, and the worker SIGKILLed during one.

The change replaces the simulated service (a new image) and its creation sleeps, so the
update apply lasts long enough to be hit. Expected: an outage is ridden out - the plan is
saved, the update ends `ready` with the new parameters and the state complete; a worker
killed mid-update leaves `update_failed` whose reason says what the stored state lists,
nothing destroyed and nothing rolled back. Every invariant of the suite holds (no state
lost, no false claim), then a delete ends `deleted`.
"""

import time

import pytest

from portal.models import ChangePlan, Environment, EnvironmentStatus, Run, RunKind, RunStatus
from portal.models.runs import TERMINAL
from portal.services import changes
from tests.faults.harness import database_outage, injecting, settle_create, wait_for, wait_for_stage, web_server_outage
from tests.faults.invariants import assert_ok, finish_scenario
from tests.faults.report import ScenarioResult
from tests.faults.test_worker_kill import kill_worker_until_reaped

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

OUTAGES = [pytest.param(5, id="5s"), pytest.param(60, id="60s")]
CHANGE = {"container_image": "nginx:2", "delay_seconds": 21}  # replaces the service; 3 s per created resource


def plan_change(world, env_id: int) -> ChangePlan:
    env = Environment.objects.get(pk=env_id)
    return changes.request_change(user=world.owner, environment=env, parameters=CHANGE)


def planned(plan: ChangePlan, timeout: float = 240) -> ChangePlan:
    wait_for(lambda: Run.objects.get(pk=plan.plan_run_id).status in TERMINAL, f"plan run #{plan.plan_run_id} to end",
             timeout=timeout, interval=0.2)
    plan = ChangePlan.objects.select_related("plan_run", "environment__product").get(pk=plan.pk)
    assert plan.plan_run.status == RunStatus.SUCCEEDED, plan.plan_run.explanation
    return plan


def confirm(world, plan: ChangePlan) -> Run:
    return changes.confirm_change(user=world.owner, plan=plan)


def changed(env, result):
    """After the fault: a ready environment runs the change, and no rollback or destroy ran."""
    if env.status == EnvironmentStatus.READY and env.parameters.get("container_image") != CHANGE["container_image"]:
        result.problems.append(f"env {env.pk} is ready but does not run the change: {env.parameters}")
    if env.runs.filter(kind__in=[RunKind.ROLLBACK, RunKind.DESTROY]).exists():
        result.problems.append(f"env {env.pk}: a rollback or destroy ran during a change")


def ready_env(world) -> int:
    run = world.create(delay_seconds=0)
    settle_create(run)
    return run.environment_id


@pytest.mark.parametrize("seconds", OUTAGES)
def test_a_database_outage_during_a_changes_plan_run_loses_nothing(fault_world, seconds, started, request):
    result = ScenarioResult(request.node.name, f"database down {seconds}s from the start of a change's plan", faults=1)
    env_id = ready_env(fault_world)
    with injecting(result):
        plan = plan_change(fault_world, env_id)
        wait_for_stage(plan.plan_run_id, "plan")
        result.details["fault"] = database_outage(seconds)
        confirm(fault_world, planned(plan))
    finish_scenario(result, env_id, fault_world.owner, started=started,
                    expect={env_id: {EnvironmentStatus.READY}}, after_fault=changed)
    assert_ok(result)


@pytest.mark.parametrize("seconds", OUTAGES)
def test_a_database_outage_during_an_update_apply_loses_nothing(fault_world, seconds, started, request):
    result = ScenarioResult(request.node.name, f"database down {seconds}s from 2 s into an update apply", faults=1)
    env_id = ready_env(fault_world)
    with injecting(result):
        update = confirm(fault_world, planned(plan_change(fault_world, env_id)))
        wait_for_stage(update.pk, "apply")
        time.sleep(2)
        result.details["fault"] = database_outage(seconds)
    finish_scenario(result, env_id, fault_world.owner, started=started,
                    expect={env_id: {EnvironmentStatus.READY}}, after_fault=changed)
    assert_ok(result)


def test_a_web_server_outage_at_the_end_of_an_update_apply_loses_nothing(fault_world, web_server, started, request):
    result = ScenarioResult(request.node.name, "gunicorn SIGKILLed for 10s as an update apply ends", faults=1)
    env_id = ready_env(fault_world)
    with injecting(result):
        update = confirm(fault_world, planned(plan_change(fault_world, env_id)))
        # The replacement: the old service is destroyed, the new one created (one completion each).
        wait_for_stage(update.pk, "apply", resources_done=1)
        result.details["fault"] = web_server_outage(web_server, 10)
    finish_scenario(result, env_id, fault_world.owner, started=started,
                    expect={env_id: {EnvironmentStatus.READY}}, after_fault=changed)
    assert_ok(result)


def test_a_worker_killed_during_an_update_apply_is_update_failed_with_nothing_destroyed(fault_world, celery_worker,
                                                                                      started, request):
    result = ScenarioResult(request.node.name, "worker SIGKILLed during an update apply", faults=1)
    env_id = ready_env(fault_world)

    def nothing_undone(env, result):
        if env.runs.filter(kind__in=[RunKind.ROLLBACK, RunKind.DESTROY]).exists():
            result.problems.append(f"env {env.pk}: a rollback or destroy ran after a failed update")

    with injecting(result):
        update = confirm(fault_world, planned(plan_change(fault_world, env_id)))
        wait_for_stage(update.pk, "apply")
        time.sleep(1)
        kill_worker_until_reaped(celery_worker, update.pk, result)
    finish_scenario(result, env_id, fault_world.owner, started=started,
                    expect={env_id: {EnvironmentStatus.UPDATE_FAILED}}, after_fault=nothing_undone)
    assert_ok(result)
