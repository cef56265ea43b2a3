"""`manage.py seed_demo`: the demo world (departments, local sandbox accounts with CIDR
pools, products, an admin and a developer), created once.

Idempotent: rows are looked up by their natural key and only missing ones are created;
existing rows (and users' passwords) are never changed, so a re-run writes nothing.
Passwords come from DEMO_ADMIN_PASSWORD / DEMO_DEVELOPER_PASSWORD, otherwise they are
generated, printed when the user is created, and kept in `VAR_DIR/demo-logins.txt`
(readable by its owner only, as Jenkins keeps its initial admin password) so `make run`'s
banner can show them again after the start-up logs have scrolled them away. Sign in and
change them, or set the variables, before the portal is reachable by anyone else.
"""

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction

from portal.models import CidrPool, Department, Product, SandboxAccount

DEPARTMENTS = [
    {"slug": "payments", "name": "Payments"},
    {"slug": "logistics", "name": "Logistics"},
]

# One offline (`local`) account per department: environments run in the sandbox account of
# the product's department, so a department without one could not create anything.
ACCOUNTS = [
    {
        "department": "payments",
        "account_id": "000000000001",
        "name": "Local sandbox",
        "region": "eu-west-1",
        "dns_zone": "sandbox.local.test",
        "max_concurrent_runs": 2,
        "pools": [{"cidr": "10.100.0.0/16", "prefix_length": 24, "description": "Demo environments"}],
    },
    {
        "department": "logistics",
        "account_id": "000000000002",
        "name": "Local sandbox (Logistics)",
        "region": "eu-west-1",
        "dns_zone": "logistics.local.test",
        "max_concurrent_runs": 2,
        "pools": [{"cidr": "10.101.0.0/16", "prefix_length": 24, "description": "Demo environments"}],
    },
]

PRODUCTS = [
    {"department": "payments", "slug": "checkout", "name": "Checkout", "description": "Card checkout web app."},
    {"department": "payments", "slug": "ledger", "name": "Ledger", "description": "Double-entry ledger API."},
    {
        "department": "logistics",
        "slug": "route-planner",
        "name": "Route planner",
        "description": "Delivery route optimisation.",
    },
    {"department": "logistics", "slug": "warehouse", "name": "Warehouse", "description": "Stock and picking service."},
]

ADMIN_USERNAME = "admin"
DEVELOPER_USERNAME = "developer"
DEVELOPER_DEPARTMENT = "payments"


@dataclass
class SeededUser:
    """A demo user and how its password came about.

    `password` is set only when the user was created with a generated password: it is the
    one chance to show it. `password_source` is "generated", the environment variable's
    name, or "unchanged" for a user that already existed.
    """

    username: str
    created: bool
    password_source: str
    password: str | None = None


@dataclass
class SeedResult:
    """What `seed_demo_data` created and what was already there."""

    created: list[models.Model] = field(default_factory=list)
    existing: list[models.Model] = field(default_factory=list)
    users: list[SeededUser] = field(default_factory=list)
    memberships_added: list[str] = field(default_factory=list)

    @property
    def changed_anything(self) -> bool:
        return bool(self.created or self.memberships_added or any(user.created for user in self.users))


def _ensure(result: SeedResult, model, lookup: dict, defaults: dict):
    """The row matching `lookup`, created (validated with `full_clean`) when missing."""
    row = model.objects.filter(**lookup).first()
    if row is not None:
        result.existing.append(row)
        return row
    row = model(**lookup, **defaults)
    row.full_clean()
    row.save()
    result.created.append(row)
    return row


def _ensure_user(result: SeedResult, username: str, env_var: str, *, superuser: bool):
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is not None:
        result.users.append(SeededUser(username, created=False, password_source="unchanged"))
        return user
    password = os.environ.get(env_var) or None
    source = env_var if password else "generated"
    if password is None:
        password = secrets.token_urlsafe(15)
    create = User.objects.create_superuser if superuser else User.objects.create_user
    user = create(username=username, email=f"{username}@example.test", password=password)
    result.users.append(
        SeededUser(username, created=True, password_source=source, password=password if source == "generated" else None)
    )
    return user


