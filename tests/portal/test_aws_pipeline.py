"""AWS sandboxes end to end through the portal's own pipeline (issue 15): request -> Celery
worker -> preflight (AssumeRole with external id, GetCallerIdentity, zone) -> plan -> apply
with the AWS provider from the read-only mirror -> endpoints in the CMDB -> DNS check ->
delete from the code snapshot -> orphan report, against a moto server.

Everything is real: gunicorn serves the state backend, the session's Celery worker runs
Terraform with `portal_provider.tf` aimed at the account's endpoint URL (a simulated AWS),
and what the patterns create is read back from moto with boto3. The account is not moto's
default one: the role is assumed into it, so the account guard is exercised for real.
Skipped where this machine has no provider mirror (tests/processes.PROVIDER_MIRROR).
"""

import json

import pytest

from portal.models import Endpoint, Environment, ListenerPriority, Run, RunStatus, StateVersion
from portal.services import aws_accounts, environments
from portal.services.errors import Conflict
from portal.services.preflight import planned_fqdns
from portal.services.catalog import get_pattern
from tests.factories import make_account, make_department, make_pool, make_product, make_user
from tests.moto_server import MotoAWS, create_shared_infrastructure, moto_for_patterns
from tests.processes import HAS_AWS_PROVIDER, NO_AWS_PROVIDER
from tests.waiting import wait_for_environment

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not HAS_AWS_PROVIDER, reason=NO_AWS_PROVIDER),
    pytest.mark.timeout(1500),
]

SANDBOX = "210987654321"  # not moto's default account: the role is assumed into it
ZONE = "sandbox.example.test"
SETTLE = 600  # seconds an apply or destroy may take on a loaded 2-core machine
SETTLED = {"ready", "failed", "rollback_failed", "incomplete", "delete_failed", "deleted"}


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory):
    with moto_for_patterns(tmp_path_factory.mktemp("moto-pipeline")) as endpoint:
        yield endpoint


@pytest.fixture
def world(moto_endpoint, web_server, celery_worker):
    aws = MotoAWS(moto_endpoint)
    aws.reset()
    zone_id = aws.client("route53", SANDBOX).create_hosted_zone(Name=ZONE, CallerReference="zone")["HostedZone"]["Id"]
    department = make_department("payments")
    account = make_account(
        department, kind="aws", account_id=SANDBOX, dns_zone=ZONE, external_id="ext-7f3a",
        endpoint_url=moto_endpoint, max_concurrent_runs=3,
        shared_infrastructure=create_shared_infrastructure(aws, ZONE, SANDBOX),
    )
    make_pool(account, "10.60.0.0/16", prefix_length=20)
    return {
        "aws": aws, "zone_id": zone_id, "account": account,
        "product": make_product(department, slug="shop"),
        "owner": make_user("owner", departments=[department]),
    }


def create(world, slug="ecs-service", name="dev", **params):
    return environments.request_create(
        user=world["owner"], product=world["product"], pattern_slug=slug, name=name,
        parameters={"app_name": "api", **params}, account=world["account"],
    )


def settle(environment_id, expected: str):
    """Wait until the environment has no run left and is in a settled status; assert which."""
    environment = wait_for_environment(environment_id, SETTLED, timeout=SETTLE)
    runs = list(environment.runs.order_by("pk").values_list("kind", "status", "explanation"))
    assert environment.status == expected, f"{environment.status}: {environment.status_reason}; runs: {runs}"
    return environment


def state_of(environment) -> dict:
    version = StateVersion.objects.filter(environment=environment).order_by("-id").first()
    return json.loads(bytes(version.content))


def managed_instances(document) -> list[str]:
    return [f"{r.get('module', '')}.{r['type']}.{r['name']}" for r in document.get("resources", [])
            if r["mode"] == "managed" for _ in r.get("instances", [])]


