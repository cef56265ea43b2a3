"""Tests for provisioning.aws checks against moto's server (real HTTP, real boto3 clients).

moto 5.2 behaves like AWS where it matters here: AssumeRole into a role ARN of another
account returns credentials that act in THAT account (GetCallerIdentity reports it, and
Route 53 / S3 / SQS / EC2 data is per account), so "the right account" and "the wrong
account" are both real outcomes of the identity call, not of the test's arithmetic.
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # with `-p no:django` nothing else puts the repository root on sys.path
    sys.path.insert(0, str(ROOT))

from provisioning.aws.checks import AwsCheckError, check_dns_records, find_orphans, preflight  # noqa: E402
from provisioning.aws.checks import _hosted_zones as hosted_zones  # noqa: E402
from provisioning.aws.provider import TAG_ENVIRONMENT, TAG_PORTAL, portal_default_tags  # noqa: E402
from provisioning.aws.session import AwsTarget, assume, base_session, sanitise_session_name  # noqa: E402
from tests.moto_server import DEFAULT_ACCOUNT, DUMMY_CREDENTIALS, aws, moto_server  # noqa: E402, F401
from tests.processes import free_port  # noqa: E402

SANDBOX = "210987654321"  # the sandbox account; not moto's default, so landing there is real
ZONE = "sandbox.example.com"
ROLE = f"arn:aws:iam::{SANDBOX}:role/portal"
ALB_ZONE_ID = "Z32O12XQLNTSW2"  # eu-west-1 ALB hosted zone id


def make_target(aws, **overrides) -> AwsTarget:
    values = {
        "account_id": SANDBOX,
        "region": aws.region,
        "role_arn": ROLE,
        "external_id": "portal-ext-7f3a",
        "dns_zone": ZONE,
        "session_name": "portal-run-42",
        "source_identity": "alice",
        "endpoint_url": aws.endpoint_url,
    }
    values.update(overrides)
    return AwsTarget(**values)


def portal_session(aws, credentials=DUMMY_CREDENTIALS):
    return base_session(credentials, endpoint_url=aws.endpoint_url, region=aws.region)


def create_zone(aws, account=SANDBOX, name=ZONE, private_vpc=None) -> str:
    route53 = aws.client("route53", account)
    kwargs = {"Name": name, "CallerReference": f"{name}-{private_vpc or 'public'}"}
    if private_vpc:
        kwargs["VPC"] = {"VPCRegion": aws.region, "VPCId": private_vpc}
        kwargs["HostedZoneConfig"] = {"PrivateZone": True, "Comment": "private"}
    return route53.create_hosted_zone(**kwargs)["HostedZone"]["Id"].rsplit("/", 1)[-1]


def upsert(aws, zone_id, name, record_type, *, alias_to=None, value=None, account=SANDBOX):
    record = {"Name": name, "Type": record_type}
    if alias_to:
        record["AliasTarget"] = {"HostedZoneId": ALB_ZONE_ID, "DNSName": alias_to, "EvaluateTargetHealth": False}
    else:
        record.update(TTL=60, ResourceRecords=[{"Value": value}])
    aws.client("route53", account).change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]}
    )


def iam_user_keys(aws, name, policy=None) -> dict:
    """An IAM user (in moto's default account, the portal's own) and its access key."""
    iam = aws.client("iam")
    iam.create_user(UserName=name)
    if policy:
        iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


# --- preflight ------------------------------------------------------------------------------


def test_preflight_passes_when_the_role_lands_in_the_sandbox_account(aws):
    zone_id = create_zone(aws)

    result = preflight(make_target(aws), portal_session(aws))

    assert result.ok, result.reason
    assert result.details["account_id"] == SANDBOX
    assert result.details["caller_arn"] == f"arn:aws:sts::{SANDBOX}:assumed-role/portal/portal-run-42"
    assert result.details["zones"] == [{"id": zone_id, "name": f"{ZONE}.", "private": False}]
    assert SANDBOX in result.reason and "public" in result.reason


def test_preflight_refuses_a_new_fqdn_that_already_exists_as_a_record_in_the_zone(aws):
    zone_id = create_zone(aws)
    upsert(aws, zone_id, f"taken.{ZONE}", "CNAME", value="elsewhere.example.org")
    upsert(aws, zone_id, f"other.{ZONE}", "A", value="10.0.0.1")

    result = preflight(make_target(aws), portal_session(aws), [f"Taken.{ZONE}.", f"free.{ZONE}", "outside.example.org"])

    assert not result.ok
    assert result.reason.startswith(f"taken.{ZONE} (CNAME) already exists as a record in the zone {ZONE}: refusing to run Terraform")
    assert list(result.details["taken"]) == [f"taken.{ZONE}"] and result.details["step"] == "records"
    assert preflight(make_target(aws), portal_session(aws), [f"free.{ZONE}", f"other-{ZONE}"]).ok


def test_preflight_refuses_a_role_that_lands_in_another_account(aws):
    # The CMDB says the account is 123456789012 but its role ARN points at 210987654321:
    # the credentials land in 210987654321, and Terraform must never run there.
    create_zone(aws, account=SANDBOX)
    create_zone(aws, account=DEFAULT_ACCOUNT)  # so the zone cannot be the reason

    result = preflight(make_target(aws, account_id=DEFAULT_ACCOUNT), portal_session(aws))

    assert not result.ok
    assert result.reason == f"the role landed in account {SANDBOX}, not {DEFAULT_ACCOUNT}: refusing to run Terraform"
    assert result.details["step"] == "identity"
    assert result.details["account_id"] == SANDBOX


def test_preflight_reports_access_denied_on_assume_role(aws):
    create_zone(aws)
    credentials = iam_user_keys(aws, "portal-without-permission")  # no policy at all

    with aws.enforce_iam():
        result = preflight(make_target(aws), portal_session(aws, credentials))

    assert not result.ok
    assert result.details["step"] == "assume_role"
    assert result.details["error_code"] == "AccessDenied"
    assert result.reason.startswith(f"Assuming {ROLE} failed (AccessDenied:")
    assert "trust policy" in result.reason


def test_assume_role_succeeds_for_a_permitted_portal_user(aws):
    # The counterpart of the denial above: the same enforcement, a user allowed to assume.
    create_zone(aws)
    allow = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}'
    credentials = iam_user_keys(aws, "portal", allow)

    with aws.enforce_iam():
        assumed = assume(make_target(aws), portal_session(aws, credentials))
    identity = assumed.client("sts").get_caller_identity()

    assert identity["Account"] == SANDBOX


def test_preflight_names_a_missing_hosted_zone(aws):
    create_zone(aws, name="example.com")
    create_zone(aws, name=f"other.{ZONE}")
    create_zone(aws, account=DEFAULT_ACCOUNT)  # the right name, in the wrong account

    result = preflight(make_target(aws), portal_session(aws))

    assert not result.ok
    assert result.reason == f"the DNS zone {ZONE} has no Route 53 hosted zone in account {SANDBOX}"
    assert result.details["step"] == "dns_zone"
    assert result.details["zones"] == []


def test_preflight_matches_the_zone_name_with_or_without_trailing_dot_and_case(aws):
    zone_id = create_zone(aws)

    for written in (f"{ZONE}.", ZONE.upper()):
        result = preflight(make_target(aws, dns_zone=written), portal_session(aws))
        assert result.ok, (written, result.reason)
        assert [z["id"] for z in result.details["zones"]] == [zone_id]


class AwsLikeZoneListing:
    """ListHostedZonesByName as AWS answers it: zones sorted by reversed labels, starting AT
    DNSName and running on past it (moto's server returns only exact names, so it cannot
    show that the lookup ignores the neighbours)."""

    def __init__(self, names, page_size):
        self.zones = sorted(
            ({"Id": f"/hostedzone/Z{i}", "Name": name, "Config": {"PrivateZone": i % 2 == 1}} for i, name in enumerate(names)),
            key=lambda z: (list(reversed(z["Name"].rstrip(".").split("."))), z["Id"]),
        )
        self.page_size = page_size
        self.calls = 0

    def list_hosted_zones_by_name(self, DNSName, MaxItems, HostedZoneId=None):  # noqa: N803 - boto3's names
        self.calls += 1
        key = list(reversed(DNSName.rstrip(".").split(".")))
        start = next(
            (i for i, z in enumerate(self.zones)
             if (list(reversed(z["Name"].rstrip(".").split("."))), z["Id"]) >= (key, HostedZoneId or "")),
            len(self.zones),
        )
        page = self.zones[start : start + self.page_size]
        rest = self.zones[start + self.page_size :]
        answer = {"HostedZones": page, "IsTruncated": bool(rest)}
        if rest:
            answer.update(NextDNSName=rest[0]["Name"], NextHostedZoneId=rest[0]["Id"])
        return answer


def test_zone_lookup_takes_exact_names_only_from_awss_sorted_listing():
    listing = AwsLikeZoneListing(
        ["example.com.", "sandbox.example.com.", "sandbox.example.com.", "a.sandbox.example.com.",
         "zzz.sandbox.example.com.", "sandbox.example.org.", "xsandbox.example.com."],
        page_size=1,
    )

    zones = hosted_zones(listing, "Sandbox.Example.com.")

    assert sorted((z["id"], z["name"], z["private"]) for z in zones) == [
        ("Z1", "sandbox.example.com.", True),
        ("Z2", "sandbox.example.com.", False),
    ]
    assert listing.calls == 3  # two matching pages, then one page past the name: stop


def test_preflight_notes_public_and_private_zones_of_the_same_name(aws):
    public_id = create_zone(aws)
    vpc_id = aws.client("ec2", SANDBOX).create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    private_id = create_zone(aws, private_vpc=vpc_id)

    result = preflight(make_target(aws), portal_session(aws))

    assert result.ok, result.reason
    assert sorted((z["id"], z["private"]) for z in result.details["zones"]) == sorted(
        [(public_id, False), (private_id, True)]
    )
    assert f"{public_id} (public)" in result.reason and f"{private_id} (private)" in result.reason


def test_preflight_reports_an_unreachable_endpoint_instead_of_raising(aws):
    dead = f"http://127.0.0.1:{free_port()}"
    target = make_target(aws, endpoint_url=dead)

    result = preflight(target, base_session(DUMMY_CREDENTIALS, region=aws.region))

    assert not result.ok
    assert result.details["step"] == "assume_role"
    assert result.details["error_code"] == "EndpointConnectionError"


def test_preflight_refuses_an_account_id_that_is_not_twelve_digits(aws):
    result = preflight(make_target(aws, account_id="12345"), portal_session(aws))

    assert not result.ok
    assert result.details == {"step": "target"}


def test_assume_role_uses_sanitised_run_id_and_requester(aws):
    # moto refuses session names over 64 characters, as AWS does; unsanitised, this would fail.
    run_id = "portal run #42 " + "é" * 80
    target = make_target(aws, session_name=run_id, source_identity='Zoë "the admin" Müller')

    identity = assume(target, portal_session(aws)).client("sts").get_caller_identity()

    assert identity["Account"] == SANDBOX
    assert identity["Arn"] == f"arn:aws:sts::{SANDBOX}:assumed-role/portal/{sanitise_session_name(run_id)}"


def test_checks_ignore_the_workers_aws_environment(aws, monkeypatch):
    create_zone(aws)
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")  # boto3's default session would raise
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws/config")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")

    result = preflight(make_target(aws), portal_session(aws))
    production_sts = base_session(DUMMY_CREDENTIALS, region="eu-west-1").client("sts")

    assert result.ok, result.reason
    assert production_sts.meta.endpoint_url == "https://sts.eu-west-1.amazonaws.com"
    assert production_sts.meta.region_name == "eu-west-1"


def test_sessions_share_botocore_models_but_never_an_identity(aws):
    """One data loader for the process (client creation 110-150 ms -> ~6 ms), while each
    session keeps its own credentials: the assumed role's clients act in the sandbox, the
    portal's own clients in its account, and a session made later changes neither."""
    create_zone(aws)
    portal = portal_session(aws)
    sandbox = assume(make_target(aws), portal)
    other = portal_session(aws, {"aws_access_key_id": "AKIAOTHEROTHEROTHER0", "aws_secret_access_key": "other"})

    loaders = {id(session._session.get_component("data_loader")) for session in (portal, sandbox, other)}
    assert len(loaders) == 1
    assert portal.client("sts").get_caller_identity()["Account"] == DEFAULT_ACCOUNT
    assert sandbox.client("sts").get_caller_identity()["Account"] == SANDBOX
    assert portal._session.get_credentials().access_key == DUMMY_CREDENTIALS["aws_access_key_id"]
    assert other._session.get_credentials().access_key == "AKIAOTHEROTHEROTHER0"
    assert sandbox._session.get_credentials().access_key not in (
        DUMMY_CREDENTIALS["aws_access_key_id"], "AKIAOTHEROTHEROTHER0")


