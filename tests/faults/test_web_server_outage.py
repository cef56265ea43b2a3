"""The web server (gunicorn, which serves Terraform's state backend) SIGKILLed for 10 s and
for 60 s at the end of an apply: while the last resource is being created, so Terraform's
final state write meets a dead server. Expected: the create ends `ready`, the stored state is
complete, and no rollback is claimed."""

import pytest

from portal.models import EnvironmentStatus, RunKind
from tests.faults.harness import injecting, wait_for_stage, web_server_outage
from tests.faults.invariants import assert_ok, finish_scenario
from tests.faults.report import ScenarioResult

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]


def no_rollback(env, result):
    if env.runs.filter(kind=RunKind.ROLLBACK).exists():
        result.problems.append(f"env {env.pk}: a rollback ran although the apply had nothing to undo")


@pytest.mark.parametrize("seconds", [pytest.param(10, id="10s"), pytest.param(60, id="60s")])
def test_a_web_server_outage_at_the_end_of_an_apply_loses_no_state(fault_world, web_server, seconds, started, request):
    result = ScenarioResult(request.node.name, f"gunicorn SIGKILLed for {seconds}s with 6 of 7 resources applied", faults=1)
    run = fault_world.create(delay_seconds=14)
    with injecting(result):
        wait_for_stage(run.pk, "apply", resources_done=6)
        result.details["fault"] = web_server_outage(web_server, seconds)
    finish_scenario(result, run.environment_id, fault_world.owner, started=started,
                    expect={run.environment_id: {EnvironmentStatus.READY}}, after_fault=no_rollback)
    assert_ok(result)
