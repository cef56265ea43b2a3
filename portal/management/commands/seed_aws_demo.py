"""`manage.py seed_aws_demo --endpoint URL`: an `aws` sandbox account aimed at a simulated AWS
(moto's server, as `make run-aws` starts it), with its Route 53 zone and the shared
infrastructure `ecs-service` needs created there.

A simulated AWS forgets everything when it restarts, so this command creates what is missing
in it and then brings the account row up to date (endpoint and shared infrastructure); every
other row is left as it is. It runs after `seed_demo` (the department must exist). It says in
one line when the AWS provider cannot be installed, naming the setting to use.
"""

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal.management.commands.seed_demo import SeedResult, _ensure
from portal.models import CidrPool, Department, SandboxAccount
from provisioning.aws.simulated import prepare_account

ACCOUNT = {
    "account_id": "000000000003",
    "name": "Simulated AWS (moto)",
    "department": "payments",
    "region": "eu-west-1",
    "dns_zone": "aws.sandbox.test",
    "external_id": "demo-external-id",
    "max_concurrent_runs": 3,
}
POOL = {"cidr": "10.102.0.0/16", "prefix_length": 20, "description": "ecs-fullstack networks (simulated AWS)"}


def provider_problem() -> str | None:
    """Why Terraform could not install hashicorp/aws here, in one line; None when it can (or
    may: without a mirror it downloads from the registry)."""
    mirror = settings.TERRAFORM_PROVIDER_MIRROR
    if not mirror:
        return ("TERRAFORM_PROVIDER_MIRROR is not set: Terraform will download hashicorp/aws from "
                "registry.terraform.io; offline, set TERRAFORM_PROVIDER_MIRROR to a provider mirror holding it.")
    if not (Path(mirror) / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        return (f"TERRAFORM_PROVIDER_MIRROR={mirror} holds no registry.terraform.io/hashicorp/aws: the AWS "
                "patterns cannot be installed; point TERRAFORM_PROVIDER_MIRROR at a mirror that has it.")
    return None


class Command(BaseCommand):
    help = "Create an aws sandbox account aimed at a simulated AWS, with its zone and shared infrastructure there."

    def add_arguments(self, parser):
        parser.add_argument("--endpoint", required=True, help="the simulated AWS, e.g. http://127.0.0.1:5000")

    def handle(self, *args, endpoint, **options):
        spec = dict(ACCOUNT)
        department = Department.objects.filter(slug=spec.pop("department")).first()
        if department is None:
            raise CommandError("The payments department does not exist: run `manage.py seed_demo` first.")
        try:
            prepared = prepare_account(endpoint, spec["account_id"], spec["region"], spec["dns_zone"])
        except Exception as exc:  # noqa: BLE001 - any failure to reach or use it, said in one line
            raise CommandError(f"Could not prepare the simulated AWS at {endpoint}: {exc}") from exc
        account_id = spec.pop("account_id")
        fields = {
            **spec,
            "department": department,
            "kind": SandboxAccount.Kind.AWS,
            "role_arn": f"arn:aws:iam::{account_id}:role/portal-provisioner",
            "endpoint_url": endpoint,
            "shared_infrastructure": prepared["shared_infrastructure"],
        }
        with transaction.atomic():
            account = SandboxAccount.objects.filter(account_id=account_id).first()
            created = account is None
            account = account or SandboxAccount(account_id=account_id)
            for name, value in fields.items():
                setattr(account, name, value)
            try:
                account.full_clean()  # before it is written, as the admin would
                account.save()
                pool = dict(POOL)
                _ensure(SeedResult(), CidrPool, {"account": account, "cidr": pool.pop("cidr")}, pool)
            except ValidationError as exc:
                raise CommandError(f"The simulated account clashes with existing rows, nothing was written: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(
            f"{'Created' if created else 'Updated'} the account {account.name} ({account.account_id}) at {endpoint}: "
            f"zone {account.dns_zone} ({prepared['zone_id']}), shared load balancer, listener and ECS cluster."
        ))
        if settings.AWS_BASE_CREDENTIALS is None:
            self.stdout.write(self.style.WARNING(
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set: the worker would use the host's role, which a "
                "simulated AWS does not know; set both (any value, e.g. testing)."
            ))
        if problem := provider_problem():
            self.stdout.write(self.style.WARNING(problem))
