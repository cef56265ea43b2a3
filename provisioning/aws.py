"""AWS checks around a Terraform run, and the generated AWS provider configuration.

- `preflight` (before init/plan/apply): assume the sandbox account's role, confirm with
  GetCallerIdentity that the credentials landed in the expected account, confirm that the
  account's DNS zone exists as a Route 53 hosted zone. A wrong account stops the run before
  Terraform sees any credentials.
- `check_dns_records` (after apply): every endpoint FQDN has an A/AAAA/CNAME record (alias or
  not) in the account's zone.
- `find_orphans` (after destroy): resources that still carry the environment's tags.
- `provider_config`: the text of `portal_provider.tf` (assume_role, allowed_account_ids,
  default_tags), every value emitted as an HCL literal.

Plain values in, results out: the portal turns its rows into an `AwsTarget` and persists the
results. Expected failures (denied, wrong account, zone missing, AWS unreachable) come back
as `CheckResult(ok=False, reason=...)` for people; only bugs raise.

What the sandbox role needs for the checks (besides what the patterns need): its trust
policy allows the portal `sts:AssumeRole` and `sts:SetSourceIdentity` (with the external
id as a condition); its permissions allow `route53:ListHostedZonesByName`,
`route53:ListResourceRecordSets` and `tag:GetResources`.

Sessions are built from explicit values only (credentials, region, endpoint). The worker's
`os.environ` and `~/.aws` files are never consulted for configuration: an `AWS_PROFILE`,
`AWS_ENDPOINT_URL` or `AWS_ACCESS_KEY_ID` meant for something else on the worker host cannot
redirect or re-identify the checks.

Must not import Django or anything from `portal/`.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.configprovider import (
    BOTOCORE_DEFAUT_SESSION_VARIABLES,
    DEFAULT_PROXIES_CONFIG_VARS,
    DEFAULT_S3_CONFIG_VARS,
    ConfigChainFactory,
    ConfigValueStore,
    SectionConfigProvider,
)
from botocore.credentials import ContainerProvider, CredentialResolver, InstanceMetadataProvider
from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import InstanceMetadataFetcher

from provisioning.render import hcl_literal

__all__ = [
    "PROVIDER_FILE",
    "TAG_ENVIRONMENT",
    "TAG_PORTAL",
    "TAG_PRODUCT",
    "TAG_REQUESTER",
    "TAG_RUN",
    "AwsCheckError",
    "AwsTarget",
    "CheckResult",
    "PortalSession",
    "assume",
    "base_session",
    "check_dns_records",
    "find_orphans",
    "portal_default_tags",
    "preflight",
    "provider_config",
    "sanitise_session_name",
    "sanitise_source_identity",
    "sanitise_tag_key",
    "sanitise_tag_value",
]

PROVIDER_FILE = "portal_provider.tf"

# The default tags every resource of an environment carries (provider `default_tags`).
TAG_PORTAL = "portal"
TAG_ENVIRONMENT = "portal:environment"
TAG_RUN = "portal:run"
TAG_PRODUCT = "portal:product"
TAG_REQUESTER = "portal:requester"

# Checks are a handful of calls: the shortest session STS allows is plenty.
CHECK_SESSION_SECONDS = 900

# Fail in seconds, not minutes, when an endpoint does not answer; `standard` retries cover
# throttling. `ignore_configured_endpoint_urls`: AWS_ENDPOINT_URL_<SERVICE> of the host must
# not redirect a client (the endpoint is always passed explicitly).
_CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 3},
    ignore_configured_endpoint_urls=True,
)

_RECORD_TYPES = frozenset({"A", "AAAA", "CNAME"})


@dataclass(frozen=True)
class AwsTarget:
    """What the portal knows about a sandbox account, for one run.

    `session_name` is the run id (e.g. "portal-run-42") and `source_identity` the requester's
    user name; both are sanitised where they are used (`sanitise_session_name`,
    `sanitise_source_identity`), so raw values are fine here. `endpoint_url` points every
    client at a local AWS (moto) in tests; None in production.
    """

    account_id: str
    region: str
    role_arn: str
    external_id: str
    dns_zone: str
    session_name: str
    source_identity: str
    endpoint_url: str | None = None


@dataclass
class CheckResult:
    """The outcome of a check. `reason` is for people; `details` is JSON-serialisable data
    for the run log (never credentials). `details["step"]` names where a failed check stopped."""

    ok: bool
    reason: str
    details: dict = field(default_factory=dict)


class AwsCheckError(Exception):
    """An AWS call needed by a check failed (denied, unreachable, ...); the message says which."""


# --------------------------------------------------------------------------------------------
# Sanitising names and tags
# --------------------------------------------------------------------------------------------

# RoleSessionName and SourceIdentity: [\w+=,.@-]{2,64}, where \w is ASCII (AWS's regex).
_IAM_NAME_DISALLOWED = re.compile(r"[^A-Za-z0-9_+=,.@-]+")
_IAM_NAME_MAX = 64
_TAG_PUNCTUATION = frozenset("_.:/=+-@")
_TAG_KEY_MAX = 128
_TAG_VALUE_MAX = 256


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _sanitise_iam_name(value: str, fallback: str) -> str:
    """Transliterate to ASCII, replace each run of disallowed characters with "-", and fit
    2..64 characters. Too long: cut and end with a hash of the whole value, so two long names
    stay distinct. Too short (e.g. a name in a non-Latin script): `fallback` + hash.

    Transliteration is lossy ("Zoë Müller" -> "Zoe-Muller"); that is fine for an audit trail
    because the session name is the run id, and the run row names the exact requester.
    """
    value = str(value)
    ascii_text = "".join(
        char for char in unicodedata.normalize("NFKD", value) if not unicodedata.combining(char)
    )
    cleaned = _IAM_NAME_DISALLOWED.sub("-", ascii_text).strip("-")
    if len(cleaned) < 2:
        return f"{fallback}-{_digest(value)}"
    if len(cleaned) > _IAM_NAME_MAX:
        return cleaned[: _IAM_NAME_MAX - 9].rstrip("-") + "-" + _digest(value)
    return cleaned


def sanitise_session_name(value: str) -> str:
    """A valid RoleSessionName (`[\\w+=,.@-]`, 2-64 characters) for `value`; idempotent."""
    return _sanitise_iam_name(value, "portal-run")


def sanitise_source_identity(value: str) -> str:
    """A valid SourceIdentity (`[\\w+=,.@-]`, 2-64 characters) for a user name; idempotent.

    A name with spaces, quotes or non-ASCII letters must not make AssumeRole fail.
    """
    return _sanitise_iam_name(value, "user")


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
# Sessions
# --------------------------------------------------------------------------------------------


class PortalSession(boto3.Session):
    """A boto3 session cut off from the host's AWS configuration, with a default endpoint.

    Every client it makes gets `endpoint_url` (unless one is passed) and the module's client
    config (timeouts, retries, configured endpoints ignored).
    """

    def __init__(self, *, credentials: Mapping[str, str] | None, region_name: str | None, endpoint_url: str | None):
        super().__init__(botocore_session=_isolated_botocore_session(credentials), region_name=region_name)
        self.endpoint_url = endpoint_url

    def client(self, service_name, region_name=None, endpoint_url=None, config=None, **kwargs):  # noqa: D102
        config = _CLIENT_CONFIG.merge(config) if config is not None else _CLIENT_CONFIG
        return super().client(
            service_name,
            region_name=region_name,
            endpoint_url=endpoint_url or self.endpoint_url,
            config=config,
            **kwargs,
        )

    def resource(self, service_name, region_name=None, endpoint_url=None, config=None, **kwargs):  # noqa: D102
        config = _CLIENT_CONFIG.merge(config) if config is not None else _CLIENT_CONFIG
        return super().resource(
            service_name,
            region_name=region_name,
            endpoint_url=endpoint_url or self.endpoint_url,
            config=config,
            **kwargs,
        )


def _isolated_botocore_session(credentials: Mapping[str, str] | None) -> botocore.session.Session:
    """A botocore session whose configuration comes from nothing but its arguments.

    botocore's default config chain reads AWS_* environment variables and ~/.aws/config; here
    the chain has no environment (`environ={}`) and both shared files are /dev/null. With
    `credentials`, they are the only identity. Without, only the host's own role is used:
    the ECS task role (its variables are set by ECS for exactly this) or the EC2 instance role.
    """
    core = botocore.session.Session()
    chain = ConfigChainFactory(session=core, environ={})

    def chains(variables: Mapping[str, tuple]) -> dict:
        return {
            name: chain.create_config_chain(
                instance_name=name,
                env_var_names=None,
                config_property_names=config_name,
                default=default,
                conversion_func=conversion,
            )
            for name, (config_name, _env, default, conversion) in variables.items()
        }

    mapping = chains(BOTOCORE_DEFAUT_SESSION_VARIABLES)
    mapping["s3"] = SectionConfigProvider("s3", core, chains(DEFAULT_S3_CONFIG_VARS))
    mapping["proxies_config"] = SectionConfigProvider("proxies_config", core, chains(DEFAULT_PROXIES_CONFIG_VARS))
    core.register_component("config_store", ConfigValueStore(mapping=mapping))
    core.set_config_variable("config_file", os.devnull)
    core.set_config_variable("credentials_file", os.devnull)
    core.set_config_variable("ignore_configured_endpoint_urls", True)

    if credentials is not None:
        access_key = credentials.get("aws_access_key_id")
        secret_key = credentials.get("aws_secret_access_key")
        if not access_key or not secret_key:
            raise ValueError("credentials need aws_access_key_id and aws_secret_access_key")
        core.set_credentials(access_key, secret_key, credentials.get("aws_session_token") or None)
    else:
        fetcher = InstanceMetadataFetcher(timeout=2, num_attempts=2, env={})
        resolver = CredentialResolver(
            [ContainerProvider(), InstanceMetadataProvider(iam_role_fetcher=fetcher)]
        )
        core.register_component("credential_provider", resolver)
    return core


def base_session(
    credentials: Mapping[str, str] | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> PortalSession:
    """The portal's own AWS session, from which sandbox roles are assumed.

    `credentials`: {"aws_access_key_id", "aws_secret_access_key", optional
    "aws_session_token"}, as the portal's settings provide them (tests pass moto's dummy
    "testing" keys). None: the host's role (ECS task role / EC2 instance role), never
    environment variables or profile files. `endpoint_url` becomes every client's endpoint.
    """
    return PortalSession(credentials=credentials, region_name=region, endpoint_url=endpoint_url)


def _endpoint(target: AwsTarget, session: boto3.Session) -> str | None:
    return target.endpoint_url or getattr(session, "endpoint_url", None)


def _client(session: boto3.Session, service: str, target: AwsTarget, region: str | None = None):
    return session.client(
        service,
        region_name=region or target.region,
        endpoint_url=_endpoint(target, session),
        config=_CLIENT_CONFIG,
    )


def assume(target: AwsTarget, session: boto3.Session, *, duration_seconds: int = CHECK_SESSION_SECONDS) -> PortalSession:
    """Assume the target's role from `session`; return a session with the temporary credentials.

    Session name = the sanitised run id, SourceIdentity = the sanitised requester, so
    CloudTrail in the sandbox account names the run and the person. (The role's trust policy
    must allow `sts:SetSourceIdentity` as well as `sts:AssumeRole`.) Raises ClientError /
    BotoCoreError; `preflight` turns them into a reason.
    """
    sts = _client(session, "sts", target)
    kwargs: dict[str, Any] = {
        "RoleArn": target.role_arn,
        "RoleSessionName": sanitise_session_name(target.session_name),
        "SourceIdentity": sanitise_source_identity(target.source_identity),
        "DurationSeconds": duration_seconds,
    }
    if target.external_id:
        kwargs["ExternalId"] = target.external_id
    credentials = sts.assume_role(**kwargs)["Credentials"]
    return PortalSession(
        credentials={
            "aws_access_key_id": credentials["AccessKeyId"],
            "aws_secret_access_key": credentials["SecretAccessKey"],
            "aws_session_token": credentials["SessionToken"],
        },
        region_name=target.region,
        endpoint_url=_endpoint(target, session),
    )


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def _error_text(exc: Exception) -> str:
    """`Code: message` for people (AWS messages never contain the caller's secrets)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "ClientError"
        message = error.get("Message") or ""
        return f"{code}: {message}" if message else code
    return f"{type(exc).__name__}: {exc}"


def _assume_failure(target: AwsTarget, exc: Exception) -> CheckResult:
    code = _error_code(exc)
    if code == "AccessDenied":
        hint = (
            " Check the role's trust policy (sts:AssumeRole and sts:SetSourceIdentity for the portal)"
            " and the external id."
        )
    else:
        hint = ""
    return CheckResult(
        False,
        f"Assuming {target.role_arn} failed ({_error_text(exc)}).{hint}",
        {"step": "assume_role", "error_code": code, "role_arn": target.role_arn},
    )


def _zone_name(value: str) -> str:
    """Compare DNS names as Route 53 stores them: lower case, no trailing dot, octal escapes
    (`\\052` for `*`) decoded, non-ASCII labels as IDNA."""
    text = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), value.strip()).rstrip(".").lower()
    if not text.isascii():
        text = text.encode("idna").decode("ascii")
    return text