def tagged_with(world, environment) -> list[str]:
    """What moto's tagging API lists with the environment's tag, less what ECS and EC2 say is
    gone (a deleted cluster or service stays listed as INACTIVE, a deregistered task
    definition too, a deleted NAT gateway as deleted)."""
    tagging = world["aws"].client("resourcegroupstaggingapi", SANDBOX)
    found = tagging.get_resources(TagFilters=[{"Key": "portal:environment", "Values": [aws_accounts.environment_tag(environment)]}])
    ecs, ec2 = world["aws"].client("ecs", SANDBOX), world["aws"].client("ec2", SANDBOX)
    live = []
    for arn in (item["ResourceARN"] for item in found["ResourceTagMappingList"]):
        if ":cluster/" in arn and ecs.describe_clusters(clusters=[arn])["clusters"][0]["status"] != "ACTIVE":
            continue
        if ":service/" in arn:
            cluster = arn.split(":service/", 1)[1].split("/")[0]
            if all(s["status"] != "ACTIVE" for s in ecs.describe_services(cluster=cluster, services=[arn])["services"]):
                continue
        if ":task-definition/" in arn and ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["status"] != "ACTIVE":
            continue
        if ":natgateway/" in arn and ec2.describe_nat_gateways(NatGatewayIds=[arn.rsplit("/", 1)[1]])["NatGateways"][0]["State"] == "deleted":
            continue
        live.append(arn)
    return live


def records_named(world, fqdn) -> list[dict]:
    route53 = world["aws"].client("route53", SANDBOX)
    records = route53.list_resource_record_sets(HostedZoneId=world["zone_id"])["ResourceRecordSets"]
    return [r for r in records if r["Name"].rstrip(".") == fqdn]


@pytest.mark.parametrize("slug", ["ecs-service", "ecs-fullstack"])
def test_an_aws_pattern_is_created_checked_and_deleted_through_the_portal(world, slug):
    run = create(world, slug)
    environment = settle(run.environment_id, "ready")
    run.refresh_from_db()

    assert run.status == RunStatus.SUCCEEDED, run.explanation
    assert [c["step"] for c in run.commands] == ["init", "plan", "apply"]
    applied = managed_instances(state_of(environment))
    assert run.plan_summary["add"] == len(applied) == len(run.plan_summary["resources"]) > 5
    assert (run.resources_done, run.resources_planned) == (len(applied), len(applied))
    messages = list(run.events.order_by("seq").values_list("message", flat=True))
    assert any(m.startswith(f"Account check: Account {SANDBOX} confirmed") for m in messages), messages
    assert f"DNS check: All 1 endpoint record(s) found in {ZONE}." in messages

    fqdn = f"api-shop-dev.{ZONE}"
    assert [e.fqdn for e in Endpoint.objects.filter(environment=environment)] == [fqdn]
    assert planned_fqdns(get_pattern(slug), name="dev", product_slug="shop", account=world["account"],
                         parameters=environment.parameters) == [fqdn]
    assert [r["Type"] for r in records_named(world, fqdn)] == ["A"]
    assert tagged_with(world, environment), "the default tags reach AWS"
    provider = environment.code_snapshot["portal_provider.tf"]
    assert world["account"].endpoint_url in provider and f'"{SANDBOX}"' in provider

    destroy = environments.request_delete(user=world["owner"], environment=environment)
    environment = settle(environment.pk, "deleted")
    destroy.refresh_from_db()
    assert destroy.status == RunStatus.SUCCEEDED, destroy.explanation
    assert managed_instances(state_of(environment)) == []
    assert [o["arn"] for o in environment.orphans] == [] and environment.orphans_checked_at is not None
    assert tagged_with(world, environment) == [] and records_named(world, fqdn) == []


