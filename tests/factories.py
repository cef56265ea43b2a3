"""Plain helper functions that create valid rows for tests. No magic, no factory library.

Each `make_*` creates one row with unique defaults (a counter), accepts the interesting
fields as keywords and passes any other keyword straight to the model. Rows are created
with `objects.create` (no `full_clean`): a test that wants an invalid row can pass one.
Parents are created on demand, so `make_run()` alone builds a department, account, product
and environment.

    from tests.factories import make_environment, make_run
    run = make_run(make_environment(status="ready"), kind="destroy")
"""

import functools
import hashlib
import itertools
import json
import uuid

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from portal.models import (
    CidrAllocation,
    CidrPool,
    Department,
    Endpoint,
    Environment,
    EnvironmentStatus,
    Product,
    Run,
    RunEvent,
    RunKind,
    RunStatus,
    SandboxAccount,
    StateLock,
    StateLockRelease,
    StateVersion,
)

DEFAULT_PASSWORD = "correct-horse-battery-staple"
DEFAULT_PATTERN = "demo-ecs"
DEFAULT_PATTERN_VERSION = "1.1.0"  # the bundled demo-ecs

_numbers = itertools.count(1)


def _next() -> int:
    return next(_numbers)


@functools.cache
def _password_hash(password: str) -> str:
    # Hashing is slow on purpose (PBKDF2); tests make many users, so hash each password once.
    return make_password(password)


def make_user(username=None, *, password=DEFAULT_PASSWORD, departments=(), **fields):
    """A user (not staff unless `is_staff=True`) who may log in with `password`,
    member of each department in `departments`."""
    username = username or f"user{_next()}"
    fields.setdefault("email", f"{username}@example.test")
    user = get_user_model().objects.create(username=username, password=_password_hash(password), **fields)
    for department in departments:
        department.members.add(user)
    return user


def make_superuser(username=None, *, password=DEFAULT_PASSWORD, **fields):
    """A superuser (staff, every permission): the admin's user in admin tests."""
    return make_user(username or f"admin{_next()}", password=password, is_staff=True, is_superuser=True, **fields)


def make_department(slug=None, *, name=None, members=()):
    """A department, optionally with members."""
    number = _next()
    slug = slug or f"dept{number}"
    department = Department.objects.create(slug=slug, name=name or f"Department {slug}")
    if members:
        department.members.add(*members)
    return department


def make_account(department=None, *, kind=SandboxAccount.Kind.LOCAL, account_id=None, name=None, **fields):
    """A sandbox account of `department` (a new one by default).

    Defaults to the offline `local` kind; `kind="aws"` also gets a matching `role_arn`.
    """
    number = _next()
    account_id = account_id or f"{number:012d}"
    if kind == SandboxAccount.Kind.AWS:
        fields.setdefault("role_arn", f"arn:aws:iam::{account_id}:role/portal-provisioner")
    fields.setdefault("dns_zone", f"a{number}.sandbox.test")
    return SandboxAccount.objects.create(
        department=department or make_department(),
        kind=kind,
        account_id=account_id,
        name=name or f"Account {number}",
        **fields,
    )


def make_pool(account=None, cidr=None, *, prefix_length=24, **fields):
    """A CIDR pool of `account` (a new one by default); the default CIDR is a fresh 10.x.0.0/16."""
    cidr = cidr or f"10.{_next() % 256}.0.0/16"
    return CidrPool.objects.create(account=account or make_account(), cidr=cidr, prefix_length=prefix_length, **fields)


def make_product(department=None, *, slug=None, name=None, **fields):
    """A product of `department` (a new one by default)."""
    slug = slug or f"product{_next()}"
    return Product.objects.create(
        department=department or make_department(), slug=slug, name=name or slug.title(), **fields
    )


def make_environment(product=None, *, account=None, name=None, status=EnvironmentStatus.READY, **fields):
    """An environment of `product` (a new one by default) in `account` (by default the
    department's first account, created if it has none). Status defaults to ready."""
    product = product or make_product()
    if account is None:
        account = product.department.accounts.order_by("pk").first() or make_account(product.department)
    fields.setdefault("pattern_slug", DEFAULT_PATTERN)
    fields.setdefault("pattern_version", DEFAULT_PATTERN_VERSION)
    return Environment.objects.create(
        product=product, account=account, name=name or f"env{_next()}", status=status, **fields
    )