def _hosted_zones(route53, zone: str) -> list[dict]:
    """Every hosted zone named exactly `zone` (a public and a private one can share a name).

    ListHostedZonesByName returns zones sorted from DNSName on, so the matches come first;
    paging continues only while whole pages match.
    """
    wanted = _zone_name(zone)
    found: list[dict] = []
    kwargs: dict[str, Any] = {"DNSName": wanted + ".", "MaxItems": "100"}
    while True:
        page = route53.list_hosted_zones_by_name(**kwargs)
        zones = page.get("HostedZones", [])
        matches = [z for z in zones if _zone_name(z["Name"]) == wanted]
        found.extend(
            {
                "id": z["Id"].rsplit("/", 1)[-1],
                "name": z["Name"],
                "private": bool(z.get("Config", {}).get("PrivateZone", False)),
            }
            for z in matches
        )
        if not page.get("IsTruncated") or len(matches) < len(zones) or not page.get("NextDNSName"):
            return found
        kwargs = {"DNSName": page["NextDNSName"], "HostedZoneId": page["NextHostedZoneId"], "MaxItems": "100"}


def _describe_zones(zones: list[dict]) -> str:
    return ", ".join(f"{z['id']} ({'private' if z['private'] else 'public'})" for z in zones)


def preflight(target: AwsTarget, session: boto3.Session) -> CheckResult:
    """Before any Terraform step: can the portal act in this account, and is it the right one?

    1. assume the role (failure: the reason names AssumeRole and AWS's error code),
    2. GetCallerIdentity must return `target.account_id` ("the role landed in account X, not
       Y: refusing to run Terraform"),
    3. `target.dns_zone` must exist as a Route 53 hosted zone (exact name; public and/or
       private noted in details).
    Never raises for these expected failures (nor for AWS being unreachable): ok=False.
    """
    if not re.fullmatch(r"[0-9]{12}", target.account_id or ""):
        return CheckResult(False, f"{target.account_id!r} is not an AWS account id (12 digits).", {"step": "target"})
    try:
        assumed = assume(target, session)
    except (ClientError, BotoCoreError) as exc:
        return _assume_failure(target, exc)

    try:
        identity = _client(assumed, "sts", target).get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        return CheckResult(
            False,
            f"GetCallerIdentity with the assumed role failed ({_error_text(exc)}).",
            {"step": "identity", "error_code": _error_code(exc)},
        )
    landed = str(identity.get("Account", ""))
    details: dict[str, Any] = {"step": "identity", "account_id": landed, "caller_arn": identity.get("Arn", "")}
    if landed != target.account_id:
        return CheckResult(
            False,
            f"the role landed in account {landed}, not {target.account_id}: refusing to run Terraform",
            details,
        )

    details["step"] = "dns_zone"
    try:
        zones = _hosted_zones(_client(assumed, "route53", target), target.dns_zone)
    except (ClientError, BotoCoreError) as exc:
        details["error_code"] = _error_code(exc)
        return CheckResult(False, f"Looking up the hosted zone {target.dns_zone} failed ({_error_text(exc)}).", details)
    details["zones"] = zones
    if not zones:
        return CheckResult(
            False,
            f"the DNS zone {target.dns_zone} has no Route 53 hosted zone in account {landed}",
            details,
        )
    details["step"] = "done"
    return CheckResult(
        True,
        f"Account {landed} confirmed ({identity.get('Arn', '')}); hosted zone {target.dns_zone}: {_describe_zones(zones)}.",
        details,
    )