def test_an_apply_failing_inside_aws_is_rolled_back_to_nothing_tagged(world):
    # The repository the pattern creates already exists in the account (not the portal's).
    world["aws"].client("ecr", SANDBOX).create_repository(repositoryName="shop/dev/api")
    run = create(world)
    environment = settle(run.environment_id, "failed")
    run.refresh_from_db()

    assert run.status == RunStatus.FAILED and "apply" in [c["step"] for c in run.commands]
    rollback = Run.objects.get(environment=environment, kind="rollback")
    assert rollback.status == RunStatus.SUCCEEDED, rollback.explanation
    assert managed_instances(state_of(environment)) == []
    assert tagged_with(world, environment) == []
    assert records_named(world, f"api-shop-dev.{ZONE}") == []
    assert world["aws"].client("ecr", SANDBOX).describe_repositories()["repositories"][0]["repositoryName"] == "shop/dev/api"


def test_a_role_landing_in_another_account_is_refused_before_any_terraform_step(world):
    # The row claims SANDBOX, but its role lives in moto's default account (the model's clean()
    # refuses this; a renamed account in AWS or a wrong row in the database would not).
    world["account"].role_arn = "arn:aws:iam::123456789012:role/portal-provisioner"
    world["account"].save(update_fields=["role_arn"])
    run = create(world)
    environment = settle(run.environment_id, "failed")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "landed in account 123456789012, not 210987654321" in run.explanation
    assert run.commands == []
    assert "nothing was created" in environment.status_reason


def test_an_fqdn_already_in_the_zone_is_refused_before_any_terraform_step(world):
    route53 = world["aws"].client("route53", SANDBOX)
    route53.change_resource_record_sets(HostedZoneId=world["zone_id"], ChangeBatch={"Changes": [{
        "Action": "CREATE",
        "ResourceRecordSet": {"Name": f"api-shop-dev.{ZONE}", "Type": "CNAME", "TTL": 60,
                              "ResourceRecords": [{"Value": "someone-else.example.org"}]},
    }]})
    run = create(world)
    environment = settle(run.environment_id, "failed")
    run.refresh_from_db()
    assert f"api-shop-dev.{ZONE} (CNAME) already exists as a record in the zone {ZONE}" in run.explanation
    assert run.commands == [] and "nothing was created" in environment.status_reason
    assert [r["Type"] for r in records_named(world, f"api-shop-dev.{ZONE}")] == ["CNAME"]


def test_an_fqdn_a_live_environment_holds_is_refused_when_requested(world):
    taken = create(world, name="dev-x")  # api-shop-dev-x.<zone>
    holder = settle(taken.environment_id, "ready")
    other = make_product(world["account"].department, slug="shop-dev")
    # Another product whose <app>-<product>-<environment> is the same name: refused at once,
    # not after a full apply (before, only the outputs step noticed, then rolled back).
    with pytest.raises(Conflict) as refused:
        environments.request_create(user=world["owner"], product=other, pattern_slug="ecs-service", name="x",
                                    parameters={"app_name": "api"}, account=world["account"])
    assert refused.value.errors == {
        "fqdn": f"api-shop-dev-x.{ZONE} already belongs to shop/dev-x; choose another name or application name."
    }
    assert not Environment.objects.filter(product=other).exists()
    assert Endpoint.objects.get(fqdn=f"api-shop-dev-x.{ZONE}").environment_id == holder.pk


def test_three_services_at_once_get_three_priorities_and_three_records(world):
    runs = [create(world, name=name) for name in ("one", "two", "three")]
    ready = [settle(run.environment_id, "ready") for run in runs]

    priorities = sorted(ListenerPriority.objects.filter(environment__in=ready, released_at__isnull=True)
                        .values_list("priority", flat=True))
    assert len(set(priorities)) == 3
    rules = world["aws"].client("elbv2", SANDBOX).describe_rules(
        ListenerArn=world["account"].shared_infrastructure["alb_listener_arn"])["Rules"]
    assert sorted(int(r["Priority"]) for r in rules if r["Priority"] != "default") == priorities
    for environment in ready:
        fqdn = f"api-shop-{environment.name}.{ZONE}"
        assert [e.fqdn for e in environment.endpoints.all()] == [fqdn]
        assert [r["Type"] for r in records_named(world, fqdn)] == ["A"]
