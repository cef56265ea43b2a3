"""Property-based check of the whole API against its own OpenAPI schema (schemathesis).

Every operation of /api/schema/ gets MAX_EXAMPLES generated requests (valid ones and, in
negative mode, invalid ones), sent in-process through the full WSGI stack with a staff token
(staff may call every operation, so writes are exercised too), and every check schemathesis
has runs on each answer: no 5xx, documented status, content type, headers and body; invalid
input refused (negative_data_rejection), valid input accepted (positive_data_acceptance),
missing auth refused, unsupported methods, use after delete, and the rest.

One check is narrowed, and only by what a schema cannot say: a schema-valid request may be
refused (400/422) when it names a row that does not exist ("Object with slug=x does not
exist."), takes a unique name that exists, reuses an Idempotency-Key with another body
(schemathesis sends the same key with different bodies), asks for an expiry in the past or
for a pattern version the catalog does not hold (a change), or is a PATCH that the stored row's other fields make invalid - those depend on the database and
the clock, not on the request's shape; a role ARN must name the body's own account id (two
fields compared, which JSON Schema cannot say); `cursor` and `offset` exclude each other; and a pattern's parameters are checked against that
pattern's own JSON Schema (GET /api/v1/patterns/{slug}/), which the body's `pattern` picks.
Any other refusal of schema-valid input fails the test.

Deterministic: Hypothesis is derandomized and keeps no example database, so a failure here
reproduces on every run. Nothing is excluded. The data the run makes lives in the test's
transaction and is rolled back; environment creates never reach a worker (the dispatch is
an on-commit callback, and this transaction never commits).
"""

import re
import zlib
from dataclasses import dataclass

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure

from portal.services import tokens
from tests.factories import make_endpoint, make_environment, make_run, make_run_event

MAX_EXAMPLES = 50


@dataclass
class Seeded:
    """Rows the run aims at, and the staff key it sends."""

    key: str
    ids: dict[str, int]


@pytest.fixture
def seeded(world):
    """A staff token and one row of each resource. Generated ids are random integers that
    would almost never name a row, so about half of the valid cases are re-aimed at these
    rows (see `aim`): that way 200/202/409 answers are checked against the schema too."""
    environment = make_environment(world.product, name="dev", requested_by=world.owner)
    endpoint = make_endpoint(environment, "app.dev.payments.sandbox.test")
    run = make_run(environment)
    make_run_event(run, "hello")
    spare_token, _ = tokens.create_token(user=world.staff, name="revoked by the run")
    key = tokens.create_token(user=world.staff, name="schemathesis")[1]
    return Seeded(
        key=key,
        ids={
            "departments": world.payments.pk,
            "accounts": world.account.pk,
            "products": world.product.pk,
            "environments": environment.pk,
            "runs": run.pk,
            "endpoints": endpoint.pk,
            "tokens": spare_token.pk,  # never the key in use: revoking it would end the run
        },
    )


def aim(case, seeded: Seeded) -> None:
    """Point about half of the valid cases at real rows; leave the other half and every
    invalid case as generated. Chosen by a checksum of the case, so runs are repeatable."""
    if case._meta is None or case._meta.generation.mode != GenerationMode.POSITIVE:
        return
    if zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode()) % 2:
        return
    resource = case.operation.path.split("/")[3]
    if "id" in (case.path_parameters or {}) and resource in seeded.ids:
        case.path_parameters["id"] = seeded.ids[resource]
    if "slug" in (case.path_parameters or {}):
        case.path_parameters["slug"] = "demo-ecs"
    if "fqdn" in (case.path_parameters or {}):
        case.path_parameters["fqdn"] = "app.dev.payments.sandbox.test"
    if case.method == "POST" and case.operation.path == "/api/v1/environments/" and isinstance(case.body, dict):
        case.body.update(product="shop", pattern="demo-ecs")
        case.body.pop("account", None)