def _in_zone(fqdn: str, zone: str) -> bool:
    return fqdn == zone or fqdn.endswith("." + zone)


def _records_named(route53, zone_id: str, fqdn: str) -> list[dict]:
    """The A/AAAA/CNAME record sets named exactly `fqdn` in one zone (paged from the name on)."""
    found: list[dict] = []
    kwargs: dict[str, Any] = {"HostedZoneId": zone_id, "StartRecordName": fqdn + ".", "MaxItems": "100"}
    while True:
        page = route53.list_resource_record_sets(**kwargs)
        records = page.get("ResourceRecordSets", [])
        for record in records:
            if _zone_name(record["Name"]) != fqdn:
                return found  # sorted by name: we are past it
            if record["Type"] in _RECORD_TYPES:
                found.append(
                    {
                        "zone_id": zone_id,
                        "type": record["Type"],
                        "alias": "AliasTarget" in record,
                        "value": record["AliasTarget"]["DNSName"]
                        if "AliasTarget" in record
                        else [r["Value"] for r in record.get("ResourceRecords", [])],
                    }
                )
        if not page.get("IsTruncated"):
            return found
        kwargs = {
            "HostedZoneId": zone_id,
            "StartRecordName": page["NextRecordName"],
            "StartRecordType": page["NextRecordType"],
            "MaxItems": "100",
        }
        if page.get("NextRecordIdentifier"):
            kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]


