"""The whole Celery worker SIGKILLed (main process and pool) during an apply, a rollback and
a destroy. Beat's reaper (a thread of the test) interrupts the run once its lease lapses, then
the worker is restarted. Expected: the environment says what the stored state holds
(`incomplete` / `rollback_failed` / `delete_failed` with "the stored state lists N
resource(s)"), nothing is lost, and a delete afterwards ends `deleted`."""

import signal

import pytest
from django.conf import settings

from portal.models import EnvironmentStatus, Run, RunKind, RunStatus
from tests.faults.harness import injecting, settle_create, wait_for, wait_for_run, wait_for_stage
from tests.faults.invariants import assert_ok, finish_scenario
from tests.faults.report import ScenarioResult

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def kill_worker_until_reaped(celery_worker, run_id, result):
    """SIGKILL the worker's group, wait for the reaper to end the run, restart the worker."""
    celery_worker.kill(signal.SIGKILL)
    result.details["fault"] = f"worker SIGKILLed during {Run.objects.get(pk=run_id).stage}"
    try:
        run = wait_for(lambda: (r := Run.objects.get(pk=run_id)).status != RunStatus.RUNNING and r,
                       f"the reaper to end run #{run_id}", timeout=settings.RUN_LEASE_SECONDS + 60, interval=0.5)
        result.details["reaped_as"] = run.status
    finally:
        celery_worker.restart()


def test_a_worker_killed_during_apply_loses_no_state(fault_world, celery_worker, started, request):
    result = ScenarioResult(request.node.name, "worker SIGKILLed during apply", faults=1)
    run = fault_world.create(delay_seconds=30)
    with injecting(result):
        wait_for_stage(run.pk, "apply", resources_done=1)
        kill_worker_until_reaped(celery_worker, run.pk, result)
    finish_scenario(result, run.environment_id, fault_world.owner, started=started,
                    expect={run.environment_id: {EnvironmentStatus.INCOMPLETE}})
    assert_ok(result)


def test_a_worker_killed_during_rollback_loses_no_state(fault_world, celery_worker, started, request):
    result = ScenarioResult(request.node.name, "worker SIGKILLed during a rollback's destroy", faults=1)
    run = fault_world.create(delay_seconds=7, fail_on="dns_record")
    with injecting(result):
        rollback = wait_for_run(run.environment_id, RunKind.ROLLBACK, "destroy", timeout=180)
        kill_worker_until_reaped(celery_worker, rollback.pk, result)
    finish_scenario(result, run.environment_id, fault_world.owner, started=started,
                    expect={run.environment_id: {EnvironmentStatus.ROLLBACK_FAILED}})
    assert_ok(result)


def test_a_worker_killed_during_destroy_loses_no_state(fault_world, celery_worker, started, request):
    result = ScenarioResult(request.node.name, "worker SIGKILLed during destroy", faults=1)
    run = fault_world.create(delay_seconds=0)
    with injecting(result):
        settle_create(run)
        destroy = fault_world.delete(run.environment_id)
        wait_for_stage(destroy.pk, "destroy")
        kill_worker_until_reaped(celery_worker, destroy.pk, result)
    finish_scenario(result, run.environment_id, fault_world.owner, started=started,
                    expect={run.environment_id: {EnvironmentStatus.DELETE_FAILED}})
    assert_ok(result)
