"""Tests for provisioning.aws.provider.provider_config (the generated portal_provider.tf) and the
sanitising of IAM names and tags it relies on. No AWS needed: the text is parsed with
python-hcl2 and its values compared with the inputs."""

import re
import sys
from pathlib import Path

import hcl2
import pytest
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # with `-p no:django` nothing else puts the repository root on sys.path
    sys.path.insert(0, str(ROOT))

from provisioning.aws.provider import (  # noqa: E402
    PATTERN_SERVICES,
    PROVIDER_FILE,
    TAG_ENVIRONMENT,
    TAG_PORTAL,
    TAG_PRODUCT,
    TAG_REQUESTER,
    TAG_RUN,
    portal_default_tags,
    provider_config,
    sanitise_tag_key,
    sanitise_tag_value,
)
from provisioning.aws.session import AwsTarget, sanitise_session_name, sanitise_source_identity  # noqa: E402
from provisioning.render import RenderError, parse_workspace  # noqa: E402

_VALUE_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)

HOSTILE = 'x" }\n  assume_role { role_arn = "arn:aws:iam::666666666666:role/evil" }\n${file("/etc/passwd")} %{ if true }y%{ endif } $${z} \\" \\'


def make_target(**overrides) -> AwsTarget:
    values = {
        "account_id": "210987654321",
        "region": "eu-west-1",
        "role_arn": "arn:aws:iam::210987654321:role/portal",
        "external_id": "portal-ext-7f3a",
        "dns_zone": "sandbox.example.com",
        "session_name": "portal-run-42",
        "source_identity": "alice",
    }
    values.update(overrides)
    return AwsTarget(**values)


def tags(**overrides) -> dict:
    values = {"portal": "sandbox-portal", "environment": "shop-dev", "run": "portal-run-42", "product": "shop", "requester": "alice"}
    values.update(overrides)
    return portal_default_tags(**values)


def parse(text: str) -> dict:
    """python-hcl2 with string values decoded; `$${`/`%%{` respelt as render.parse_hcl does
    (python-hcl2's grammar mis-reads some valid `$${` strings; `\\u0024{` means the same)."""
    return hcl2.loads(text.replace("$${", "\\u0024{").replace("%%{", "\\u0025{"), serialization_options=_VALUE_OPTIONS)


def the_provider(text: str) -> dict:
    parsed = parse(text)
    assert list(parsed) == ["provider"]
    assert len(parsed["provider"]) == 1 and list(parsed["provider"][0]) == ["aws"]
    return parsed["provider"][0]["aws"]


def test_it_writes_region_account_role_and_tags():
    text = provider_config(make_target(), default_tags=tags())

    aws = the_provider(text)

    assert aws["region"] == "eu-west-1"
    assert aws["allowed_account_ids"] == ["210987654321"]
    assert aws["assume_role"] == [
        {
            "role_arn": "arn:aws:iam::210987654321:role/portal",
            "session_name": "portal-run-42",
            "external_id": "portal-ext-7f3a",
            "source_identity": "alice",
        }
    ]
    assert aws["default_tags"] == [
        {
            "tags": {
                TAG_PORTAL: "sandbox-portal",
                TAG_ENVIRONMENT: "shop-dev",
                TAG_RUN: "portal-run-42",
                TAG_PRODUCT: "shop",
                TAG_REQUESTER: "alice",
            }
        }
    ]
    parse_workspace({PROVIDER_FILE: text})  # the portal's own gate accepts it


def test_hostile_role_external_id_region_and_account_stay_literal_values():
    target = make_target(role_arn=HOSTILE, external_id=HOSTILE + "e", region=HOSTILE + "r", account_id=HOSTILE + "a")

    text = provider_config(target, default_tags=tags())
    aws = the_provider(text)

    assert aws["assume_role"][0]["role_arn"] == HOSTILE
    assert aws["assume_role"][0]["external_id"] == HOSTILE + "e"
    assert aws["region"] == HOSTILE + "r"
    assert aws["allowed_account_ids"] == [HOSTILE + "a"]
    assert len(aws["assume_role"]) == 1  # no block smuggled in
    assert sorted(aws) == ["allowed_account_ids", "assume_role", "default_tags", "region"]
    # Every template introducer is escaped: no `${` / `%{` that is not preceded by its double.
    assert not re.search(r"(?<![$])[$]\{", text.replace("$${", ""))
    assert not re.search(r"(?<![%])%\{", text.replace("%%{", ""))
    parse_workspace({PROVIDER_FILE: text})