def check_dns_records(target: AwsTarget, session: boto3.Session, fqdns: Iterable[str]) -> CheckResult:
    """After apply: every FQDN has an A, AAAA or CNAME record (alias or not) in the target's zone.

    Looks in every hosted zone with the zone's name (public and private). An FQDN outside
    the zone counts as missing and is listed under `outside_zone`. Exact names only: a
    wildcard record does not count. details: {"present": {fqdn: [records]}, "missing":
    [...], "outside_zone": [...], "zones": [...]}. Never raises for AWS failures: ok=False.
    """
    wanted = list(dict.fromkeys(_zone_name(f) for f in fqdns))
    zone = _zone_name(target.dns_zone)
    details: dict[str, Any] = {"step": "assume_role", "present": {}, "missing": [], "outside_zone": []}
    try:
        assumed = assume(target, session)
    except (ClientError, BotoCoreError) as exc:
        result = _assume_failure(target, exc)
        result.details.update(missing=wanted)
        return result
    route53 = _client(assumed, "route53", target)
    try:
        details["step"] = "dns_zone"
        zones = _hosted_zones(route53, zone)
        details["zones"] = zones
        if not zones:
            details["missing"] = wanted
            return CheckResult(False, f"the DNS zone {target.dns_zone} has no Route 53 hosted zone", details)
        details["step"] = "records"
        for fqdn in wanted:
            if not _in_zone(fqdn, zone):
                details["outside_zone"].append(fqdn)
                details["missing"].append(fqdn)
                continue
            records = [r for z in zones for r in _records_named(route53, z["id"], fqdn)]
            if records:
                details["present"][fqdn] = records
            else:
                details["missing"].append(fqdn)
    except (ClientError, BotoCoreError) as exc:
        details["error_code"] = _error_code(exc)
        return CheckResult(False, f"Reading DNS records of {target.dns_zone} failed ({_error_text(exc)}).", details)

    details["step"] = "done"
    missing = details["missing"]
    if not missing:
        return CheckResult(True, f"All {len(wanted)} endpoint record(s) found in {target.dns_zone}.", details)
    parts = [f"{len(missing)} of {len(wanted)} endpoint record(s) missing in {target.dns_zone}: {', '.join(missing)}"]
    if details["outside_zone"]:
        parts.append(f"outside the zone: {', '.join(details['outside_zone'])}")
    return CheckResult(False, "; ".join(parts), details)


