"""Cancel, crash safety and per-account queueing with a real worker and real Terraform."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from django.conf import settings

from portal.models import Environment, Run, RunStage, RunStatus, StateLock, StateVersion
from portal.services import environments
from portal.services.dispatch import queue_position
from provisioning import procfs
from portal.services.reaper import reap_expired
from tests.factories import make_account, make_department, make_pool, make_product, make_user
from tests.waiting import wait_for_environment, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(web_server, celery_worker):
    department = make_department("payments")
    account = make_account(department, name="acct-a", dns_zone="a.example.test", max_concurrent_runs=1)
    make_pool(account, "10.70.0.0/16", prefix_length=24)
    return {
        "department": department,
        "account": account,
        "product": make_product(department, slug="shop"),
        "owner": make_user("owner", departments=[department]),
    }


def create(world, name, account=None, **params):
    return environments.request_create(
        user=world["owner"], product=world["product"], pattern_slug="demo-ecs", name=name,
        parameters=params, account=account,
    )


def in_apply(run_id):
    run = Run.objects.get(pk=run_id)
    return run if run.stage == RunStage.APPLY and run.resources_done >= 1 else None


live_members = procfs.group_members


def terraform_pgids(run):
    return [c["pid"] for c in Run.objects.get(pk=run.pk).commands if c.get("pid")]


def processes_of_run(run):
    """Live processes working in the run's folder: Terraform and its provisioners (the step
    still running is not yet in `commands`, so its process group is found this way)."""
    root = str(Path(settings.RUN_WORKDIR_ROOT).resolve() / f"run-{run.pk}-")
    return [p.pid for p in procfs.live_processes() if p.cwd().startswith(root)]


def test_cancel_stops_a_running_apply_within_the_grace_period(world):
    run = create(world, "cancel-me", delay_seconds=60)
    wait_until(lambda: in_apply(run.pk), what="apply to start")
    asked = time.monotonic()
    assert environments.request_cancel(user=world["owner"], run=run) == "requested"
    env = wait_for_environment(run.environment_id, {"incomplete"}, timeout=settings.TERRAFORM_GRACE_SECONDS + 15)
    took = time.monotonic() - asked
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and "Cancelled during apply" in run.explanation
    assert took < settings.TERRAFORM_GRACE_SECONDS, took
    pgids = terraform_pgids(run)
    assert pgids and all(live_members(pgid) == [] for pgid in pgids)
    assert "Delete it" in env.status_reason
    assert StateLock.objects.count() == 0
    # The environment offers destroy, and destroy empties the state.
    environments.request_delete(user=world["owner"], environment=env)
    env = wait_for_environment(env.pk, {"deleted"})
    assert json.loads(bytes(StateVersion.objects.filter(environment=env).latest().content))["resources"] == []


def test_a_worker_killed_mid_apply_is_noticed_and_loses_nothing(world, celery_worker):
    run = create(world, "crash", delay_seconds=60)
    wait_until(lambda: in_apply(run.pk), what="apply to start")
    wait_until(lambda: StateLock.objects.filter(environment_id=run.environment_id).exists(), what="the state lock")
    assert processes_of_run(run), "Terraform should be applying now"
    celery_worker.kill(signal.SIGKILL)  # the whole worker: main process and pool children
    killed = time.monotonic()
    try:
        # Terraform ran in its own session; its wrapper notices the worker is gone and stops
        # it as a cancel would (state saved, lock released, provisioners stopped).
        wait_until(lambda: processes_of_run(run) == [], timeout=30, what="Terraform and its provisioners to stop")
        wait_until(lambda: not StateLock.objects.filter(environment_id=run.environment_id).exists(),
                   timeout=30, what="Terraform to release its lock itself")
        # Beat's reaper notices the lapsed lease (called here as beat would).
        wait_until(lambda: reap_expired().get(run.pk) == "interrupted" or Run.objects.get(pk=run.pk).status == RunStatus.INTERRUPTED,
                   timeout=settings.RUN_LEASE_SECONDS + 15, what="the reaper")
        assert time.monotonic() - killed <= settings.RUN_LEASE_SECONDS + 15
    finally:
        celery_worker.restart()
    run.refresh_from_db()
    env = Environment.objects.get(pk=run.environment_id)
    assert run.status == RunStatus.INTERRUPTED and "re-applied" in run.explanation
    assert env.status == "incomplete"
    assert not StateLock.objects.filter(environment=env).exists()
    last = StateVersion.objects.filter(environment=env).latest()
    document = json.loads(bytes(last.content))  # intact: parses, and matches its checksum
    import hashlib

    assert hashlib.md5(bytes(last.content)).hexdigest() == last.md5 and document["lineage"] == last.lineage
    assert 1 <= last.resource_count < 7
    environments.request_delete(user=world["owner"], environment=env)
    env = wait_for_environment(env.pk, {"deleted"}, timeout=90)
    assert json.loads(bytes(StateVersion.objects.filter(environment=env).latest().content))["resources"] == []


def test_one_account_runs_its_requests_one_after_the_other(world):
    first = create(world, "first", delay_seconds=3)
    second = create(world, "second", delay_seconds=3)
    wait_until(lambda: Run.objects.get(pk=first.pk).status == RunStatus.RUNNING, what="first to run")
    second.refresh_from_db()
    assert second.status == RunStatus.QUEUED and queue_position(second) == 1
    wait_for_environment(first.environment_id, {"ready"})
    wait_for_environment(second.environment_id, {"ready"})
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.finished_at <= second.started_at


def test_different_accounts_run_in_parallel(world):
    other = make_account(world["department"], name="acct-b", dns_zone="b.example.test", max_concurrent_runs=1)
    one = create(world, "one", delay_seconds=4)
    two = create(world, "two", account=other, delay_seconds=4)
    for run in (one, two):
        wait_for_environment(run.environment_id, {"ready"})
        run.refresh_from_db()
    assert one.started_at < two.finished_at and two.started_at < one.finished_at
    assert os.cpu_count()  # the overlap holds even on this 2-core machine
