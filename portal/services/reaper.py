"""Reaping: notice runs whose worker died and free what they held (AWX reaper, STYLE rule 11).

A running run renews its lease every RUN_LEASE_SECONDS/3. When a lease lapses:
- a run no worker ever claimed (stage `dispatched`) goes back to the queue: nothing ran;
- a run that started becomes `interrupted`, its account slot and state lock are freed, and
  the environment says what the user can do. Nothing is re-applied automatically.
Called by Celery beat every few seconds and by every worker as it starts.
"""

import logging
import os

from django.utils import timezone

from portal.models import Run, RunStage, RunStatus, SandboxAccount
from portal.services import runs as transitions
from portal.services.dispatch import dispatch_account
from portal.services.errors import TransitionLost

log = logging.getLogger(__name__)


def reap_run(run: Run, reason: str) -> str:
    """Requeue or interrupt one run whose worker is gone; returns what was done."""
    try:
        if run.stage == RunStage.DISPATCHED:
            transitions.requeue_unclaimed_run(run.pk, reason)
            return "requeued"
        if transitions.interrupt_run(run.pk, reason):
            return "interrupted"
    except TransitionLost:
        pass
    return "unchanged"


def reap_expired() -> dict[int, str]:
    """Every running run whose lease expired; then refill every account's free slots."""
    now = timezone.now()
    done = {}
    for run in Run.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now):
        done[run.pk] = reap_run(run, f"lease expired at {run.lease_expires_at:%H:%M:%S} UTC")
    for account_id in SandboxAccount.objects.filter(runs__status=RunStatus.QUEUED).values_list("pk", flat=True).distinct():
        dispatch_account(account_id)
    if done:
        log.warning("reaped runs: %s", done)
    return done


def reap_dead_local_workers(hostname: str) -> dict[int, str]:
    """At worker start: runs recorded on this host by a process that no longer exists.

    They need not wait for their lease: their process is provably gone.
    """
    done = {}
    for run in Run.objects.filter(status=RunStatus.RUNNING, worker__startswith=f"{hostname}:"):
        pid = run.worker.rsplit(":", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            done[run.pk] = reap_run(run, f"worker process {run.worker} is gone")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
