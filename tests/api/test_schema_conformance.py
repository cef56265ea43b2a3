"""Property-based check of the whole API against its own OpenAPI schema (schemathesis).

Every operation of /api/schema/ gets up to MAX_EXAMPLES generated requests (valid ones and,
in negative mode, invalid ones), sent in-process through the full WSGI stack with a staff
token (staff may call every operation, so writes are exercised too). Each response must be
no 5xx, a documented status, of the documented content type, and match the documented body.

Deterministic: Hypothesis is derandomized and keeps no example database, so a failure here
reproduces on every run. Nothing is excluded. The data the run makes lives in the test's
transaction and is rolled back; environment creates never reach a worker (the dispatch is
an on-commit callback, and this transaction never commits).
"""

import zlib
from dataclasses import dataclass

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode

from portal.services import tokens
from tests.factories import make_endpoint, make_environment, make_run, make_run_event

MAX_EXAMPLES = 20


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
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


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
    case.call_and_validate(headers={"Authorization": f"Token {seeded.key}"}, checks=CHECKS)
