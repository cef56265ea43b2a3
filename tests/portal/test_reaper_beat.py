"""Reaping does not depend on the worker pool (issue 12): beat reaps in its own process.

As a queued task the reaper waited for a free worker process: 95 s with the only worker dead,
about 50 s with every process busy. These tests run a real `celery beat` (REAP_INTERVAL_SECONDS
= 2) beside the real worker and require a dead worker's run to be `interrupted` within
lease + interval, whatever the workers are doing.
"""

import signal
import time

import pytest
from django.conf import settings
from django.utils import timezone

from portal.models import ReaperPass, Run, RunStatus
from tests.factories import make_account, make_environment, make_pool, make_run
from tests.portal.test_run_control import create, in_apply, world  # noqa: F401 - the fixture
from tests.processes import beat_process
from tests.waiting import wait_for_environment, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

INTERVAL = 2.0
MARGIN = 5.0  # polling, process start-up and a loaded 2-core machine


@pytest.fixture
def beat(portal_env, process_log_dir, tmp_path):
    """A real `celery beat`, ready once its reaper has recorded a pass."""
    env = dict(portal_env, REAP_INTERVAL_SECONDS=str(INTERVAL))
    since = timezone.now()

    def reaping(process):
        return ReaperPass.objects.filter(name="leases", at__gt=since).exists()

    process = beat_process(env, process_log_dir, schedule_file=tmp_path / "celerybeat-schedule", ready=reaping)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_the_only_worker_killed_and_not_restarted_is_reaped_within_lease_and_interval(world, celery_worker, beat):
    run = create(world, "lonely", delay_seconds=60)
    wait_until(lambda: in_apply(run.pk), what="apply to start")
    celery_worker.kill(signal.SIGKILL)  # the only worker, and nobody restarts it
    killed = time.monotonic()
    try:
        limit = settings.RUN_LEASE_SECONDS + INTERVAL + MARGIN
        wait_until(lambda: Run.objects.get(pk=run.pk).status == RunStatus.INTERRUPTED, timeout=limit, what="beat's reaper")
        took = time.monotonic() - killed
    finally:
        celery_worker.restart()
    assert took <= limit, took
    env = wait_for_environment(run.environment_id, {"incomplete"})
    assert "interrupted" in env.status_reason


def test_a_dead_workers_run_is_reaped_while_every_worker_process_is_busy(world, celery_worker, beat):
    second = make_account(world["department"], name="acct-b", dns_zone="b.example.test", max_concurrent_runs=1)
    make_pool(second, "10.71.0.0/16", prefix_length=24)
    busy = [create(world, "busy-a", delay_seconds=40), create(world, "busy-b", account=second, delay_seconds=40)]
    for run in busy:  # the worker's 2 processes are both applying
        wait_until(lambda run=run: in_apply(run.pk), what="both applies to start")
    third = make_account(world["department"], name="acct-c", dns_zone="c.example.test")
    orphan = make_run(
        make_environment(account=third, status="provisioning"), status=RunStatus.RUNNING, stage="apply",
        worker="vanished-host:4242", started_at=timezone.now(), lease_expires_at=timezone.now(),
    )
    lapsed = time.monotonic()
    limit = INTERVAL + MARGIN
    wait_until(lambda: Run.objects.get(pk=orphan.pk).status == RunStatus.INTERRUPTED, timeout=limit, what="beat's reaper")
    assert time.monotonic() - lapsed <= limit
    assert all(Run.objects.get(pk=r.pk).status == RunStatus.RUNNING for r in busy), "busy runs are untouched"
    for run in busy:
        from portal.services import environments

        environments.request_cancel(user=world["owner"], run=run)
    for run in busy:
        wait_for_environment(run.environment_id, {"incomplete", "failed"}, timeout=60)
