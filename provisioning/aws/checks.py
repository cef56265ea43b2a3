"""AWS checks around a Terraform run.

- `preflight` (before init/plan/apply): assume the sandbox account's role, confirm with
  GetCallerIdentity that the credentials landed in the expected account, confirm that the
  account's DNS zone exists as a Route 53 hosted zone. A wrong account stops the run before
  Terraform sees any credentials.
- `check_dns_records` (after apply): every endpoint FQDN has an A/AAAA/CNAME record (alias or
  not) in the account's zone.
- `find_orphans` (after destroy): resources that still carry the environment's tags.

Plain values in, results out: the portal turns its rows into an `AwsTarget` and persists the
results. Expected failures (denied, wrong account, zone missing, AWS unreachable) come back
as `CheckResult(ok=False, reason=...)` for people; only bugs raise.

What the sandbox role needs for the checks (besides what the patterns need): its trust
policy allows the portal `sts:AssumeRole` and `sts:SetSourceIdentity` (with the external
id as a condition); its permissions allow `route53:ListHostedZonesByName`,
`route53:ListResourceRecordSets` and `tag:GetResources`.

Sessions come from `provisioning.aws.session` (isolated from the worker's AWS environment).

Must not import Django or anything from `portal/`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from provisioning.aws.provider import _sanitise_tags
from provisioning.aws.session import AwsTarget, _client, assume

__all__ = [
    "AwsCheckError",
    "CheckResult",
    "check_dns_records",
    "find_orphans",
    "preflight",
]

_RECORD_TYPES = frozenset({"A", "AAAA", "CNAME"})


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


def preflight(target: AwsTarget, session: boto3.Session, new_fqdns: Iterable[str] = ()) -> CheckResult:
    """Before any Terraform step: can the portal act in this account, and is it the right one?

    1. assume the role (failure: the reason names AssumeRole and AWS's error code),
    2. GetCallerIdentity must return `target.account_id` ("the role landed in account X, not
       Y: refusing to run Terraform"),
    3. `target.dns_zone` must exist as a Route 53 hosted zone (exact name; public and/or
       private noted in details),
    4. none of `new_fqdns` (what a create is about to add) may exist yet as an A, AAAA or
       CNAME record in that zone: Terraform would fail on it only after creating the rest.
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
    wanted = [fqdn for fqdn in dict.fromkeys(_zone_name(f) for f in new_fqdns) if _in_zone(fqdn, _zone_name(target.dns_zone))]
    if wanted:
        details["step"] = "records"
        route53 = _client(assumed, "route53", target)
        try:
            taken = {fqdn: records for fqdn in wanted if (records := _records_in_zones(route53, zones, fqdn))}
        except (ClientError, BotoCoreError) as exc:
            details["error_code"] = _error_code(exc)
            return CheckResult(False, f"Reading DNS records of {target.dns_zone} failed ({_error_text(exc)}).", details)
        if taken:
            details["taken"] = taken
            names = ", ".join(f"{fqdn} ({', '.join(sorted({r['type'] for r in records}))})" for fqdn, records in taken.items())
            return CheckResult(
                False,
                f"{names} already exists as a record in the zone {target.dns_zone}: refusing to run Terraform; "
                "choose another name or application name, or remove the record",
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


def _records_in_zones(route53, zones: list[dict], fqdn: str) -> list[dict]:
    """The A/AAAA/CNAME record sets named `fqdn` in every zone of `zones` (public and private)."""
    return [record for zone in zones for record in _records_named(route53, zone["id"], fqdn)]


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
            records = _records_in_zones(route53, zones, fqdn)
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
    AWS may list a resource for some minutes after it was deleted; ECS clusters, services and
    task definitions ECS says are no longer ACTIVE and NAT gateways EC2 says are deleted are left
    out (`_deleted_but_listed`).
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
    return [found[arn] for arn in sorted(found) if not _deleted_but_listed(assumed, target, arn)]


# AWS keeps some deleted resources visible, tags and all: a deleted ECS cluster stays INACTIVE,
# a deleted ECS service DRAINING, then INACTIVE, for a while; a deregistered task definition stays INACTIVE for good; a
# deleted NAT gateway is listed as `deleted` for about an hour.
_NAT_GATEWAY_ARN = re.compile(r"^arn:[^:]+:ec2:([^:]+):[0-9]{12}:natgateway/(nat-[0-9a-f]+)$")
_ECS_CLUSTER_ARN = re.compile(r"^arn:[^:]+:ecs:([^:]+):[0-9]{12}:cluster/.+$")
_ECS_SERVICE_ARN = re.compile(r"^arn:[^:]+:ecs:([^:]+):[0-9]{12}:service/([^/]+)/(.+)$")
_ECS_TASK_DEFINITION_ARN = re.compile(r"^arn:[^:]+:ecs:([^:]+):[0-9]{12}:task-definition/.+$")


def _deleted_but_listed(assumed, target: AwsTarget, arn: str) -> bool:
    """True for a resource the tagging API lists but its own API says is gone (ECS clusters,
    services and task definitions no longer ACTIVE, NAT gateways deleting or deleted). Anything else, or an error asking, is
    reported as it is listed."""
    try:
        if match := _NAT_GATEWAY_ARN.match(arn):
            ec2 = _client(assumed, "ec2", target, region=match.group(1))
            gateways = ec2.describe_nat_gateways(NatGatewayIds=[match.group(2)]).get("NatGateways", [])
            return bool(gateways) and all(g.get("State") in ("deleting", "deleted") for g in gateways)
        if match := _ECS_CLUSTER_ARN.match(arn):
            ecs = _client(assumed, "ecs", target, region=match.group(1))
            clusters = ecs.describe_clusters(clusters=[arn]).get("clusters", [])
            return bool(clusters) and all(c.get("status") != "ACTIVE" for c in clusters)
        if match := _ECS_SERVICE_ARN.match(arn):
            ecs = _client(assumed, "ecs", target, region=match.group(1))
            services = ecs.describe_services(cluster=match.group(2), services=[arn]).get("services", [])
            return bool(services) and all(s.get("status") != "ACTIVE" for s in services)
        if match := _ECS_TASK_DEFINITION_ARN.match(arn):
            ecs = _client(assumed, "ecs", target, region=match.group(1))
            status = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"].get("status")
            return status in ("INACTIVE", "DELETE_IN_PROGRESS")
    except (ClientError, BotoCoreError, KeyError):
        return False
    return False
