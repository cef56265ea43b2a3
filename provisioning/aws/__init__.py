"""AWS around a Terraform run, one concern per module:

- `session`: getting credentials and clients (`AwsTarget`, `base_session`, `assume`, the
  IAM session-name / source-identity sanitisers).
- `provider`: the generated `portal_provider.tf` (`provider_config`), the portal's default
  tags (`portal_default_tags`, `TAG_*`) and the tag sanitisers.
- `checks`: `preflight`, `check_dns_records`, `find_orphans`, `CheckResult`, `AwsCheckError`.

The names below are re-exported for `from provisioning import aws` (portal/services/aws_accounts.py);
other code imports from the module that owns the name.

Must not import Django or anything from `portal/`.
"""

from provisioning.aws.checks import CheckResult, check_dns_records, find_orphans, preflight
from provisioning.aws.provider import PROVIDER_FILE, TAG_ENVIRONMENT, TAG_PORTAL, portal_default_tags, provider_config
from provisioning.aws.session import AwsTarget, base_session

__all__ = [
    "PROVIDER_FILE",
    "TAG_ENVIRONMENT",
    "TAG_PORTAL",
    "AwsTarget",
    "CheckResult",
    "base_session",
    "check_dns_records",
    "find_orphans",
    "portal_default_tags",
    "preflight",
    "provider_config",
]