def logins_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-logins.txt"


def keep_generated_logins(users: list[SeededUser]) -> None:
    """Add `username password` lines for users just created with a generated password; the
    file is created readable by its owner only."""
    path = logins_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a") as handle:
        for user in users:
            handle.write(f"{user.username} {user.password}\n")


def kept_logins() -> dict[str, str]:
    """username -> generated password, as kept by `keep_generated_logins` (latest wins)."""
    try:
        lines = logins_file().read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(" ", 1) for line in lines if " " in line)


@transaction.atomic
def seed_demo_data() -> SeedResult:
    """Create whatever of the demo world is missing; change nothing that exists.

    Raises ValidationError when a demo row clashes with an existing one (e.g. a pool that
    overlaps a pool an admin added to the demo account): nothing is written then.
    """
    result = SeedResult()
    departments = {
        spec["slug"]: _ensure(result, Department, {"slug": spec["slug"]}, {"name": spec["name"]})
        for spec in DEPARTMENTS
    }
    for spec in ACCOUNTS:
        spec = dict(spec)
        pools = spec.pop("pools")
        department = departments[spec.pop("department")]
        account = _ensure(
            result,
            SandboxAccount,
            {"account_id": spec.pop("account_id")},
            {"department": department, "kind": SandboxAccount.Kind.LOCAL, **spec},
        )
        for pool in pools:
            pool = dict(pool)
            _ensure(result, CidrPool, {"account": account, "cidr": pool.pop("cidr")}, pool)
    for spec in PRODUCTS:
        spec = dict(spec)
        department = departments[spec.pop("department")]
        _ensure(result, Product, {"slug": spec.pop("slug")}, {"department": department, **spec})

    _ensure_user(result, ADMIN_USERNAME, "DEMO_ADMIN_PASSWORD", superuser=True)
    developer = _ensure_user(result, DEVELOPER_USERNAME, "DEMO_DEVELOPER_PASSWORD", superuser=False)
    department = departments[DEVELOPER_DEPARTMENT]
    if not department.members.filter(pk=developer.pk).exists():
        department.members.add(developer)
        result.memberships_added.append(f"{developer.username} -> {department.name}")
    return result


def _count_by_model(rows) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        opts = row._meta
        counts[str(opts.verbose_name_plural)] = counts.get(str(opts.verbose_name_plural), 0) + 1
    return ", ".join(f"{count} {name}" for name, count in counts.items())


class Command(BaseCommand):
    help = "Create the demo departments, local sandbox accounts, pools, products and users (idempotent)."

    def handle(self, *args, **options):
        try:
            result = seed_demo_data()
        except ValidationError as exc:
            raise CommandError(f"The demo data clashes with existing rows, nothing was written: {exc}") from exc

        if result.created:
            self.stdout.write(self.style.SUCCESS(f"Created {_count_by_model(result.created)}."))
        if result.existing:
            self.stdout.write(f"Already present: {_count_by_model(result.existing)}.")
        for membership in result.memberships_added:
            self.stdout.write(f"Added department member {membership}.")
        for user in result.users:
            if not user.created:
                self.stdout.write(f"User {user.username!r} already exists; its password is unchanged.")
            elif user.password is not None:
                self.stdout.write(
                    self.style.WARNING(
                        f"User {user.username!r} created with the generated password {user.password} "
                        f"(also in {logins_file()}, for the banner of make run)."
                    )
                )
            else:
                self.stdout.write(f"User {user.username!r} created with the password from {user.password_source}.")
        generated = [user for user in result.users if user.created and user.password is not None]
        if generated:
            keep_generated_logins(generated)
        if not result.changed_anything:
            self.stdout.write("Nothing to do: the demo data is already present.")
