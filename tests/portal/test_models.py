"""Every model constraint is enforced by the database, not only by forms.

Rows are written with `objects.create`/`update` so `clean()` is bypassed on purpose; each
expected IntegrityError sits in its own `transaction.atomic()` so the test can go on.
"""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.models import (
    CidrPool,
    Endpoint,
    Environment,
    EnvironmentStatus,
    Run,
    RunEvent,
    RunStatus,
    SandboxAccount,
)
from tests.factories import (
    make_account,
    make_allocation,
    make_department,
    make_endpoint,
    make_environment,
    make_pool,
    make_product,
    make_run,
    make_run_event,
)

pytestmark = pytest.mark.django_db


def _account_fields(**overrides):
    fields = {
        "department": make_department(),
        "name": "Sandbox",
        "account_id": "123456789012",
        "kind": "local",
        "dns_zone": "sandbox.test",
    }
    fields.update(overrides)
    return fields


def assert_violates(constraint, create, *, sqlite_columns=None):
    """`create()` fails on `constraint` (PostgreSQL and SQLite name check constraints; SQLite
    names a unique index by its columns), so a test cannot pass on some unrelated error."""
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        create()
    message = str(caught.value)
    assert constraint in message or (sqlite_columns is not None and sqlite_columns in message), message


# --- SandboxAccount ---------------------------------------------------------------------------


@pytest.mark.parametrize("account_id", ["12345678901", "1234567890ab", "", "12345678901x"])
def test_it_refuses_an_account_id_that_is_not_12_digits(account_id):
    assert_violates(
        "account_id_is_12_digits", lambda: SandboxAccount.objects.create(**_account_fields(account_id=account_id))
    )


def test_it_accepts_a_12_digit_account_id():
    SandboxAccount.objects.create(**_account_fields(account_id="000000000001"))


def test_it_refuses_zero_concurrent_runs_for_an_account():
    assert_violates(
        "account_runs_at_least_one", lambda: SandboxAccount.objects.create(**_account_fields(max_concurrent_runs=0))
    )


def test_it_refuses_an_unknown_account_kind():
    assert_violates("account_kind_known", lambda: SandboxAccount.objects.create(**_account_fields(kind="gcp")))


def test_it_refuses_a_second_account_with_the_same_account_id():
    make_account(account_id="111111111111")
    assert_violates(
        "account_id_key",
        lambda: make_account(account_id="111111111111"),
        sqlite_columns="portal_sandboxaccount.account_id",
    )


def test_it_asks_an_aws_account_for_a_role_of_its_own():
    account = SandboxAccount(**_account_fields(kind="aws", role_arn=""))
    with pytest.raises(ValidationError) as missing:
        account.clean()
    assert "needs the role" in str(missing.value)

    account.role_arn = "arn:aws:iam::999999999999:role/portal"
    with pytest.raises(ValidationError) as foreign:
        account.clean()
    assert "must belong to this account" in str(foreign.value)

    account.role_arn = "arn:aws:iam::123456789012:role/portal"
    account.clean()


# --- CidrPool ---------------------------------------------------------------------------------


def test_it_refuses_the_same_pool_twice_in_one_account():
    account = make_account()
    make_pool(account, "10.20.0.0/16")
    assert_violates(
        "pool_cidr_unique_per_account",
        lambda: make_pool(account, "10.20.0.0/16"),
        sqlite_columns="portal_cidrpool.account_id, portal_cidrpool.cidr",
    )


def test_it_allows_the_same_pool_in_two_accounts():
    make_pool(make_account(), "10.20.0.0/16")
    make_pool(make_account(), "10.20.0.0/16")


@pytest.mark.parametrize("prefix_length", [15, 29, 0])
def test_it_refuses_a_block_size_out_of_range(prefix_length):
    assert_violates("pool_prefix_length_in_range", lambda: make_pool(cidr="10.0.0.0/8", prefix_length=prefix_length))


@pytest.mark.parametrize("prefix_length", [16, 28])
def test_it_accepts_the_block_size_bounds(prefix_length):
    make_pool(cidr="10.0.0.0/8", prefix_length=prefix_length)


def test_it_explains_an_invalid_or_overlapping_pool():
    account = make_account()
    make_pool(account, "10.20.0.0/16")

    def errors(cidr, prefix_length=24):
        with pytest.raises(ValidationError) as caught:
            CidrPool(account=account, cidr=cidr, prefix_length=prefix_length).clean()
        return caught.value.message_dict

    assert "not a valid IPv4 network" in errors("10.20.300.0/24")["cidr"][0]
    assert "host bits set" in errors("10.30.0.1/16")["cidr"][0]
    assert errors("10.20.128.0/17")["cidr"] == ["10.20.128.0/17 overlaps the pool 10.20.0.0/16 of this account."]
    assert "does not fit in the pool 10.40.0.0/24" in errors("10.40.0.0/24", prefix_length=16)["prefix_length"][0]
    CidrPool(account=account, cidr="10.21.0.0/16", prefix_length=24).clean()


# --- Environment ------------------------------------------------------------------------------