# --- DNS records ----------------------------------------------------------------------------


def test_dns_check_reports_exactly_the_missing_records(aws):
    zone_id = create_zone(aws)
    upsert(aws, zone_id, f"app.{ZONE}", "A", alias_to="portal-alb-123.eu-west-1.elb.amazonaws.com")
    upsert(aws, zone_id, f"api.{ZONE}", "CNAME", value="app.sandbox.example.com")  # a neighbour name
    upsert(aws, zone_id, f"gone.{ZONE}", "TXT", value='"not an address"')  # wrong type: missing

    result = check_dns_records(make_target(aws), portal_session(aws), [f"app.{ZONE}", f"gone.{ZONE}", f"ap.{ZONE}"])

    assert not result.ok
    assert result.details["missing"] == [f"gone.{ZONE}", f"ap.{ZONE}"]
    assert list(result.details["present"]) == [f"app.{ZONE}"]
    assert result.details["present"][f"app.{ZONE}"] == [
        {
            "zone_id": zone_id,
            "type": "A",
            "alias": True,
            "value": "portal-alb-123.eu-west-1.elb.amazonaws.com",
        }
    ]
    assert result.reason == f"2 of 3 endpoint record(s) missing in {ZONE}: gone.{ZONE}, ap.{ZONE}"


