"""Drift detection (issue 16) with the offline pattern: who is due, checks that lock and write
nothing, never stand in a user's way, and survive their worker's death. The AWS drift -> fix
-> in sync loop against moto is tests/portal/test_aws_drift.py."""

import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import DriftCheck, Environment, Run, RunStatus, StateLock, StateVersion
from portal.services import drift, environments
from portal.services.errors import Conflict, InvalidRequest, NotAllowed
from tests.factories import make_account, make_department, make_pool, make_product, make_user
from tests.waiting import wait_for_environment, wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def people():
    department = make_department("payments")
    account = make_account(department, dns_zone="sandbox.example.test", max_concurrent_runs=1)
    make_pool(account, "10.62.0.0/16", prefix_length=24)
    return {
        "department": department, "account": account, "product": make_product(department, slug="shop"),
        "owner": make_user("owner", departments=[department]), "stranger": make_user("stranger"),
    }


def ready(people, name):
    run = environments.request_create(user=people["owner"], product=people["product"], pattern_slug="demo-ecs", name=name)
    return wait_for_environment(run.environment_id, {"ready"})


def finished(check_id, timeout=120) -> DriftCheck:
    wait_until(lambda: DriftCheck.objects.get(pk=check_id).finished, f"drift check {check_id} to finish", timeout=timeout)
    return DriftCheck.objects.get(pk=check_id)


def test_the_interval_comes_from_product_then_account_then_the_default_and_local_is_off(people, settings):
    settings.DRIFT_CHECK_HOURS = 24
    product, account = people["product"], people["account"]
    assert drift.interval_hours(product, account) == 0  # a local account: off unless asked for
    account.drift_check_hours = 6
    assert drift.interval_hours(product, account) == 6
    product.drift_check_hours = 0
    assert drift.interval_hours(product, account) == 0  # the product switches it off
    aws = make_account(people["department"], kind="aws", account_id="123456789012", dns_zone="aws.example.test")
    product.drift_check_hours = None
    assert drift.interval_hours(product, aws) == 24


@pytest.mark.slow
def test_due_environments_are_checked_in_sync_with_nothing_locked_or_written(people, web_server, celery_worker, drift_worker):
    a, b = ready(people, "a"), ready(people, "b")
    assert drift.schedule_due() == []  # local accounts are off by default
    account = people["account"]
    account.drift_check_hours = 12
    account.save()
    versions = StateVersion.objects.count()
    queued = drift.schedule_due()
    assert len(queued) == 2 and drift.schedule_due() == []  # never two in flight per environment
    checks = [finished(pk) for pk in queued]
    assert [c.status for c in checks] == ["in_sync", "in_sync"], [c.explanation for c in checks]
    assert all(c.state_serial is not None and c.worker and c.started_at and c.finished_at for c in checks)
    assert StateVersion.objects.count() == versions and not StateLock.objects.exists()
    assert Run.objects.filter(environment__in=[a, b]).count() == 2  # only the creates: a check is not a run
    a.refresh_from_db()
    assert a.drift_status == "in_sync" and a.drift_checked_at is not None
    assert drift.schedule_due() == []  # checked: not due again for 12 hours
    assert drift.schedule_due(now=timezone.now() + timedelta(hours=13)) != []


@pytest.mark.slow
def test_a_check_takes_no_run_slot_and_a_user_run_on_the_environment_is_not_refused(people, web_server, celery_worker,
                                                                                    drift_worker):
    env = ready(people, "dev")
    # The drift worker is stopped: the check stays queued, as if the drift queue were busy.
    drift_worker.kill(signal.SIGKILL)
    try:
        check = drift.request_check(user=people["owner"], environment=env)
        with pytest.raises(Conflict, match="already has a drift check"):
            drift.request_check(user=people["owner"], environment=env)
        # The account's one slot is free for a user's create; the environment may be deleted.
        other = environments.request_create(user=people["owner"], product=people["product"], pattern_slug="demo-ecs", name="other")
        wait_for_environment(other.environment_id, {"ready"})
        delete = environments.request_delete(user=people["owner"], environment=env)
        wait_for_environment(env.pk, {"deleted"})
        assert Run.objects.get(pk=delete.pk).status == RunStatus.SUCCEEDED
    finally:
        drift_worker.restart()
    # The check then finds the environment gone: not a finding, no badge change.
    check = finished(check.pk)
    assert check.status == "superseded", check.explanation
    assert Environment.objects.get(pk=env.pk).drift_status == "unknown"


@pytest.mark.slow
def test_a_check_whose_worker_died_is_failed_by_the_scheduler_and_checked_again(people, web_server, celery_worker,
                                                                               drift_worker, settings):
    env = ready(people, "dev")
    check = drift.request_check(user=people["owner"], environment=env)
    # As if its worker had claimed it and died: running, with nobody behind it.
    DriftCheck.objects.filter(pk=check.pk).update(status="running", started_at=timezone.now() - timedelta(hours=2),
                                                  worker="gone:1")
    drift.recover()
    check.refresh_from_db()
    assert check.status == "failed" and "stopped answering (gone:1)" in check.explanation
    env.refresh_from_db()
    assert env.drift_status == "failed"
    again = drift.request_check(user=people["owner"], environment=env)
    assert finished(again.pk).status == "in_sync"


@pytest.mark.slow
def test_people_without_rights_and_nonsense_are_refused(people, web_server, celery_worker):
    env = ready(people, "dev")
    with pytest.raises(NotAllowed):
        drift.request_check(user=people["stranger"], environment=env)
    check = DriftCheck.objects.create(environment=env, status="in_sync")
    with pytest.raises(InvalidRequest, match="found no drift"):
        drift.plan_fix(user=people["owner"], check=check)
    assert DriftCheck.objects.count() == 1


@pytest.mark.slow
def test_the_cli_checks_now_and_refuses_a_fix_of_nothing(people, web_server, celery_worker, drift_worker, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    env = ready(people, "dev")
    call_command("provision", "--user", "owner", "drift", str(env.pk))
    out = capsys.readouterr().out
    check = DriftCheck.objects.get(environment=env)
    assert f"drift check #{check.pk} queued" in out and "In sync - The real resources match the state." in out
    with pytest.raises(CommandError, match="found no drift"):
        call_command("provision", "--user", "owner", "fix-drift", str(check.pk))
    with pytest.raises(CommandError, match="No drift check #999"):
        call_command("provision", "--user", "owner", "fix-drift", "999")
