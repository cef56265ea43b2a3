"""Runs in AWS sandbox accounts, against moto's server: the account guard stops a wrong
account before any Terraform step, endpoints' DNS records are checked after apply, and
tagged leftovers are reported after destroy.

The run is executed in this process by the same `execute_run` the Celery task calls, so the
test can point the portal at moto; Terraform still runs for real against the portal's state
endpoint (`web_server`). The offline `demo-ecs` pattern is used because the AWS provider
cannot be downloaded here (AWS patterns are validated statically in tests/provisioning).
"""

import pytest
from django.conf import settings as django_settings

from portal.models import Endpoint, Environment, Run, RunStatus
from portal.services import aws_accounts
from portal.services import runs as transitions
from portal.services.environments import PORTAL_FILES, render_context
from portal.services.catalog import get_pattern
from portal.services.execution import execute_run
from provisioning.parameters import validate_parameters
from provisioning.render import render_workspace
from tests.factories import make_account, make_department, make_environment, make_product, make_user
from tests.moto_server import aws, moto_server  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SANDBOX = "210987654321"
ZONE = "sandbox.example.test"


@pytest.fixture
def portal_on_moto(settings, web_server, aws, runs_sent_to_workers):
    settings.PORTAL_URL = str(web_server)
    settings.PORTAL_AWS_ENDPOINT_URL = aws.endpoint_url
    settings.AWS_BASE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    aws.client("route53", SANDBOX).create_hosted_zone(Name=ZONE, CallerReference="zone-1")
    return aws


def aws_environment(account_id_in_role=SANDBOX, claimed_account=SANDBOX):
    department = make_department("payments")
    account = make_account(
        department, kind="aws", account_id=claimed_account, dns_zone=ZONE,
        role_arn=f"arn:aws:iam::{account_id_in_role}:role/portal-provisioner", external_id="ext-1",
    )
    product = make_product(department, slug="shop")
    user = make_user("owner", departments=[department])
    environment = make_environment(product, account=account, name="dev", status="provisioning", pattern_slug="demo-ecs")
    pattern = get_pattern("demo-ecs")
    params = validate_parameters(pattern, {})
    environment.code_snapshot = render_workspace(pattern, params, render_context(environment, user), PORTAL_FILES)
    environment.pattern_version = pattern.version
    environment.save()
    return environment, user


def run_now(environment, kind, user):
    run = transitions.queue_run(environment, kind, requested_by=user)  # dispatched on commit
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING  # it has the slot; executed here, not by a worker
    execute_run(run.pk, worker="test:1")
    return Run.objects.get(pk=run.pk)


def test_a_wrong_account_is_stopped_before_any_terraform_step(portal_on_moto):
    # The role lives in 123456789012, but the account row claims 210987654321.
    environment, user = aws_environment(account_id_in_role="123456789012", claimed_account=SANDBOX)
    run = run_now(environment, "create", user)
    assert run.status == RunStatus.FAILED
    assert "landed in account 123456789012, not 210987654321" in run.explanation
    assert run.commands == []  # Terraform never started
    environment.refresh_from_db()
    assert environment.status == "failed" and "nothing was created" in environment.status_reason


def test_the_right_account_passes_and_dns_and_orphans_are_reported(portal_on_moto):
    environment, user = aws_environment()
    fqdn = f"app-dev.{ZONE}"
    route53 = portal_on_moto.client("route53", SANDBOX)
    zone_id = route53.list_hosted_zones_by_name(DNSName=ZONE)["HostedZones"][0]["Id"]
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "CREATE",
        "ResourceRecordSet": {"Name": fqdn, "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": "lb.example.test"}]},
    }]})

    run = run_now(environment, "create", user)
    assert run.status == RunStatus.SUCCEEDED, run.explanation
    assert [c["step"] for c in run.commands] == ["init", "plan", "apply"]
    messages = list(run.events.values_list("message", flat=True))
    assert any(m.startswith("Account check:") for m in messages)
    assert f"DNS check: All 1 endpoint record(s) found in {ZONE}." in messages
    assert Endpoint.objects.filter(environment=environment, fqdn=fqdn).exists()

    # A leftover the destroy did not remove, tagged with this environment.
    tag = aws_accounts.environment_tag(Environment.objects.get(pk=environment.pk))
    s3 = portal_on_moto.client("s3", SANDBOX)
    s3.create_bucket(Bucket="leftover-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_tagging(Bucket="leftover-bucket", Tagging={"TagSet": [
        {"Key": "portal", "Value": django_settings.PORTAL_NAME}, {"Key": "portal:environment", "Value": tag}]})
    s3.create_bucket(Bucket="someone-elses", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_tagging(Bucket="someone-elses", Tagging={"TagSet": [
        {"Key": "portal", "Value": django_settings.PORTAL_NAME}, {"Key": "portal:environment", "Value": "other/env/1"}]})

    destroy = run_now(Environment.objects.get(pk=environment.pk), "destroy", user)
    assert destroy.status == RunStatus.SUCCEEDED, destroy.explanation
    environment.refresh_from_db()
    assert environment.status == "deleted"
    assert [o["arn"] for o in environment.orphans] == ["arn:aws:s3:::leftover-bucket"]
    assert environment.orphans_checked_at is not None
    assert destroy.events.filter(message__contains="leftover-bucket").exists()
