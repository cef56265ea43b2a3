"""Pieces the benchmark scripts share."""

from __future__ import annotations

import random

DEPARTMENTS = 20
PRODUCTS_PER_DEPARTMENT = 10


def prepare_database(url: str) -> None:
    """Drop and recreate a PostgreSQL scratch database (only one whose name starts with
    `bench`); SQLite URLs need nothing."""
    if not url.startswith("postgres"):
        return
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("bench"):
        raise SystemExit(f"refusing to recreate database {name!r}: its name must start with 'bench'")
    admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def seed_cmdb(count: int, rng: random.Random) -> tuple[str, list[str]]:
    """A CMDB of `count` environments, each with an endpoint and two runs (a succeeded create,
    a failed destroy), 1 in 20 deleted, in 20 departments and 200 products; then ANALYZE.
    Returns an API key of a department member and the live FQDNs."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from portal.models import (
        Department,
        Endpoint,
        Environment,
        EnvironmentStatus,
        Product,
        Run,
        RunKind,
        RunStage,
        RunStatus,
        SandboxAccount,
    )
    from portal.services.tokens import create_token

    User = get_user_model()
    users = User.objects.bulk_create([User(username=f"dev{i}", email=f"dev{i}@example.test") for i in range(100)])
    departments = Department.objects.bulk_create(
        [Department(slug=f"dept{i}", name=f"Department {i}") for i in range(DEPARTMENTS)]
    )
    for index, department in enumerate(departments):
        department.members.add(*users[index * 5 : index * 5 + 5])
    accounts = SandboxAccount.objects.bulk_create(
        [
            SandboxAccount(
                department=department,
                name=f"sandbox-{department.slug}",
                account_id=f"{100000000000 + index:012d}",
                kind=SandboxAccount.Kind.LOCAL,
                dns_zone=f"{department.slug}.sandbox.test",
                max_concurrent_runs=4,
            )
            for index, department in enumerate(departments)
        ]
    )
    products = Product.objects.bulk_create(
        [
            Product(department=department, slug=f"{department.slug}-p{j}", name=f"Product {department.slug} {j}")
            for department in departments
            for j in range(PRODUCTS_PER_DEPARTMENT)
        ]
    )
    account_of = {account.department_id: account for account in accounts}
    statuses = (
        [EnvironmentStatus.READY] * 16
        + [EnvironmentStatus.FAILED, EnvironmentStatus.INCOMPLETE, EnvironmentStatus.DELETE_FAILED]
        + [EnvironmentStatus.DELETED]
    )
    now = timezone.now()
    environments = []
    for index in range(count):
        product = products[index % len(products)]
        environments.append(
            Environment(
                product=product,
                account=account_of[product.department_id],
                name=f"env-{index}",
                pattern_slug="demo-ecs",
                pattern_version="1.0.0",
                parameters={"delay_seconds": 0},
                status=rng.choice(statuses),
                cidr=f"10.{index // 256 % 256}.{index % 256}.0/24",  # a display value here, not an allocation
                outputs={"app_fqdn": f"app.env-{index}.sandbox.test"},
                requested_by=users[index % len(users)],
            )
        )
    environments = Environment.objects.bulk_create(environments, batch_size=5000)
    # Spread created_at like real history (bulk_create gives them all about the same time).
    for offset, environment in enumerate(environments):
        environment.created_at = now - timezone.timedelta(minutes=count - offset)
    Environment.objects.bulk_update(environments, ["created_at"], batch_size=2000)
    fqdns = []
    endpoints = []
    for environment in environments:
        fqdn = f"app.{environment.name}.{environment.product.department.slug}.sandbox.test"
        released = now if environment.status == EnvironmentStatus.DELETED else None
        endpoints.append(Endpoint(environment=environment, fqdn=fqdn, url=f"https://{fqdn}/", released_at=released))
        if released is None:
            fqdns.append(fqdn)
    Endpoint.objects.bulk_create(endpoints, batch_size=2000)
    runs = []
    for environment in environments:
        common = {
            "environment": environment,
            "account_id": environment.account_id,
            "pattern_slug": "demo-ecs",
            "pattern_version": "1.0.0",
            "requested_by_id": environment.requested_by_id,
        }
        runs.append(Run(kind=RunKind.CREATE, status=RunStatus.SUCCEEDED, stage=RunStage.OUTPUTS,
                        resources_planned=7, resources_done=7, **common))
        runs.append(Run(kind=RunKind.DESTROY, status=RunStatus.FAILED, stage=RunStage.DESTROY,
                        explanation="destroy failed", **common))
    Run.objects.bulk_create(runs, batch_size=2000)
    _, key = create_token(user=users[0], name="bench")
    # Statistics and the visibility map, as autovacuum keeps them on a live database: without
    # them the planner guesses row counts of freshly bulk-loaded tables, and a count cannot
    # use an index-only scan (100,000 environments: 36 ms by a table scan, 11 ms by the index).
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    return key, fqdns
