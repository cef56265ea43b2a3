"""A 20 MiB Terraform state (demo-ecs `state_padding_kib=10240`) is stored whole, and the
environment can be deleted from it."""

import pytest

from portal.models import EnvironmentStatus, StateVersion
from tests.faults.invariants import assert_ok, finish_scenario
from tests.faults.report import ScenarioResult

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

MIB = 1024 * 1024


def test_a_20_mib_state_is_stored_and_deleted(fault_world, started, request):
    result = ScenarioResult(request.node.name, "20 MiB state", faults=1)

    def is_large(env, result):
        latest = StateVersion.objects.filter(environment=env).order_by("-id").first()
        size = latest.size if latest else 0
        result.details["state_bytes"] = size
        if size < 20 * MIB:
            result.problems.append(f"the stored state is {size / MIB:.1f} MiB, not >= 20 MiB")

    run = fault_world.create(delay_seconds=0, state_padding_kib=10240)
    finish_scenario(result, run.environment_id, fault_world.owner, started=started,
                    expect={run.environment_id: {EnvironmentStatus.READY}}, after_fault=is_large)
    assert_ok(result)