def make_allocation(environment=None, *, pool=None, cidr=None, released=False):
    """A block of `pool` (by default a new pool of the environment's account) held by
    `environment`; `released=True` makes it a released (audit-only) allocation."""
    environment = environment or make_environment()
    pool = pool or make_pool(environment.account)
    if cidr is None:
        taken = set(pool.allocations.values_list("cidr", flat=True))
        blocks = pool.network.subnets(new_prefix=pool.prefix_length)
        cidr = next(str(block) for block in blocks if str(block) not in taken)
    return CidrAllocation.objects.create(
        pool=pool, environment=environment, cidr=cidr, released_at=timezone.now() if released else None
    )


def make_endpoint(environment=None, fqdn=None, **fields):
    """An endpoint of `environment` (a new one by default) under its account's DNS zone."""
    environment = environment or make_environment()
    fqdn = fqdn or f"{environment.name}-{_next()}.{environment.account.dns_zone}"
    fields.setdefault("url", f"https://{fqdn}/")
    return Endpoint.objects.create(environment=environment, fqdn=fqdn, **fields)


def make_run(environment=None, *, kind=RunKind.CREATE, status=RunStatus.SUCCEEDED, **fields):
    """A run of `environment` (a new one by default). Status defaults to succeeded, so a
    test can add several runs to one environment without meeting the one-unfinished-run rule."""
    environment = environment or make_environment()
    fields.setdefault("pattern_slug", environment.pattern_slug)
    fields.setdefault("pattern_version", environment.pattern_version)
    return Run.objects.create(environment=environment, account=environment.account, kind=kind, status=status, **fields)


def make_run_event(run=None, message="terraform says hello", *, seq=None, **fields):
    """The next event of `run` (seq = run.last_event_seq + 1), keeping `last_event_seq` in step."""
    run = run or make_run()
    if seq is None:
        run.refresh_from_db(fields=["last_event_seq"])
        seq = run.last_event_seq + 1
    event = RunEvent.objects.create(run=run, seq=seq, message=message, **fields)
    Run.objects.filter(pk=run.pk, last_event_seq__lt=seq).update(last_event_seq=seq)
    return event


def make_state_version(environment=None, *, run=None, serial=None, resources=1, lineage=None):
    """A Terraform state document of `environment` with `resources` resources."""
    environment = environment or make_environment()
    if serial is None:
        serial = StateVersion.objects.filter(environment=environment).count() + 1
    lineage = lineage or str(uuid.uuid5(uuid.NAMESPACE_URL, f"environment/{environment.pk}"))
    document = {
        "version": 4,
        "terraform_version": "1.15.0",
        "serial": serial,
        "lineage": lineage,
        "outputs": {},
        "resources": [
            {"mode": "managed", "type": "terraform_data", "name": f"r{i}", "instances": [{"attributes": {}}]}
            for i in range(resources)
        ],
    }
    content = json.dumps(document).encode()
    return StateVersion.objects.create(
        environment=environment,
        run=run,
        serial=serial,
        lineage=lineage,
        md5=hashlib.md5(content).hexdigest(),
        size=len(content),
        resource_count=resources,
        content=content,
    )


def lock_info(lock_id=None, *, operation="OperationTypeApply", who="worker@test"):
    """The lock-info JSON Terraform sends with LOCK."""
    return {
        "ID": lock_id or str(uuid.uuid4()),
        "Operation": operation,
        "Info": "",
        "Who": who,
        "Version": "1.15.0",
        "Created": "2026-01-01T00:00:00Z",
        "Path": "",
    }


def make_state_lock(environment=None, *, run=None, lock_id=None, info=None):
    """The lock on `environment`'s state (at most one per environment)."""
    environment = environment or make_environment()
    info = info or lock_info(lock_id)
    return StateLock.objects.create(environment=environment, lock_id=info["ID"], info=info, run=run)


def make_state_lock_release(environment=None, *, released_by=None, reason="force-unlocked in a test"):
    """An audit row of a lock released by someone other than its holder."""
    environment = environment or make_environment()
    info = lock_info()
    return StateLockRelease.objects.create(
        environment=environment, lock_id=info["ID"], info=info, released_by=released_by, reason=reason
    )