@pytest.fixture(autouse=True)
def keep_the_test_transaction(db):
    """As Django's test client does: a request must not close the connection that holds the
    test's transaction (Django closes connections at request end when autocommit is off)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def load_schema():
    """The schema as the app serves it. Loaded at collection: the schema view needs no
    database. (`schemathesis.pytest.from_fixture` would load it lazily, but 4.32 does not
    work with pytest 9: it writes `Function._nodeid`, which pytest 9 no longer has.)"""
    from portal.wsgi import application

    loaded = schemathesis.openapi.from_wsgi("/api/schema/", application)
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        database="none",
    )
    return loaded


schema = load_schema()

# Refusals of schema-valid input that no schema can rule out (see the module docstring).
STATE_DEPENDENT = [
    re.compile(r"^Object with [\w]+=.* does not exist\.$", re.S),
    re.compile(r"^.+ with this .+ already exists\.$", re.S),  # a unique name or slug taken
    re.compile(r"^[a-z0-9-]+/[a-z0-9-]+ already exists; choose another name\.$"),  # an environment name taken
    re.compile(r"^The expiry must be in the future\.$"),
    re.compile(r"^until must be in the future\.$"),  # an environment's new expiry: the clock decides
    # A product's default lifetime against its maximum: two fields (or the stored row's other one).
    re.compile(r"^The default lifetime \(\d+ hours\) is longer than the maximum \(\d+ hours\)\.$"),
    re.compile(r"^Unknown design pattern .*\.$", re.S),  # the catalog, like a missing row
    re.compile(r"^The catalog holds no version .* of .+ \(it holds .*\)\.$", re.S),  # a change's version
    # Across two fields of one body, which JSON Schema cannot compare: the 12 digits inside
    # role_arn must be account_id.
    re.compile(r"^The role must belong to this account\.$"),
    # kind and endpoint_url: only an AWS account may name an AWS endpoint.
    re.compile(r"^Only an AWS account talks to an AWS endpoint\.$"),
    # Two query parameters that exclude each other (keyset or offset pages), which a schema's
    # parameters cannot say.
    re.compile(r"^give either cursor or offset, not both$"),
    # Two body fields that exclude each other (an expiry's hours or until).
    re.compile(r"^Give either hours or until\.$"),
]
# JSON documents (an account's shared_infrastructure) may not hold NUL anywhere inside, which
# JSON Schema cannot say of nested values.
NESTED_NUL = re.compile(r"^Null characters are not allowed\.$")
JSON_FIELDS = ("shared_infrastructure",)
# A PATCH is checked with the stored row's other fields (e.g. kind=aws needs the stored role).
PATCH_DEPENDENT = [re.compile(r"^An AWS account needs the role the portal assumes\.$")]


def refused_for_state_only(response, case) -> bool:
    """A 400 whose every field message names a missing row (or a past expiry), or a 422 for
    an Idempotency-Key reused with another body."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if response.status_code == 422:
        return error.get("code") == "idempotency_key_reused"
    fields = error.get("fields") or {}
    # The pattern's own parameters are checked against that pattern's JSON Schema, which
    # depends on the `pattern` value: GET /api/v1/patterns/{slug}/ describes it.
    messages = [m for name, found in fields.items() if not name.startswith("parameters") for m in found
                if not (name.startswith(JSON_FIELDS) and NESTED_NUL.match(m))]
    allowed = STATE_DEPENDENT + (PATCH_DEPENDENT if case.method.upper() == "PATCH" else [])
    return response.status_code == 400 and bool(fields) and all(any(p.match(m) for p in allowed) for m in messages)


@schemathesis.check
def positive_data_acceptance_beyond_the_database(ctx, response, case):
    """schemathesis' positive_data_acceptance, except for refusals that depend on state."""
    try:
        return schemathesis.checks.positive_data_acceptance(ctx, response, case)
    except Failure:
        if refused_for_state_only(response, case):
            return None
        raise


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its request as is
    suppress_health_check=list(HealthCheck),
)
def test_every_response_conforms_to_the_schema(case, seeded):
    aim(case, seeded)
    case.call_and_validate(
        headers={"Authorization": f"Token {seeded.key}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
        additional_checks=[positive_data_acceptance_beyond_the_database],
    )