def test_dns_check_passes_when_every_endpoint_has_a_record(aws):
    zone_id = create_zone(aws)
    upsert(aws, zone_id, f"app.{ZONE}", "A", alias_to="portal-alb-123.eu-west-1.elb.amazonaws.com")
    upsert(aws, zone_id, f"api.{ZONE}", "CNAME", value=f"app.{ZONE}")
    upsert(aws, zone_id, f"v6.{ZONE}", "AAAA", value="2001:db8::1")

    result = check_dns_records(
        make_target(aws), portal_session(aws), [f"APP.{ZONE}.", f"api.{ZONE}", f"v6.{ZONE}"]
    )

    assert result.ok, result.reason
    assert result.details["missing"] == []
    assert sorted(result.details["present"]) == [f"api.{ZONE}", f"app.{ZONE}", f"v6.{ZONE}"]
    assert result.details["present"][f"api.{ZONE}"][0]["value"] == [f"app.{ZONE}"]


def test_dns_check_counts_a_name_outside_the_zone_as_missing(aws):
    zone_id = create_zone(aws)
    upsert(aws, zone_id, f"app.{ZONE}", "A", value="192.0.2.10")

    result = check_dns_records(make_target(aws), portal_session(aws), [f"app.{ZONE}", "app.elsewhere.example.org"])

    assert not result.ok
    assert result.details["missing"] == ["app.elsewhere.example.org"]
    assert result.details["outside_zone"] == ["app.elsewhere.example.org"]


