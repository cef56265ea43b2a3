"""Drift against moto with the AWS provider (issue 16): a tag changed in AWS behind Terraform's
back -> the drift check reports that resource and attribute -> "plan to fix" plans it back ->
confirm -> the follow-up check finds the environment in sync.

Real worker, drift worker, gunicorn, Terraform and provider mirror; skipped without a mirror.

The environment is a small AWS pattern published in a test pattern repository (a VPC, a
security group, a log group): moto keeps everything of it, so a fresh environment is in sync.
The bundled `ecs-service` is not usable for this on moto: moto does not store an ECS service's
`health_check_grace_period_seconds`, `enable_ecs_managed_tags` and
`availability_zone_rebalancing`, nor the descriptions of security-group rules, so every plan
against moto wants to set them again - a drift check reports exactly that (the first test).
"""

import json
import subprocess

import pytest

from portal.models import ChangePlan, DriftCheck, Environment, Run
from portal.models.runs import TERMINAL
from portal.services import catalog, changes, drift, environments
from tests.portal.test_aws_pipeline import SANDBOX, create, moto_endpoint, settle, world  # noqa: F401 - fixtures
from tests.processes import HAS_AWS_PROVIDER, NO_AWS_PROVIDER
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not HAS_AWS_PROVIDER, reason=NO_AWS_PROVIDER),
    pytest.mark.timeout(1500),
]

PATTERN = {
    "pattern.yaml": """\
name: Tagged network (drift drill)
version: "1.0.0"
description: A VPC, a security group and a log group - what moto keeps in full.
cloud: aws
expected_duration_seconds: 20
endpoints: []
parameters:
  type: object
  additionalProperties: false
  properties:
    label:
      type: string
      description: Tag value of the security group.
      default: blue
""",
    "locals.tf.j2": """\
locals {
  label   = {{ params.label }}
  cidr    = {{ network.cidr }}
  name    = {{ environment.name }}
  product = {{ environment.product }}
}
""",
    "main.tf": """\
resource "aws_vpc" "this" {
  cidr_block = local.cidr
  tags       = { Name = "${local.product}-${local.name}" }
}

resource "aws_security_group" "app" {
  name        = "${local.product}-${local.name}-app"
  description = "app"
  vpc_id      = aws_vpc.this.id
  tags        = { label = local.label }
}

resource "aws_cloudwatch_log_group" "app" {
  name              = "/${local.product}/${local.name}"
  retention_in_days = 7
}

output "security_group_id" {
  value = aws_security_group.app.id
}
""",
    "versions.tf": """\
terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}
""",
}
SG = "aws_security_group.app"


@pytest.fixture
def drill_pattern(tmp_path, settings):
    repo = tmp_path / "patterns-repo"
    (repo / "tagged-network").mkdir(parents=True)
    for name, text in PATTERN.items():
        (repo / "tagged-network" / name).write_text(text)
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-qm", "1.0.0"], check=True)
    subprocess.run([*git, "tag", "tagged-network/1.0.0"], check=True)
    settings.PATTERNS_GIT_URL = str(repo)
    settings.PATTERNS_GIT_CACHE_DIR = tmp_path / "cache"
    catalog._load.cache_clear()
    catalog.sync_git()
    yield "tagged-network"
    catalog._load.cache_clear()


def finished(check_id) -> DriftCheck:
    wait_until(lambda: DriftCheck.objects.get(pk=check_id).finished, "the drift check to finish", timeout=600)
    return DriftCheck.objects.get(pk=check_id)


def explain(check) -> str:
    return json.dumps(check.resources)[:3000] + "\n" + check.explanation + "\n" + check.log[-2000:]


def test_a_tag_changed_in_aws_is_drift_that_a_confirmed_plan_puts_back(world, drill_pattern, drift_worker):
    run = environments.request_create(user=world["owner"], product=world["product"], pattern_slug=drill_pattern,
                                      name="dev", account=world["account"])
    environment = settle(run.environment_id, "ready")
    first = finished(drift.request_check(user=world["owner"], environment=environment).pk)
    assert first.status == "in_sync", explain(first)

    # Someone edits the security group in the console.
    group_id = environment.outputs["security_group_id"]
    ec2 = world["aws"].client("ec2", SANDBOX)
    ec2.create_tags(Resources=[group_id], Tags=[{"Key": "edited-by", "Value": "console"}])

    check = finished(drift.request_check(user=world["owner"], environment=environment).pk)
    assert check.status == "drifted", explain(check)
    assert [row["address"] for row in check.resources] == [SG], explain(check)
    tags = next(a for a in check.resources[0]["attributes"] if a["attribute"] == "tags")
    assert "edited-by" not in (tags["before"] or {}) and tags["after"]["edited-by"] == "console"
    environment.refresh_from_db()
    assert environment.drift_status == "drifted"
    assert list(Environment.objects.filter(drift_status="drifted").values_list("pk", flat=True)) == [environment.pk]

    plan = drift.plan_fix(user=world["owner"], check=check)
    wait_until(lambda: Run.objects.get(pk=plan.plan_run_id).status in TERMINAL, "the fix's plan", timeout=600)
    plan = ChangePlan.objects.select_related("plan_run").get(pk=plan.pk)
    assert plan.plan_run.status == "succeeded", plan.plan_run.explanation
    assert [(c["address"], c["action"]) for c in plan.resource_changes] == [(SG, "update")], plan.resource_changes
    assert "tags" in plan.resource_changes[0]["attributes"] and plan.fixes_drift_id == check.pk

    changes.confirm_change(user=world["owner"], plan=plan)
    settle(environment.pk, "ready")
    groups = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    assert "edited-by" not in {t["Key"] for t in groups[0].get("Tags", [])}
    # The applied fix queued a check of its own: it finds the environment in sync again.
    wait_until(lambda: DriftCheck.objects.filter(environment=environment, pk__gt=check.pk).exists(), "the follow-up check")
    after = finished(DriftCheck.objects.filter(environment=environment, pk__gt=check.pk).order_by("pk").first().pk)
    assert after.requested_by is None and after.status == "in_sync", explain(after)
    environment.refresh_from_db()
    assert environment.drift_status == "in_sync"


def test_ecs_service_on_moto_reads_as_drifted_where_moto_drops_attributes(world, drift_worker):
    """What a drift check says is what Terraform would change: on moto, the attributes moto
    does not keep (see the module docstring), and nothing else."""
    environment = settle(create(world).environment_id, "ready")
    check = finished(drift.request_check(user=world["owner"], environment=environment).pk)
    assert check.status == "drifted", explain(check)
    found = {row["address"]: {a["attribute"] for a in row["attributes"]} for row in check.resources}
    assert found.get("module.service.aws_ecs_service.this", set()) <= {
        "availability_zone_rebalancing", "enable_ecs_managed_tags", "health_check_grace_period_seconds"}, found
    assert all(attributes <= {"description"} for address, attributes in found.items()
               if "security_group_" in address and "rule" in address), found
    assert set(found) <= {"module.service.aws_ecs_service.this",
                          "module.service.aws_vpc_security_group_egress_rule.alb_to_service[0]",
                          "module.service.aws_vpc_security_group_ingress_rule.from_alb"}, found