def find_orphans(
    target: AwsTarget,
    session: boto3.Session,
    tags: Mapping[str, str],
    *,
    regions: Sequence[str] | None = None,
    page_size: int = 100,
) -> list[dict]:
    """After destroy: resources still carrying ALL of `tags`, as [{"arn", "tags"}] sorted by ARN.

    Uses the Resource Groups Tagging API (GetResources, paginated), which is regional:
    `regions` defaults to the target's region; add "us-east-1" for patterns with global
    resources (CloudFront, ...). Tag keys/values are sanitised exactly as `portal_default_tags`
    and `provider_config` sanitise them, so a raw environment name finds its resources.
    Note that AWS may list a resource for some minutes after it was deleted.
    Raises AwsCheckError when the role cannot be assumed or the API fails; ValueError for no
    tags (that would list the whole account).
    """
    clean = _sanitise_tags(tags)
    if not clean:
        raise ValueError("find_orphans needs at least one tag: no tags would list every resource of the account")
    filters = [{"Key": key, "Values": [value]} for key, value in clean.items()]
    try:
        assumed = assume(target, session)
    except (ClientError, BotoCoreError) as exc:
        raise AwsCheckError(f"Assuming {target.role_arn} failed ({_error_text(exc)})") from exc

    found: dict[str, dict] = {}
    for region in dict.fromkeys(regions or [target.region]):
        client = _client(assumed, "resourcegroupstaggingapi", target, region=region)
        try:
            pages = client.get_paginator("get_resources").paginate(TagFilters=filters, ResourcesPerPage=page_size)
            for page in pages:
                for item in page.get("ResourceTagMappingList", []):
                    arn = item["ResourceARN"]
                    found[arn] = {"arn": arn, "tags": {t["Key"]: t["Value"] for t in item.get("Tags", [])}}
        except (ClientError, BotoCoreError) as exc:
            raise AwsCheckError(f"Listing tagged resources in {region} failed ({_error_text(exc)})") from exc
    return [found[arn] for arn in sorted(found)]


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

    `target.endpoint_url` is not written: it exists for the checks' tests (moto); the AWS
    provider only ever talks to real AWS. The pattern must not declare its own
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
    return (
        "# Generated by the portal for one run; regenerated for every run. Do not edit.\n"
        'provider "aws" {\n'
        f"  region              = {hcl_literal(target.region)}\n"
        f"  allowed_account_ids = {hcl_literal([target.account_id])}\n"
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
