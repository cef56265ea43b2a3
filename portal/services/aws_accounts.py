"""What the portal adds around a run in an AWS sandbox account.

Before Terraform starts: a per-run provider file (assume_role into the account, the account
guard `allowed_account_ids`, default tags) and a boto3 preflight (the role lands in the right
account, its DNS zone exists). After apply: the endpoints' DNS records are looked up. After
destroy: resources still tagged with the environment are reported as orphans.
The checks themselves live in `provisioning.aws` (no Django); this module feeds them rows.
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from portal.models import Environment, Run, RunKind, SandboxAccount
from provisioning import aws

PROVIDER_FILE = aws.PROVIDER_FILE


def is_aws(run: Run) -> bool:
    return run.account.kind == SandboxAccount.Kind.AWS


def environment_tag(environment: Environment) -> str:
    """Stable and unique for the environment's whole life (names can be reused after delete)."""
    return f"{environment.product.slug}/{environment.name}/{environment.pk}"


def target_for(run: Run) -> aws.AwsTarget:
    return target_of(run.account, session_name=f"portal-run-{run.pk}",
                     requester=getattr(run.requested_by, "username", "") or "portal")


def target_of(account: SandboxAccount, *, session_name: str, requester: str) -> aws.AwsTarget:
    """The account as the provider and the checks see it, for one session (a run, a drift check)."""
    return aws.AwsTarget(
        account_id=account.account_id,
        region=account.region,
        role_arn=account.role_arn,
        external_id=account.external_id,
        dns_zone=account.dns_zone,
        session_name=session_name,
        source_identity=requester,
        endpoint_url=endpoint_url(account),
    )


def endpoint_url(account: SandboxAccount) -> str | None:
    """Where the account's AWS API is: its own endpoint (a simulated AWS), else the portal's
    PORTAL_AWS_ENDPOINT_URL, else None (real AWS)."""
    return account.endpoint_url or settings.PORTAL_AWS_ENDPOINT_URL


def default_tags(environment: Environment) -> dict[str, str]:
    """The environment's default tags: the same for every run of its life - the run that built
    it (`portal:run`) and who asked for it - so a change or a drift check never re-tags every
    resource (a plan would list them all as changed). Each run's own identity is its
    AssumeRole session name (`portal-run-<id>`, in CloudTrail)."""
    built_by = Run.objects.filter(environment=environment, kind=RunKind.CREATE).order_by("pk").values_list("pk", flat=True).first()
    return aws.portal_default_tags(
        portal=settings.PORTAL_NAME,
        environment=environment_tag(environment),
        run=f"portal-run-{built_by}" if built_by else "-",
        product=environment.product.slug,
        requester=getattr(environment.requested_by, "username", "") or "portal",
    )


def drift_provider_file(environment: Environment, session_name: str) -> dict[str, str]:
    """`portal_provider.tf` for a drift check: the same account guard and default tags as the
    environment's runs (the provider computes `tags_all` from them), its own session name."""
    target = target_of(environment.account, session_name=session_name, requester="portal")
    return {aws.PROVIDER_FILE: aws.provider_config(target, default_tags=default_tags(environment))}


def drift_preflight(environment: Environment, session_name: str) -> aws.CheckResult:
    """The account guard before a drift check talks to AWS (AssumeRole, caller identity)."""
    return aws.preflight(target_of(environment.account, session_name=session_name, requester="portal"), session(), [])


def provider_file(run: Run) -> dict[str, str]:
    """`portal_provider.tf` for this run: regenerated per run, since the session name is the run."""
    return {aws.PROVIDER_FILE: aws.provider_config(target_for(run), default_tags=default_tags(run.environment))}


def session():
    return aws.base_session(settings.AWS_BASE_CREDENTIALS, endpoint_url=settings.PORTAL_AWS_ENDPOINT_URL)


def terraform_env() -> dict[str, str]:
    """The portal's base credentials for Terraform's AWS provider (it assumes the role itself)."""
    creds = settings.AWS_BASE_CREDENTIALS or {}
    names = {
        "aws_access_key_id": "AWS_ACCESS_KEY_ID",
        "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
        "aws_session_token": "AWS_SESSION_TOKEN",
    }
    return {names[key]: value for key, value in creds.items()}


def preflight(run: Run, new_fqdns: list[str] = ()) -> aws.CheckResult:
    return aws.preflight(target_for(run), session(), new_fqdns)


def check_endpoints(run: Run, fqdns: list[str]) -> aws.CheckResult:
    return aws.check_dns_records(target_for(run), session(), fqdns)


def record_orphans(run: Run) -> list[dict]:
    """Look up resources still tagged with the environment and store them on it."""
    environment = run.environment
    orphans = aws.find_orphans(
        target_for(run),
        session(),
        {aws.TAG_PORTAL: settings.PORTAL_NAME, aws.TAG_ENVIRONMENT: environment_tag(environment)},
    )
    Environment.objects.filter(pk=environment.pk).update(orphans=orphans, orphans_checked_at=timezone.now())
    return orphans
