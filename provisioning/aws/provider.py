"""The generated AWS provider configuration (`portal_provider.tf`) and the portal's tags.

- `provider_config`: the text of `portal_provider.tf` (assume_role, allowed_account_ids,
  default_tags), every value emitted as an HCL literal.
- `portal_default_tags` and the `TAG_*` keys: the tags every resource of an environment
  carries; `sanitise_tag_key` / `sanitise_tag_value` make any text a valid AWS tag.

Must not import Django or anything from `portal/`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from provisioning.aws.session import AwsTarget, sanitise_session_name, sanitise_source_identity
from provisioning.render import hcl_literal

__all__ = [
    "PATTERN_SERVICES",
    "PROVIDER_FILE",
    "TAG_ENVIRONMENT",
    "TAG_PORTAL",
    "TAG_PRODUCT",
    "TAG_REQUESTER",
    "TAG_RUN",
    "portal_default_tags",
    "provider_config",
    "sanitise_tag_key",
    "sanitise_tag_value",
]

PROVIDER_FILE = "portal_provider.tf"

# The provider's `endpoints` names of every AWS service the patterns and modules use (see
# tests/provisioning/test_aws_provider_config.py, which derives them from the resource types):
# an account with an endpoint URL sends all of them there, and nothing to AWS.
PATTERN_SERVICES = (
    "acm", "cloudwatchlogs", "ec2", "ecr", "ecs", "elbv2", "iam", "rds", "route53",
    "secretsmanager", "sts",
)

# The default tags every resource of an environment carries (provider `default_tags`).
TAG_PORTAL = "portal"
TAG_ENVIRONMENT = "portal:environment"
TAG_RUN = "portal:run"
TAG_PRODUCT = "portal:product"
TAG_REQUESTER = "portal:requester"

# --------------------------------------------------------------------------------------------
# Sanitising tags
# --------------------------------------------------------------------------------------------

_TAG_PUNCTUATION = frozenset("_.:/=+-@")
_TAG_KEY_MAX = 128
_TAG_VALUE_MAX = 256


def _tag_text(value: str, limit: int) -> str:
    """Replace characters outside `[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]` with "_" and cut to `limit`.

    AWS counts UTF-16 code units, so a character outside the BMP counts twice.
    """
    out: list[str] = []
    used = 0
    for char in str(value):
        if not (unicodedata.category(char)[0] in "LZN" or char in _TAG_PUNCTUATION):
            char = "_"
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > limit:
            break
        out.append(char)
        used += width
    return "".join(out)


def sanitise_tag_value(value: str) -> str:
    """A valid AWS tag value (allowed characters, at most 256); idempotent."""
    return _tag_text(value, _TAG_VALUE_MAX)


def sanitise_tag_key(key: str) -> str:
    """A valid AWS tag key (allowed characters, 1-128, not starting with the reserved `aws:`)."""
    text = _tag_text(key, _TAG_KEY_MAX)
    if not text:
        raise ValueError("a tag key cannot be empty")
    if text.lower().startswith("aws:"):
        raise ValueError(f"tag keys starting with 'aws:' are reserved by AWS: {text!r}")
    return text


def _sanitise_tags(tags: Mapping[str, str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in tags.items():
        clean_key = sanitise_tag_key(key)
        if clean_key in result:
            raise ValueError(f"two tag keys become {clean_key!r} once sanitised")
        result[clean_key] = sanitise_tag_value(value)
    return result


def portal_default_tags(*, portal: str, environment: str, run: str, product: str, requester: str) -> dict[str, str]:
    """The tags every resource of an environment carries, sanitised for AWS.

    `environment` must identify the environment uniquely and stay the same for all its runs:
    `find_orphans` looks leftovers up by it (not by `run`, which changes per run). An empty
    value becomes "-" (the AWS provider handles empty default tags badly).
    """
    raw = {
        TAG_PORTAL: portal,
        TAG_ENVIRONMENT: environment,
        TAG_RUN: run,
        TAG_PRODUCT: product,
        TAG_REQUESTER: requester,
    }
    return {key: sanitise_tag_value(value) or "-" for key, value in raw.items()}


# --------------------------------------------------------------------------------------------
# Provider configuration
# --------------------------------------------------------------------------------------------


def provider_config(target: AwsTarget, *, default_tags: Mapping[str, str]) -> str:
    """The text of `portal_provider.tf`: the AWS provider the pattern's resources use.

    region, `allowed_account_ids = [account]` (Terraform itself refuses any other account),
    `assume_role` (role, session name = run id, external id, source identity = requester) and
    `default_tags`. Every value goes through `hcl_literal`; nothing is string-formatted into
    HCL, and no value appears in a comment. Tag keys/values and the two IAM names are
    sanitised first (idempotent), so the file says exactly what AWS will accept.

    The file is a pure literal with no variables, regenerated by the portal for EVERY run:
    the code snapshot stored with the environment holds the create run's copy, and a destroy
    or rollback run replaces it with a freshly generated one before Terraform runs (so the
    session name is that run's id, and a rotated role or external id is picked up). A
    `var.portal_run_id` would need a `-var` on every command and would still freeze the role.

    With `target.endpoint_url` (a simulated AWS: moto, LocalStack, a proxy), the provider's
    `endpoints` send every service in PATTERN_SERVICES there and the instance metadata lookup
    is skipped; assume_role, the account guard and the tags stay exactly as for real AWS.
    Without it nothing about endpoints is written. The pattern must not declare its own
    `provider "aws"` block.
    """
    tags = _sanitise_tags(default_tags)
    assume_role = {
        "role_arn": target.role_arn,
        "session_name": sanitise_session_name(target.session_name),
        "external_id": target.external_id,
        "source_identity": sanitise_source_identity(target.source_identity),
    }
    if not target.external_id:
        del assume_role["external_id"]
    width = max(len(name) for name in assume_role)
    assume_lines = "\n".join(f"    {name.ljust(width)} = {hcl_literal(value)}" for name, value in assume_role.items())
    tag_lines = "\n".join(f"      {hcl_literal(key)} = {hcl_literal(value)}" for key, value in tags.items())
    simulated = ""
    if target.endpoint_url:
        service_width = max(len(name) for name in PATTERN_SERVICES)
        endpoint_lines = "\n".join(
            f"    {name.ljust(service_width)} = {hcl_literal(target.endpoint_url)}" for name in PATTERN_SERVICES
        )
        simulated = (
            "\n"
            "  # A simulated AWS (the account's endpoint URL): every service the patterns use.\n"
            "  skip_metadata_api_check = true\n"
            "  endpoints {\n"
            f"{endpoint_lines}\n"
            "  }\n"
        )
    return (
        "# Generated by the portal for one run; regenerated for every run. Do not edit.\n"
        'provider "aws" {\n'
        f"  region              = {hcl_literal(target.region)}\n"
        f"  allowed_account_ids = {hcl_literal([target.account_id])}\n"
        f"{simulated}"
        "\n"
        "  assume_role {\n"
        f"{assume_lines}\n"
        "  }\n"
        "\n"
        "  default_tags {\n"
        "    tags = {\n"
        f"{tag_lines}\n"
        "    }\n"
        "  }\n"
        "}\n"
    )
