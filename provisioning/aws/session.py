"""Getting AWS credentials and clients: the portal's own session, and the sandbox role assumed from it.

- `AwsTarget`: what the portal knows about a sandbox account, for one run.
- `base_session`: the portal's own session; `assume`: the sandbox role's temporary session.
- `sanitise_session_name` / `sanitise_source_identity`: valid IAM names for the run id and
  the requester (used by `assume` and by the generated provider configuration).

Sessions are built from explicit values only (credentials, region, endpoint). The worker's
`os.environ` and `~/.aws` files are never consulted for configuration: an `AWS_PROFILE`,
`AWS_ENDPOINT_URL` or `AWS_ACCESS_KEY_ID` meant for something else on the worker host cannot
redirect or re-identify the checks.

Must not import Django or anything from `portal/`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.loaders
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
from botocore.utils import InstanceMetadataFetcher

__all__ = [
    "CHECK_SESSION_SECONDS",
    "AwsTarget",
    "PortalSession",
    "assume",
    "base_session",
    "sanitise_session_name",
    "sanitise_source_identity",
    "warm_up",
]

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


# --------------------------------------------------------------------------------------------
# Sanitising IAM names
# --------------------------------------------------------------------------------------------

# RoleSessionName and SourceIdentity: [\w+=,.@-]{2,64}, where \w is ASCII (AWS's regex).
_IAM_NAME_DISALLOWED = re.compile(r"[^A-Za-z0-9_+=,.@-]+")
_IAM_NAME_MAX = 64


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


@functools.cache
def _shared_loader() -> botocore.loaders.Loader:
    """One botocore data loader for every session of this process.

    A new botocore session starts with an empty loader and reads and parses the endpoint and
    service JSON again: 110-150 ms per client for Route 53, four clients per preflight (the
    portal's STS, then the assumed role's STS and Route 53). With the loaded models shared,
    a client is made in about 6 ms (issue 15). What it holds is botocore's own read-only data
    files, never configuration or credentials, so sharing it changes no session's isolation."""
    return botocore.loaders.create_loader()


def warm_up(services: tuple[str, ...] = ("sts", "route53", "resourcegroupstaggingapi")) -> None:
    """Load the models the checks use into the shared loader (a worker does it before its
    pool forks, so no run pays for it)."""
    loader = _shared_loader()
    loader.load_data("endpoints")
    loader.load_data("partitions")
    for service in services:
        loader.load_service_model(service, "service-2")


def _isolated_botocore_session(credentials: Mapping[str, str] | None) -> botocore.session.Session:
    """A botocore session whose configuration comes from nothing but its arguments.

    botocore's default config chain reads AWS_* environment variables and ~/.aws/config; here
    the chain has no environment (`environ={}`) and both shared files are /dev/null. With
    `credentials`, they are the only identity. Without, only the host's own role is used:
    the ECS task role (its variables are set by ECS for exactly this) or the EC2 instance role.
    """
    core = botocore.session.Session()
    core.register_component("data_loader", _shared_loader())
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