def test_values_allowed_in_tags_but_special_in_hcl_come_through_unchanged():
    # Letters, separators (\p{Z}: U+2028/U+2029 line separators, no-break space) and the
    # allowed punctuation are valid tag text; the literal must keep them exactly.
    value = "Zoë\u2028Ølsen\u2029 \u00a0日本 _.:/=+-@ 42"
    default_tags = tags(requester=value)
    assert default_tags[TAG_REQUESTER] == value

    text = provider_config(make_target(), default_tags=default_tags)

    assert "\\u2028" in text and "\u2028" not in text  # escaped, so reviewers see it
    assert the_provider(text)["default_tags"][0]["tags"][TAG_REQUESTER] == value


def test_hostile_tag_values_are_sanitised_to_aws_rules_and_parse_back_equal():
    raw = 'shop "dev" ${var.x}\n%{ if 1 }'

    text = provider_config(make_target(), default_tags={TAG_ENVIRONMENT: raw, "team name\n": "a"})
    written = the_provider(text)["default_tags"][0]["tags"]

    assert written == {TAG_ENVIRONMENT: sanitise_tag_value(raw), "team name_": "a"}
    assert written[TAG_ENVIRONMENT] == "shop _dev_ __var.x____ if 1 _"
    assert not set('"${}%\n') & set(written[TAG_ENVIRONMENT])


def test_session_name_and_source_identity_are_sanitised_for_assume_role():
    target = make_target(session_name="portal run #42", source_identity='Zoë "the admin" Müller')

    role = the_provider(provider_config(target, default_tags=tags()))["assume_role"][0]

    assert role["session_name"] == "portal-run-42"
    assert role["source_identity"] == "Zoe-the-admin-Muller"


def test_an_empty_external_id_is_left_out():
    role = the_provider(provider_config(make_target(external_id=""), default_tags=tags()))["assume_role"][0]

    assert "external_id" not in role


def test_no_value_reaches_the_comment_line():
    text = provider_config(make_target(role_arn=HOSTILE), default_tags=tags(environment=HOSTILE))

    comments = [line for line in text.splitlines() if line.lstrip().startswith(("#", "//"))]
    assert comments == ["# Generated by the portal for one run; regenerated for every run. Do not edit."]


def test_a_parse_failure_would_be_caught_by_the_workspace_gate():
    # The check above is only meaningful if parse_workspace rejects broken provider text.
    broken = provider_config(make_target(), default_tags=tags()).replace('"eu-west-1"', '"eu-west-1', 1)

    with pytest.raises(RenderError):
        parse_workspace({PROVIDER_FILE: broken})


def test_tag_keys_reserved_by_aws_are_refused():
    with pytest.raises(ValueError, match="reserved"):
        provider_config(make_target(), default_tags={"aws:createdBy": "x"})


# --- sanitisers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice", "alice"),
        ("alice.smith@example.com", "alice.smith@example.com"),
        ("Zoë Müller", "Zoe-Muller"),
        ("a b\tc\n", "a-b-c"),
        ("o'brien, j=1+2", "o-brien,-j=1+2"),
    ],
)
def test_source_identity_keeps_only_what_aws_allows(raw, expected):
    assert sanitise_source_identity(raw) == expected


@pytest.mark.parametrize("raw", ["李", "x", "", "  ", "\u202e", "é" * 100, "portal run " * 20, "a" * 65])
def test_iam_names_are_always_2_to_64_allowed_characters_and_idempotent(raw):
    for sanitise in (sanitise_session_name, sanitise_source_identity):
        clean = sanitise(raw)
        assert re.fullmatch(r"[A-Za-z0-9_+=,.@-]{2,64}", clean), clean
        assert sanitise(clean) == clean


def test_long_or_unreadable_names_stay_distinct():
    assert sanitise_source_identity("李") != sanitise_source_identity("王")
    assert sanitise_session_name("a" * 70 + "1") != sanitise_session_name("a" * 70 + "2")