def test_dns_check_reads_a_zone_with_more_records_than_one_page(aws):
    zone_id = create_zone(aws)
    changes = [
        {
            "Action": "CREATE",
            "ResourceRecordSet": {"Name": f"svc{i:03}.{ZONE}", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.1"}]},
        }
        for i in range(150)
    ]
    aws.client("route53", SANDBOX).change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})

    result = check_dns_records(make_target(aws), portal_session(aws), [f"svc000.{ZONE}", f"svc149.{ZONE}", f"svc150.{ZONE}"])

    assert result.details["missing"] == [f"svc150.{ZONE}"]
    assert sorted(result.details["present"]) == [f"svc000.{ZONE}", f"svc149.{ZONE}"]


# --- orphans --------------------------------------------------------------------------------


def tag_list(tags: dict) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def test_find_orphans_returns_exactly_the_environments_leftovers(aws):
    mine = portal_default_tags(portal="sandbox-portal", environment="shop-dev", run="portal-run-42", product="shop", requester="alice")
    other_env = {**mine, TAG_ENVIRONMENT: "shop-prod"}
    other_portal = {**mine, TAG_PORTAL: "another-portal"}
    s3 = aws.client("s3", SANDBOX)
    s3.create_bucket(Bucket="shop-dev-assets", CreateBucketConfiguration={"LocationConstraint": aws.region})
    s3.put_bucket_tagging(Bucket="shop-dev-assets", Tagging={"TagSet": tag_list(mine)})
    sqs = aws.client("sqs", SANDBOX)
    leftover_queue = sqs.create_queue(QueueName="shop-dev-jobs", tags=mine)["QueueUrl"]
    sqs.create_queue(QueueName="shop-prod-jobs", tags=other_env)
    sqs.create_queue(QueueName="shop-dev-other-portal", tags=other_portal)
    sqs.create_queue(QueueName="untagged")
    aws.client("sqs", DEFAULT_ACCOUNT).create_queue(QueueName="shop-dev-jobs", tags=mine)  # another account
    ec2 = aws.client("ec2", SANDBOX)
    group = ec2.create_security_group(
        GroupName="shop-prod-web",
        Description="another environment",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list(other_env)}],
    )

    orphans = find_orphans(
        make_target(aws), portal_session(aws), {TAG_PORTAL: "sandbox-portal", TAG_ENVIRONMENT: "shop-dev"}
    )

    queue_arn = sqs.get_queue_attributes(QueueUrl=leftover_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert orphans == [
        {"arn": "arn:aws:s3:::shop-dev-assets", "tags": mine},
        {"arn": queue_arn, "tags": mine},
    ]
    assert queue_arn.startswith(f"arn:aws:sqs:{aws.region}:{SANDBOX}:")
    assert group["GroupId"]  # it exists, and is not reported


def test_find_orphans_leaves_out_what_ecs_and_ec2_say_is_gone(aws):
    mine = portal_default_tags(portal="sandbox-portal", environment="shop-dev", run="portal-run-42", product="shop", requester="alice")
    ecs = aws.client("ecs", SANDBOX)
    ecs.create_cluster(clusterName="shared")
    tags = [{"key": k, "value": v} for k, v in mine.items()]
    deleted_cluster = ecs.create_cluster(clusterName="shop-dev", tags=tags)["cluster"]["clusterArn"]
    ecs.delete_cluster(cluster="shop-dev")
    definition = {"family": "shop-dev", "containerDefinitions": [{"name": "app", "image": "nginx", "memory": 512}], "tags": tags}
    gone = ecs.register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"]
    kept = ecs.register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"]
    ecs.deregister_task_definition(taskDefinition=gone)
    for name in ("deleted", "running"):
        ecs.create_service(cluster="shared", serviceName=name, taskDefinition=kept, desiredCount=0, tags=tags)
    ecs.delete_service(cluster="shared", service="deleted", force=True)
    ec2 = aws.client("ec2", SANDBOX)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
    nat_tags = [{"ResourceType": "natgateway", "Tags": tag_list(mine)}]
    nat_ids = [ec2.create_nat_gateway(SubnetId=subnet, AllocationId=ec2.allocate_address(Domain="vpc")["AllocationId"],
                                      TagSpecifications=nat_tags)["NatGateway"]["NatGatewayId"] for _ in range(2)]
    ec2.delete_nat_gateway(NatGatewayId=nat_ids[0])

    orphans = find_orphans(make_target(aws), portal_session(aws), {TAG_PORTAL: "sandbox-portal", TAG_ENVIRONMENT: "shop-dev"})

    arns = [orphan["arn"] for orphan in orphans]
    assert kept in arns and gone not in arns and deleted_cluster not in arns
    assert any(arn.endswith("service/shared/running") for arn in arns)
    assert not any(arn.endswith("service/shared/deleted") for arn in arns)
    assert [arn.rsplit("/", 1)[1] for arn in arns if ":natgateway/" in arn] == [nat_ids[1]]


def test_find_orphans_reads_every_page(aws):
    tags = {TAG_ENVIRONMENT: "shop-dev"}
    sqs = aws.client("sqs", SANDBOX)
    for i in range(7):
        sqs.create_queue(QueueName=f"leftover-{i}", tags=tags)

    orphans = find_orphans(make_target(aws), portal_session(aws), tags, page_size=2)

    assert [o["arn"].rsplit(":", 1)[-1] for o in orphans] == [f"leftover-{i}" for i in range(7)]


def test_find_orphans_sanitises_the_lookup_like_the_tags(aws):
    raw_environment = 'shop "dev" ${x}\n'
    tags = portal_default_tags(portal="sandbox-portal", environment=raw_environment, run="r", product="shop", requester="a")
    aws.client("sqs", SANDBOX).create_queue(QueueName="leftover", tags=tags)

    orphans = find_orphans(make_target(aws), portal_session(aws), {TAG_ENVIRONMENT: raw_environment})

    assert [o["tags"][TAG_ENVIRONMENT] for o in orphans] == ["shop _dev_ __x__"]


def test_find_orphans_refuses_an_empty_tag_filter(aws):
    with pytest.raises(ValueError, match="at least one tag"):
        find_orphans(make_target(aws), portal_session(aws), {})


def test_find_orphans_raises_when_the_role_is_denied(aws):
    credentials = iam_user_keys(aws, "portal-without-permission")

    with aws.enforce_iam(), pytest.raises(AwsCheckError, match="AccessDenied"):
        find_orphans(make_target(aws), portal_session(aws, credentials), {TAG_ENVIRONMENT: "shop-dev"})
