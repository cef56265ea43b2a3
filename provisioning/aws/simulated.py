"""What a platform team sets up once in a sandbox account, created in a simulated AWS (moto,
LocalStack) so the AWS patterns can run there: the account's Route 53 zone and the shared
infrastructure `ecs-service` builds on (VPC with two subnets, a load balancer with an HTTPS
listener whose certificate covers `*.<zone>`, an ECS cluster).

Used by `manage.py seed_aws_demo` (`make run-aws`) and by the tests. Never aimed at real AWS:
`prepare_account` refuses an endpoint on amazonaws.com.

Must not import Django or anything from `portal/`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import boto3

__all__ = ["SimulatedAccount", "prepare_account"]

# moto's dummy credentials: a simulated AWS takes any.
_DUMMY = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class SimulatedAccount:
    """Clients acting in one account of a simulated AWS (moto keeps one backend per account:
    credentials from AssumeRole into a role ARN of that account act in it)."""

    def __init__(self, endpoint_url: str, account_id: str, region: str):
        host = (urlsplit(endpoint_url).hostname or "").lower()
        if not host or host.endswith("amazonaws.com"):
            raise ValueError(f"{endpoint_url!r} is not a simulated AWS: refusing to create shared infrastructure there")
        self.endpoint_url, self.account_id, self.region = endpoint_url, account_id, region
        base = boto3.Session(region_name=region, **_DUMMY)
        credentials = base.client("sts", endpoint_url=endpoint_url).assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/portal-setup", RoleSessionName="portal-setup"
        )["Credentials"]
        self.session = boto3.Session(
            region_name=region,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.endpoint_url)


def prepare_account(endpoint_url: str, account_id: str, region: str, zone: str) -> dict:
    """The zone and the shared infrastructure, created (or found, when a listener of the
    shared load balancer already exists) in the simulated account. Returns
    `{"zone_id": ..., "shared_infrastructure": {...}}`, the latter as a SandboxAccount keeps it."""
    account = SimulatedAccount(endpoint_url, account_id, region)
    route53 = account.client("route53")
    zones = [z for z in route53.list_hosted_zones_by_name(DNSName=zone)["HostedZones"] if z["Name"].rstrip(".") == zone]
    zone_id = (zones[0] if zones else route53.create_hosted_zone(Name=zone, CallerReference=f"portal-{zone}")["HostedZone"])["Id"]
    existing = _existing_shared(account)
    return {"zone_id": zone_id.rsplit("/", 1)[-1], "shared_infrastructure": existing or _create_shared(account, zone)}


def _existing_shared(account: SimulatedAccount) -> dict | None:
    elb = account.client("elbv2")
    balancers = [b for b in elb.describe_load_balancers()["LoadBalancers"] if b["LoadBalancerName"] == "shared"]
    if not balancers:
        return None
    balancer = balancers[0]
    listeners = elb.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    clusters = account.client("ecs").describe_clusters(clusters=["shared"])["clusters"]
    if not listeners or not clusters:
        return None
    return {
        "ecs_cluster_arn": clusters[0]["clusterArn"],
        "alb_listener_arn": listeners[0]["ListenerArn"],
        "alb_dns_name": balancer["DNSName"],
        "alb_zone_id": balancer["CanonicalHostedZoneId"],
        "vpc_id": balancer["VpcId"],
        "private_subnet_ids": [z["SubnetId"] for z in balancer["AvailabilityZones"]],
        "alb_security_group_id": balancer["SecurityGroups"][0],
    }


def _create_shared(account: SimulatedAccount, zone: str) -> dict:
    ec2, elb, ecs, acm = (account.client(name) for name in ("ec2", "elbv2", "ecs", "acm"))
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.50.{i}.0/24", AvailabilityZone=zone_name)["Subnet"]["SubnetId"]
        for i, zone_name in enumerate(zones)
    ]
    group = ec2.create_security_group(GroupName="shared-alb", Description="shared load balancer", VpcId=vpc)["GroupId"]
    balancer = elb.create_load_balancer(Name="shared", Subnets=subnets, SecurityGroups=[group])["LoadBalancers"][0]
    certificate = acm.request_certificate(DomainName=f"*.{zone}", ValidationMethod="DNS")["CertificateArn"]
    listener = elb.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"], Protocol="HTTPS", Port=443,
        Certificates=[{"CertificateArn": certificate}],
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Listeners"][0]["ListenerArn"]
    return {
        "ecs_cluster_arn": ecs.create_cluster(clusterName="shared")["cluster"]["clusterArn"],
        "alb_listener_arn": listener,
        "alb_dns_name": balancer["DNSName"],
        "alb_zone_id": balancer["CanonicalHostedZoneId"],
        "vpc_id": vpc,
        "private_subnet_ids": subnets,
        "alb_security_group_id": group,
    }
