"""No fault: the harness itself (a create and a delete keep every invariant, the footprint is
seen), so a red fault scenario means the fault, not the harness."""

import pytest

from portal.models import Endpoint, EnvironmentStatus, StateVersion
from tests.faults.harness import wait_for_stage
from tests.faults.invariants import RESOURCES, assert_ok, finish_scenario, footprint, settle
from tests.faults.report import ScenarioResult

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_create_and_delete_without_faults_keep_every_invariant(fault_world, started):
    result = ScenarioResult("test_a_create_and_delete_without_faults_keep_every_invariant", "no fault")
    run = fault_world.create(delay_seconds=2)
    wait_for_stage(run.pk, "apply")
    env = settle(run.environment_id)
    seen = footprint(env.pk)
    result.details["footprint_when_ready"] = seen
    if env.status == EnvironmentStatus.READY:
        if sorted(seen) != sorted(RESOURCES):
            result.problems.append(f"ready, but the footprint lists {seen}, not the 7 resources "
                                   "(TF_VAR_footprint_dir not passed to local runs?)")
        if not Endpoint.objects.filter(environment=env, released_at__isnull=True).exists():
            result.problems.append("ready without endpoints")
        result.details["state_bytes"] = StateVersion.objects.filter(environment=env).latest().size
    finish_scenario(result, env.pk, fault_world.owner, started=started,
                    expect={env.pk: {EnvironmentStatus.READY}})
    assert_ok(result)
