"""AWS patterns through the request service: the workspace carries its modules and a
per-run provider file, and the shared listener's rule priorities are allocated and released."""

import pytest

from portal.models import ListenerPriority
from portal.services import environments
from portal.services import runs as transitions
from portal.services.errors import Conflict
from tests.provisioning.test_aws_provider_config import parse
from tests.factories import make_account, make_department, make_pool, make_product, make_user

pytestmark = pytest.mark.django_db

SHARED = {
    "ecs_cluster_arn": "arn:aws:ecs:eu-west-1:210987654321:cluster/sandbox",
    "alb_listener_arn": "arn:aws:elasticloadbalancing:eu-west-1:210987654321:listener/app/sandbox/abc/def",
    "alb_dns_name": "sandbox-1.eu-west-1.elb.amazonaws.com",
    "alb_zone_id": "Z32O12XQLNTSW2",
    "alb_security_group_id": "sg-0123456789abcdef0",
    "vpc_id": "vpc-0123456789abcdef0",
    "private_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
}


@pytest.fixture
def aws_world():
    department = make_department("payments")
    account = make_account(
        department, kind="aws", account_id="210987654321", dns_zone="sandbox.example.com",
        role_arn="arn:aws:iam::210987654321:role/portal", external_id="ext", shared_infrastructure=SHARED,
    )
    make_pool(account, "10.30.0.0/16", prefix_length=24)
    return {"account": account, "product": make_product(department, slug="shop"),
            "owner": make_user("owner", departments=[department])}


def create(world, name, pattern="ecs-service"):
    return environments.request_create(user=world["owner"], product=world["product"], pattern_slug=pattern, name=name)


def test_ecs_service_gets_its_modules_a_provider_file_and_a_unique_priority(aws_world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first = create(aws_world, "one")
        second = create(aws_world, "two")
    files = first.environment.code_snapshot
    assert any(name.startswith("modules/ecs_service/") for name in files)
    provider = parse(files["portal_provider.tf"])["provider"][0]["aws"]
    assert provider["allowed_account_ids"] == ["210987654321"]
    assert provider["assume_role"][0]["session_name"] == f"portal-run-{first.pk}"
    assert "listener_priority = 100" in files["locals.tf"]
    assert "listener_priority = 101" in second.environment.code_snapshot["locals.tf"]
    assert SHARED["alb_listener_arn"] in files["locals.tf"]

    # A priority comes back when its environment is gone.
    transitions._release_allocations(first.environment_id)
    with django_capture_on_commit_callbacks(execute=False):
        third = create(aws_world, "three")
    assert "listener_priority = 100" in third.environment.code_snapshot["locals.tf"]
    assert ListenerPriority.objects.filter(released_at__isnull=True).count() == 2


def test_an_account_without_a_shared_listener_is_refused_before_anything_is_written(aws_world):
    aws_world["account"].shared_infrastructure = {}
    aws_world["account"].save()
    with pytest.raises(Conflict, match="no shared load-balancer listener"):
        create(aws_world, "one")
    assert not ListenerPriority.objects.exists()
    assert not aws_world["product"].environments.exists()


def test_the_full_stack_gets_a_network_and_no_priority(aws_world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = create(aws_world, "full", pattern="ecs-fullstack")
    assert run.environment.cidr == "10.30.0.0/24"
    assert '"10.30.0.0/24"' in run.environment.code_snapshot["locals.tf"]
    assert not ListenerPriority.objects.exists()
