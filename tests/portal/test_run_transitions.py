"""Run transitions, dispatch and reaping, one step at a time (no worker needed)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import Run, RunStage, RunStatus, StateLock, StateLockRelease
from portal.services import runs as transitions
from portal.services.dispatch import dispatch_account, queue_position
from portal.services.errors import TransitionLost
from portal.services.reaper import reap_expired
from tests.factories import make_account, make_environment, make_product, make_run, make_state_lock

pytestmark = pytest.mark.django_db


@pytest.fixture
def account():
    return make_account(max_concurrent_runs=1)


def queued(account, kind="create", status="provisioning"):
    env = make_environment(make_product(account.department), account=account, status=status)
    return transitions.queue_run(env, kind)


def test_dispatch_fills_only_the_free_slots_in_fifo_order(account, django_capture_on_commit_callbacks):
    first, second, third = queued(account), queued(account), queued(account)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert dispatch_account(account.pk) == [first.pk]
    assert len(callbacks) == 1  # the Celery message is sent only after commit
    assert [queue_position(Run.objects.get(pk=r.pk)) for r in (first, second, third)] == [None, 1, 2]
    with django_capture_on_commit_callbacks(execute=False):
        assert dispatch_account(account.pk) == []


def test_a_run_is_claimed_by_one_worker_only(account, django_capture_on_commit_callbacks):
    run = queued(account)
    with django_capture_on_commit_callbacks(execute=False):
        dispatch_account(account.pk)
    transitions.claim_run(run.pk, "host:1")
    with pytest.raises(TransitionLost):
        transitions.claim_run(run.pk, "host:2")  # a duplicate delivery does nothing
    assert Run.objects.get(pk=run.pk).worker == "host:1"


def test_a_lost_race_is_detected_not_overwritten(account, django_capture_on_commit_callbacks):
    run = queued(account)
    with django_capture_on_commit_callbacks(execute=False):
        dispatch_account(account.pk)
    transitions.claim_run(run.pk, "host:1")
    with pytest.raises(TransitionLost):
        transitions.set_stage(run.pk, RunStage.PLAN, "host:other")
    with django_capture_on_commit_callbacks(execute=False):
        transitions.fail_run(Run.objects.get(pk=run.pk), "host:1", explanation="no")
    with pytest.raises(TransitionLost):
        transitions.fail_run(Run.objects.get(pk=run.pk), "host:1", explanation="twice")


def test_cancelling_a_queued_create_drops_it_and_frees_the_network(account, django_capture_on_commit_callbacks):
    run = queued(account)
    assert transitions.request_cancel(run.pk) == "dropped"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.environment.status == "failed"


def test_cancelling_a_queued_destroy_puts_the_environment_back(account):
    run = queued(account, kind="destroy", status="ready")
    run.environment.__class__.objects.filter(pk=run.environment_id).update(status="deleting")
    assert transitions.request_cancel(run.pk) == "dropped"
    run.environment.refresh_from_db()
    assert run.environment.status == "ready"


def test_cancelling_a_running_run_asks_the_worker(account, django_capture_on_commit_callbacks):
    run = queued(account)
    with django_capture_on_commit_callbacks(execute=False):
        dispatch_account(account.pk)
    assert transitions.request_cancel(run.pk) == "requested"
    assert Run.objects.get(pk=run.pk).cancel_requested_at is not None


def test_the_reaper_requeues_an_unclaimed_run_and_interrupts_a_started_one(account, django_capture_on_commit_callbacks):
    account.max_concurrent_runs = 2
    account.save()
    unclaimed, started = queued(account), queued(account)
    with django_capture_on_commit_callbacks(execute=False):
        dispatch_account(account.pk)
    transitions.claim_run(started.pk, "host:1")
    transitions.set_stage(started.pk, RunStage.APPLY, "host:1")
    make_state_lock(started.environment, run=started)
    Run.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=False):
        assert reap_expired() == {unclaimed.pk: "requeued", started.pk: "interrupted"}
    started.refresh_from_db()
    assert started.status == RunStatus.INTERRUPTED and "re-applied" in started.explanation
    assert started.environment.status == "incomplete"
    assert StateLock.objects.count() == 0 and StateLockRelease.objects.count() == 1
    # Requeued, then dispatched again at once into the slot the interrupted run freed.
    again = Run.objects.get(pk=unclaimed.pk)
    assert (again.status, again.stage) == (RunStatus.RUNNING, RunStage.DISPATCHED)
    assert again.events.filter(message__startswith="Back in the queue").exists()


def test_a_live_lease_is_left_alone(account, django_capture_on_commit_callbacks):
    run = queued(account)
    with django_capture_on_commit_callbacks(execute=False):
        dispatch_account(account.pk)
        transitions.claim_run(run.pk, "host:1")
        assert reap_expired() == {}
    assert transitions.renew_lease(run.pk, "host:1") is True
    assert transitions.renew_lease(run.pk, "host:2") is False


def test_a_failed_apply_hands_the_slot_to_its_rollback(account, django_capture_on_commit_callbacks):
    run, waiting = queued(account), queued(account)
    with django_capture_on_commit_callbacks(execute=False):
        dispatch_account(account.pk)
        transitions.claim_run(run.pk, "host:1")
        rollback = transitions.fail_create_and_start_rollback(Run.objects.get(pk=run.pk), "host:1", explanation="boom")
        assert dispatch_account(account.pk) == []  # the slot stayed with the rollback
    assert rollback.status == RunStatus.RUNNING and rollback.rollback_of_id == run.pk
    assert Run.objects.get(pk=waiting.pk).status == RunStatus.QUEUED
    with django_capture_on_commit_callbacks(execute=False):
        transitions.succeed_destroy(rollback, "host:1")
    rollback.environment.refresh_from_db()
    assert rollback.environment.status == "failed"
    assert make_run  # factories stay importable for readers
