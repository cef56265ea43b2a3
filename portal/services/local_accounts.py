"""What the portal adds around a run in a `local` (offline) sandbox account: the footprint
folder standing for its cloud, and the orphan report read from it after a destroy (the same
shape as the AWS report, see `aws_accounts`). The folder logic is in `provisioning.localcloud`."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from portal.models import Environment, Run, SandboxAccount
from provisioning import localcloud


def is_local(run: Run) -> bool:
    return run.account.kind == SandboxAccount.Kind.LOCAL


def terraform_env(run: Run) -> dict[str, str]:
    """Where this environment's resources leave their footprint."""
    return terraform_env_for(run.environment_id)


def terraform_env_for(environment_id: int) -> dict[str, str]:
    return localcloud.terraform_env(settings.LOCAL_CLOUD_DIR, environment_id)


def existing_resources(environment_id: int) -> list[str]:
    return localcloud.existing_resources(settings.LOCAL_CLOUD_DIR, environment_id)


def record_orphans(run: Run) -> list[dict]:
    """Resources whose footprint is still there after a destroy, stored on the environment."""
    orphans = localcloud.find_orphans(settings.LOCAL_CLOUD_DIR, run.environment_id)
    Environment.objects.filter(pk=run.environment_id).update(orphans=orphans, orphans_checked_at=timezone.now())
    return orphans
