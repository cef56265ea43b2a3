"""Reaping: notice runs whose worker died and free what they held (AWX reaper, STYLE rule 11).

A running run renews its lease every RUN_LEASE_SECONDS/3. When a lease lapses:
- a run no worker ever claimed (stage `dispatched`) goes back to the queue: nothing ran;
- a run that started becomes `interrupted`, its account slot and state lock are freed, and
  the environment says what the user can do. Nothing is re-applied automatically.
Run by Celery beat in its own process every REAP_INTERVAL_SECONDS (`ReaperThread`, so it never
waits for a free worker process) and by every worker as it starts.

A lapsed lease means "the worker died" only if the worker could have renewed it. When the
reaper itself could not look for a while (the database was down, or beat was), the workers
could not renew either: the first pass after such a gap gives every running run a fresh
lease instead of reaping it (issue 11: a 20 s database outage turned a run whose Terraform
had finished into `interrupted`).
"""

import logging
import os
import threading
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.models import ReaperPass, Run, RunEvent, RunStage, RunStatus, SandboxAccount
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


def blind_gap() -> timedelta:
    """How long the reaper may go without a pass before it assumes it (and the workers) were
    cut off from the database: two beat intervals, and at least a third of a lease."""
    return timedelta(seconds=max(2 * settings.REAP_INTERVAL_SECONDS, settings.RUN_LEASE_SECONDS / 3))


def _extend_leases_after_gap(now) -> int | None:
    """Record this pass; after a gap, renew every running lease instead of reaping.
    Returns how many leases were extended, or None when there was no gap."""
    with transaction.atomic():
        mark, created = ReaperPass.objects.select_for_update().get_or_create(name="leases", defaults={"at": now})
        gap = None if created else now - mark.at
        mark.at = now
        mark.save(update_fields=["at"])
    if gap is None or gap <= blind_gap():
        return None
    lease = now + timedelta(seconds=settings.RUN_LEASE_SECONDS)
    expired = list(Run.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=lease).values_list("pk", flat=True))
    Run.objects.filter(pk__in=expired, status=RunStatus.RUNNING).update(lease_expires_at=lease)
    from portal.services.events import append_events

    for run_id in expired:
        append_events(run_id, [{
            "kind": RunEvent.Kind.SYSTEM, "level": "warning",
            "message": f"The reaper could not look for {gap.total_seconds():.0f}s (database or beat away): "
                       "lease renewed once so the worker can renew it itself.",
        }])
    if expired:
        log.warning("reaper: no pass for %.0fs; renewed the leases of runs %s instead of reaping", gap.total_seconds(), expired)
    return len(expired)


def reap_expired() -> dict[int, str]:
    """Every running run whose lease expired; then refill every account's free slots."""
    now = timezone.now()
    done = {}
    if _extend_leases_after_gap(now) is not None:
        return done
    for run in Run.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now):
        done[run.pk] = reap_run(run, f"lease expired at {run.lease_expires_at:%H:%M:%S} UTC")
    for account_id in SandboxAccount.objects.filter(runs__status=RunStatus.QUEUED).values_list("pk", flat=True).distinct():
        dispatch_account(account_id)
    if done:
        log.warning("reaped runs: %s", done)
    return done


class ReaperThread(threading.Thread):
    """The reaper inside Celery beat's own process (started by the `beat_init` signal).

    Reaping must not wait for a free worker process (issue 12: as a queued task it waited
    95 s behind a dead worker and 50 s behind busy ones), so beat runs it itself every
    REAP_INTERVAL_SECONDS, through database outages (it reconnects on every pass).
    """

    def __init__(self, interval: float):
        super().__init__(name="reaper", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        from django.db import Error as DatabaseFault

        from portal.services.outages import reset_connection

        log.info("reaper: running in this process every %.1fs", self.interval)
        while not self.stopped.wait(self.interval):
            try:
                reap_expired()
            except DatabaseFault as exc:
                log.warning("reaper: database unavailable (%s); next pass in %.0fs", str(exc).strip()[:200], self.interval)
                reset_connection()
            except Exception:
                log.exception("reaper pass failed")


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