def test_tag_values_are_cut_to_256_utf16_units_and_idempotent():
    long_value = "x" * 255 + "𝔘" + "y"  # the astral letter counts as two units for AWS

    clean = sanitise_tag_value(long_value)

    assert clean == "x" * 255
    assert sanitise_tag_value(clean) == clean
    assert sanitise_tag_value("a" * 300) == "a" * 256


def test_tag_keys_are_sanitised_and_never_empty():
    assert sanitise_tag_key("cost center\n") == "cost center_"
    with pytest.raises(ValueError):
        sanitise_tag_key("")


def test_portal_default_tags_name_portal_environment_run_product_and_requester():
    assert tags(requester="") == {
        TAG_PORTAL: "sandbox-portal",
        TAG_ENVIRONMENT: "shop-dev",
        TAG_RUN: "portal-run-42",
        TAG_PRODUCT: "shop",
        TAG_REQUESTER: "-",
    }


# --- a simulated AWS (the account's endpoint URL) ---------------------------------------------


def test_without_an_endpoint_nothing_about_endpoints_is_written():
    aws = the_provider(provider_config(make_target(), default_tags=tags()))
    assert "endpoints" not in aws and "skip_metadata_api_check" not in aws


def test_an_endpoint_sends_every_pattern_service_there_and_keeps_the_guards():
    plain = the_provider(provider_config(make_target(), default_tags=tags()))
    aws = the_provider(provider_config(make_target(endpoint_url="http://127.0.0.1:5000"), default_tags=tags()))

    assert aws["endpoints"] == [{name: "http://127.0.0.1:5000" for name in PATTERN_SERVICES}]
    assert aws["skip_metadata_api_check"] is True
    for guard in ("region", "allowed_account_ids", "assume_role", "default_tags"):
        assert aws[guard] == plain[guard], guard
    parse_workspace({PROVIDER_FILE: provider_config(make_target(endpoint_url="http://127.0.0.1:5000"), default_tags=tags())})


def test_a_hostile_endpoint_stays_one_literal_value():
    aws = the_provider(provider_config(make_target(endpoint_url=HOSTILE), default_tags=tags()))
    assert set(aws["endpoints"][0].values()) == {HOSTILE}
    assert aws["assume_role"][0]["role_arn"] == "arn:aws:iam::210987654321:role/portal"


# The provider `endpoints` name of each AWS resource / data source family the patterns use.
# None: answered by the provider itself, no API call (region, partition).
_SERVICE_OF_TYPE = [
    ("aws_acm_", "acm"), ("aws_cloudwatch_log_", "cloudwatchlogs"), ("aws_db_", "rds"),
    ("aws_ecr_", "ecr"), ("aws_ecs_", "ecs"), ("aws_iam_", "iam"), ("aws_lb", "elbv2"),
    ("aws_route53_", "route53"), ("aws_secretsmanager_", "secretsmanager"),
    ("aws_caller_identity", "sts"), ("aws_region", None), ("aws_partition", None),
    ("aws_vpc", "ec2"), ("aws_subnet", "ec2"), ("aws_security_group", "ec2"),
    ("aws_default_security_group", "ec2"), ("aws_route_table", "ec2"), ("aws_route", "ec2"),
    ("aws_internet_gateway", "ec2"), ("aws_nat_gateway", "ec2"), ("aws_eip", "ec2"),
    ("aws_availability_zones", "ec2"),
]


def test_the_endpoints_cover_every_service_the_patterns_use():
    """A new resource type in a pattern or module must reach the simulated AWS too: its
    service must be in PATTERN_SERVICES (and in the table above)."""
    used = set()
    for path in (ROOT / "patterns").rglob("*.tf*"):
        used.update(re.findall(r'^(?:resource|data)\s+"(aws_[a-z0-9_]+)"', path.read_text(), re.MULTILINE))
    assert used, "no AWS resource types found under patterns/"
    services = set()
    for resource_type in sorted(used):
        match = [service for prefix, service in _SERVICE_OF_TYPE if resource_type.startswith(prefix)]
        assert match, f"{resource_type}: which AWS service does it call? add it to _SERVICE_OF_TYPE and PATTERN_SERVICES"
        services.update(service for service in match[:1] if service)
    services.add("sts")  # assume_role and the account guard
    assert services <= set(PATTERN_SERVICES), sorted(services - set(PATTERN_SERVICES))
