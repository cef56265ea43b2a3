"""`manage.py seed_demo`: the demo world appears once, and passwords are handled with care."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from portal.management.commands.seed_demo import kept_logins, seed_demo_data
from portal.models import CidrPool, Department, Product, SandboxAccount
from tests.factories import make_pool

pytestmark = pytest.mark.django_db

SEEDED_MODELS = [Department, SandboxAccount, CidrPool, Product, get_user_model()]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def no_demo_passwords_in_env(monkeypatch):
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("DEMO_DEVELOPER_PASSWORD", raising=False)


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def snapshot():
    """Every column of every row the seed may touch, memberships included."""
    rows = {model.__name__: list(model.objects.order_by("pk").values()) for model in SEEDED_MODELS}
    rows["members"] = list(Department.members.through.objects.order_by("pk").values())
    return rows


def test_it_creates_the_demo_world():
    seed_demo_data()
    assert set(Department.objects.values_list("slug", flat=True)) == {"payments", "logistics"}

    local = SandboxAccount.objects.get(account_id="000000000001")
    assert (local.name, local.kind, local.region, local.dns_zone, local.max_concurrent_runs) == (
        "Local sandbox",
        "local",
        "eu-west-1",
        "sandbox.local.test",
        2,
    )
    assert list(local.cidr_pools.values_list("cidr", "prefix_length")) == [("10.100.0.0/16", 24)]
    for department in Department.objects.all():
        assert department.accounts.filter(kind="local").exists(), f"{department} cannot create environments"
        assert department.products.exists()
    assert 3 <= Product.objects.count() <= 4

    admin = get_user_model().objects.get(username="admin")
    developer = get_user_model().objects.get(username="developer")
    assert admin.is_superuser and admin.is_staff
    assert not developer.is_staff and not developer.is_superuser
    assert list(developer.departments.values_list("slug", flat=True)) == ["payments"]


def test_it_changes_nothing_the_second_time():
    first_output = seed()
    after_first = snapshot()

    second_output = seed()
    assert snapshot() == after_first
    assert "Created" in first_output and "Created" not in second_output
    assert "Nothing to do: the demo data is already present." in second_output
    assert "'admin' already exists; its password is unchanged." in second_output
    assert "'developer' already exists; its password is unchanged." in second_output

    result = seed_demo_data()
    assert not result.changed_anything and not result.created


def test_it_uses_the_passwords_from_the_environment(monkeypatch):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "admin-from-env-1")
    monkeypatch.setenv("DEMO_DEVELOPER_PASSWORD", "developer-from-env-1")
    output = seed()
    User = get_user_model()
    assert User.objects.get(username="admin").check_password("admin-from-env-1")
    assert User.objects.get(username="developer").check_password("developer-from-env-1")
    assert "created with the password from DEMO_ADMIN_PASSWORD" in output
    assert "admin-from-env-1" not in output and "developer-from-env-1" not in output


def test_it_prints_a_generated_password_once():
    output = seed()
    result_users = {user.username: user for user in seed_demo_data().users}
    assert all(not user.created and user.password is None for user in result_users.values())

    User = get_user_model()
    for username in ("admin", "developer"):
        line = next(line for line in output.splitlines() if f"'{username}' created with the generated password" in line)
        password = line.split("generated password ")[1].split(" ")[0]
        assert len(password) >= 16
        assert User.objects.get(username=username).check_password(password)
        assert seed().count(password) == 0


def test_generated_passwords_are_kept_for_the_banner_readable_by_the_owner_only(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    output = seed()
    kept = kept_logins()
    assert set(kept) == {"admin", "developer"}
    assert all(f"generated password {password} (also in {tmp_path / 'demo-logins.txt'}" in output for password in kept.values())
    assert (tmp_path / "demo-logins.txt").stat().st_mode & 0o777 == 0o600
    seed()  # nothing new is generated, nothing is added
    assert kept_logins() == kept and len((tmp_path / "demo-logins.txt").read_text().splitlines()) == 2


def test_passwords_from_the_environment_are_not_kept(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "admin-from-env-1")
    seed()
    assert set(kept_logins()) == {"developer"}


def test_it_leaves_an_existing_users_password_alone(monkeypatch):
    User = get_user_model()
    User.objects.create_user(username="developer", password="chosen-by-the-developer")
    monkeypatch.setenv("DEMO_DEVELOPER_PASSWORD", "would-overwrite-it")
    output = seed()
    developer = User.objects.get(username="developer")
    assert developer.check_password("chosen-by-the-developer")
    assert "'developer' already exists; its password is unchanged." in output
    assert developer.departments.filter(slug="payments").exists()


def test_it_writes_nothing_when_the_demo_clashes_with_an_admins_pool():
    seed_demo_data()
    local = SandboxAccount.objects.get(account_id="000000000001")
    local.cidr_pools.all().delete()
    make_pool(local, "10.100.128.0/17")
    Product.objects.filter(slug="checkout").delete()

    with pytest.raises(CommandError, match="overlaps the pool 10.100.128.0/17"):
        seed()
    assert not Product.objects.filter(slug="checkout").exists()
