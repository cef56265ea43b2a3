"""The database (the suite's own PostgreSQL cluster) stopped for 5 s and for 60 s while a run
is in plan, in apply and in destroy. Expected: the run ends as if nothing happened (create ->
`ready` with endpoints, delete -> `deleted`), and every invariant holds."""

import time

import pytest

from portal.models import Endpoint, EnvironmentStatus
from tests.faults.harness import database_outage, injecting, wait_for_stage
from tests.faults.invariants import assert_ok, finish_scenario, settle
from tests.faults.report import ScenarioResult

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

OUTAGES = [pytest.param(5, id="5s"), pytest.param(60, id="60s")]
READY = {EnvironmentStatus.READY}


def has_endpoints(env, result):
    if env.status == EnvironmentStatus.READY and not Endpoint.objects.filter(environment=env, released_at__isnull=True).exists():
        result.problems.append(f"env {env.pk} is ready without endpoints")


@pytest.mark.parametrize("seconds", OUTAGES)
def test_a_database_outage_during_plan_loses_no_state(fault_world, seconds, started, request):
    result = ScenarioResult(request.node.name, f"database down {seconds}s from the start of plan", faults=1)
    run = fault_world.create(delay_seconds=3)
    with injecting(result):
        wait_for_stage(run.pk, "plan")
        result.details["fault"] = database_outage(seconds)
    finish_scenario(result, run.environment_id, fault_world.owner, started=started,
                    expect={run.environment_id: READY}, after_fault=has_endpoints)
    assert_ok(result)


@pytest.mark.parametrize("seconds", OUTAGES)
def test_a_database_outage_during_apply_loses_no_state(fault_world, seconds, started, request):
    result = ScenarioResult(request.node.name, f"database down {seconds}s from 2 s into apply", faults=1)
    run = fault_world.create(delay_seconds=20)
    with injecting(result):
        wait_for_stage(run.pk, "apply")
        time.sleep(2)
        result.details["fault"] = database_outage(seconds)
    finish_scenario(result, run.environment_id, fault_world.owner, started=started,
                    expect={run.environment_id: READY}, after_fault=has_endpoints)
    assert_ok(result)


@pytest.mark.parametrize("seconds", OUTAGES)
def test_a_database_outage_during_destroy_loses_no_state(fault_world, seconds, started, request):
    result = ScenarioResult(request.node.name, f"database down {seconds}s from the start of destroy", faults=1)
    run = fault_world.create(delay_seconds=0)
    env_id = run.environment_id
    with injecting(result):
        env = settle(env_id)
        assert env.status == EnvironmentStatus.READY, f"the create ended {env.status} ({env.status_reason!r})"
        destroy = fault_world.delete(env_id)
        wait_for_stage(destroy.pk, "destroy")
        result.details["fault"] = database_outage(seconds)
    finish_scenario(result, env_id, fault_world.owner, started=started, expect={env_id: {EnvironmentStatus.DELETED}})
    assert_ok(result)
