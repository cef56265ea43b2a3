"""Drift against moto with the AWS provider (issue 16): a tag changed in AWS behind Terraform's
back -> the drift check reports that resource and attribute -> "plan to fix" plans it back ->
confirm -> the follow-up check finds the environment in sync.

Real worker, drift worker, gunicorn, Terraform and provider mirror; skipped without a mirror.
"""

import pytest

from portal.models import ChangePlan, DriftCheck, Environment, Run
from portal.models.runs import TERMINAL
from portal.services import changes, drift
from tests.portal.test_aws_pipeline import SANDBOX, create, moto_endpoint, settle, world  # noqa: F401 - fixtures
from tests.processes import HAS_AWS_PROVIDER, NO_AWS_PROVIDER
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not HAS_AWS_PROVIDER, reason=NO_AWS_PROVIDER),
    pytest.mark.timeout(1500),
]

SG = "module.service.aws_security_group.this"


def finished(check_id) -> DriftCheck:
    wait_until(lambda: DriftCheck.objects.get(pk=check_id).finished, "the drift check to finish", timeout=600)
    return DriftCheck.objects.get(pk=check_id)


def test_a_tag_changed_in_aws_is_drift_that_a_confirmed_plan_puts_back(world, drift_worker):
    environment = settle(create(world).environment_id, "ready")
    first = finished(drift.request_check(user=world["owner"], environment=environment).pk)
    assert first.status == "in_sync", first.explanation + first.log[-2000:]

    # Someone edits the service's security group in the console.
    state_sg = next(r for r in first_state_resources(environment) if r["address"] == SG)
    ec2 = world["aws"].client("ec2", SANDBOX)
    ec2.create_tags(Resources=[state_sg["id"]], Tags=[{"Key": "edited-by", "Value": "console"}])

    check = finished(drift.request_check(user=world["owner"], environment=environment).pk)
    assert check.status == "drifted", check.explanation + check.log[-2000:]
    drifted = {row["address"]: row for row in check.resources}
    assert SG in drifted, check.resources
    tags = next(a for a in drifted[SG]["attributes"] if a["attribute"] == "tags")
    assert "edited-by" not in (tags["before"] or {}) and tags["after"]["edited-by"] == "console"
    environment.refresh_from_db()
    assert environment.drift_status == "drifted"
    assert Environment.objects.filter(drift_status="drifted").count() == 1

    plan = drift.plan_fix(user=world["owner"], check=check)
    wait_until(lambda: Run.objects.get(pk=plan.plan_run_id).status in TERMINAL, "the fix's plan", timeout=600)
    plan = ChangePlan.objects.select_related("plan_run").get(pk=plan.pk)
    assert plan.plan_run.status == "succeeded", plan.plan_run.explanation
    fix = {row["address"]: row for row in plan.resource_changes}
    assert fix[SG]["action"] == "update" and "tags" in fix[SG]["attributes"], plan.resource_changes
    assert plan.summary["destroy"] == 0 and plan.fixes_drift_id == check.pk

    changes.confirm_change(user=world["owner"], plan=plan)
    settle(environment.pk, "ready")
    groups = ec2.describe_security_groups(GroupIds=[state_sg["id"]])["SecurityGroups"]
    assert "edited-by" not in {t["Key"] for t in groups[0].get("Tags", [])}
    # The applied fix queued a check of its own: it finds the environment in sync again.
    after = DriftCheck.objects.filter(environment=environment, pk__gt=check.pk).order_by("pk").first()
    assert after is not None and after.requested_by is None
    after = finished(after.pk)
    assert after.status == "in_sync", after.explanation + after.log[-2000:]
    environment.refresh_from_db()
    assert environment.drift_status == "in_sync"


def first_state_resources(environment):
    from portal.services.state import latest_state

    rows = []
    for resource in latest_state(environment.pk)["resources"]:
        if resource["mode"] != "managed":
            continue
        address = ".".join(filter(None, [resource.get("module", ""), resource["type"], resource["name"]]))
        for instance in resource["instances"]:
            rows.append({"address": address, "id": instance["attributes"].get("id")})
    return rows