def test_it_refuses_two_live_environments_with_one_name_in_a_product():
    product = make_product()
    make_environment(product, name="dev")
    assert_violates(
        "environment_name_unique_per_product",
        lambda: make_environment(product, name="dev"),
        sqlite_columns="portal_environment.product_id, portal_environment.name",
    )


def test_it_allows_the_name_of_a_deleted_environment_again():
    product = make_product()
    make_environment(product, name="dev", status=EnvironmentStatus.DELETED)
    make_environment(product, name="dev", status=EnvironmentStatus.DELETED)
    make_environment(product, name="dev")
    assert Environment.objects.filter(product=product, name="dev").count() == 3


def test_it_allows_one_name_in_two_products():
    make_environment(make_product(), name="dev")
    make_environment(make_product(), name="dev")


def test_it_refuses_an_unknown_environment_status():
    assert_violates("environment_status_known", lambda: make_environment(status="exploded"))
    environment = make_environment()
    assert_violates(
        "environment_status_known", lambda: Environment.objects.filter(pk=environment.pk).update(status="exploded")
    )


# --- CidrAllocation ---------------------------------------------------------------------------


def test_it_refuses_to_hand_out_one_block_twice():
    pool = make_pool(cidr="10.50.0.0/16")
    make_allocation(make_environment(account=pool.account), pool=pool, cidr="10.50.1.0/24")
    assert_violates(
        "cidr_held_once",
        lambda: make_allocation(make_environment(account=pool.account), pool=pool, cidr="10.50.1.0/24"),
        sqlite_columns="portal_cidrallocation.pool_id, portal_cidrallocation.cidr",
    )


def test_it_hands_out_a_released_block_again():
    pool = make_pool(cidr="10.50.0.0/16")
    first = make_allocation(make_environment(account=pool.account), pool=pool, cidr="10.50.1.0/24")
    first.released_at = timezone.now()
    first.save()
    make_allocation(make_environment(account=pool.account), pool=pool, cidr="10.50.1.0/24")
    assert pool.allocations.filter(cidr="10.50.1.0/24").count() == 2


def test_it_allows_one_block_in_two_pools():
    make_allocation(pool=make_pool(cidr="10.50.0.0/16"), cidr="10.50.1.0/24")
    make_allocation(pool=make_pool(cidr="10.50.0.0/16"), cidr="10.50.1.0/24")


# --- Endpoint ---------------------------------------------------------------------------------


def test_it_refuses_one_fqdn_for_two_live_endpoints():
    make_endpoint(fqdn="app.sandbox.test")
    assert_violates(
        "endpoint_fqdn_unique", lambda: make_endpoint(fqdn="app.sandbox.test"), sqlite_columns="portal_endpoint.fqdn"
    )


def test_it_allows_the_fqdn_of_a_released_endpoint_again():
    make_endpoint(fqdn="app.sandbox.test", released_at=timezone.now())
    make_endpoint(fqdn="app.sandbox.test")
    assert Endpoint.objects.filter(fqdn="app.sandbox.test").count() == 2


# --- Run --------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", [RunStatus.QUEUED, RunStatus.RUNNING])
@pytest.mark.parametrize("second", [RunStatus.QUEUED, RunStatus.RUNNING])
def test_it_refuses_a_second_unfinished_run_of_an_environment(first, second):
    environment = make_environment()
    make_run(environment, status=first)
    assert_violates(
        "one_unfinished_run_per_environment",
        lambda: make_run(environment, status=second),
        sqlite_columns="portal_run.environment_id",
    )


def test_it_allows_a_new_run_next_to_finished_ones():
    environment = make_environment()
    for status in [
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.ERRORED,
        RunStatus.CANCELLED,
        RunStatus.INTERRUPTED,
    ]:
        make_run(environment, status=status)
    make_run(environment, status=RunStatus.QUEUED)
    make_run(make_environment(), status=RunStatus.QUEUED)
    assert Run.objects.filter(environment=environment).count() == 6


def test_it_refuses_an_unknown_run_status():
    assert_violates("run_status_known", lambda: make_run(status="exploded"))
    run = make_run()
    assert_violates("run_status_known", lambda: Run.objects.filter(pk=run.pk).update(status="exploded"))


def test_it_refuses_two_events_with_one_seq_in_a_run():
    run = make_run()
    make_run_event(run, seq=1)
    assert_violates(
        "run_event_seq_unique",
        lambda: make_run_event(run, seq=1),
        sqlite_columns="portal_runevent.run_id, portal_runevent.seq",
    )
    make_run_event(make_run(), seq=1)
    assert RunEvent.objects.filter(seq=1).count() == 2


def test_it_numbers_factory_events_after_the_run_counter():
    run = make_run()
    assert [make_run_event(run).seq for _ in range(3)] == [1, 2, 3]
    run.refresh_from_db()
    assert run.last_event_seq == 3


# --- Deletion rules ---------------------------------------------------------------------------


def test_it_keeps_a_pool_that_handed_out_networks():
    from django.db.models import ProtectedError

    allocation = make_allocation()
    with pytest.raises(ProtectedError), transaction.atomic():
        allocation.pool.delete()
    assert CidrPool.objects.filter(pk=allocation.pool_id).exists()
