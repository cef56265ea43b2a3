"""`manage.py seed_aws_demo` (what `make run-aws` runs each time its moto server starts): an
aws account aimed at the simulated AWS, with its zone and shared infrastructure created there."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from portal.management.commands.seed_aws_demo import ACCOUNT, provider_problem
from portal.management.commands.seed_demo import seed_demo_data
from portal.models import SandboxAccount
from provisioning.aws.simulated import SimulatedAccount
from tests.moto_server import aws, moto_server  # noqa: F401

pytestmark = pytest.mark.django_db


def seed(endpoint) -> str:
    out = StringIO()
    call_command("seed_aws_demo", "--endpoint", endpoint, stdout=out)
    return out.getvalue()


def test_it_prepares_the_simulated_account_and_keeps_it_up_to_date(aws):
    seed_demo_data()
    first = seed(aws.endpoint_url)
    account = SandboxAccount.objects.get(account_id=ACCOUNT["account_id"])
    assert first.startswith(f"Created the account {ACCOUNT['name']}")
    assert account.kind == "aws" and account.simulated and account.endpoint_url == aws.endpoint_url
    account.full_clean()
    in_moto = SimulatedAccount(aws.endpoint_url, account.account_id, account.region)
    listeners = in_moto.client("elbv2").describe_listeners(LoadBalancerArn=in_moto.client("elbv2").describe_load_balancers()["LoadBalancers"][0]["LoadBalancerArn"])
    assert [l["ListenerArn"] for l in listeners["Listeners"]] == [account.shared_infrastructure["alb_listener_arn"]]
    assert in_moto.client("route53").list_hosted_zones_by_name(DNSName=ACCOUNT["dns_zone"])["HostedZones"][0]["Name"] == "aws.sandbox.test."

    # Again: nothing new in moto, the row unchanged.
    assert seed(aws.endpoint_url).startswith("Updated the account")
    assert SandboxAccount.objects.get(pk=account.pk).shared_infrastructure == account.shared_infrastructure
    assert len(in_moto.client("elbv2").describe_load_balancers()["LoadBalancers"]) == 1

    # moto restarted (forgot everything): made again, and the row follows.
    aws.reset()
    seed(aws.endpoint_url)
    renewed = SandboxAccount.objects.get(pk=account.pk)
    assert renewed.shared_infrastructure["alb_listener_arn"] != account.shared_infrastructure["alb_listener_arn"]
    assert renewed.cidr_pools.count() == 1


def test_it_refuses_without_the_demo_department_or_a_simulated_aws(aws):
    with pytest.raises(CommandError, match="run `manage.py seed_demo` first"):
        seed(aws.endpoint_url)
    seed_demo_data()
    with pytest.raises(CommandError, match="is not a simulated AWS"):
        seed("https://sts.eu-west-1.amazonaws.com")
    with pytest.raises(CommandError, match="Could not prepare the simulated AWS at http://127.0.0.1:9"):
        seed("http://127.0.0.1:9")
    assert not SandboxAccount.objects.filter(account_id=ACCOUNT["account_id"]).exists()


def test_it_names_the_setting_when_no_provider_can_be_installed(settings, tmp_path):
    settings.TERRAFORM_PROVIDER_MIRROR = None
    assert provider_problem().startswith("TERRAFORM_PROVIDER_MIRROR is not set")
    settings.TERRAFORM_PROVIDER_MIRROR = str(tmp_path)
    assert provider_problem() == (f"TERRAFORM_PROVIDER_MIRROR={tmp_path} holds no registry.terraform.io/hashicorp/aws: "
                                  "the AWS patterns cannot be installed; point TERRAFORM_PROVIDER_MIRROR at a mirror that has it.")
    (tmp_path / "registry.terraform.io" / "hashicorp" / "aws").mkdir(parents=True)
    assert provider_problem() is None
