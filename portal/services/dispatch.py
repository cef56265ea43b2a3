"""The per-account FIFO queue: promote queued runs into free account slots.

At most `max_concurrent_runs` runs of an account are active; the rest wait in the database
(not the broker), oldest first. Called on commit of every new run and of every run that
frees a slot, so the next run starts without a polling delay; the reaper calls it too as a
safety net. No worker slot is spent waiting: a worker only gets a run that already holds a slot.
"""

import logging

from celery import current_app
from django.db import transaction
from django.db.models import Q

from portal.models import Run, RunStatus, SandboxAccount
from portal.services import runs as transitions
from portal.services.errors import TransitionLost
from portal.services.outages import Outage

log = logging.getLogger(__name__)

# The task a dispatched run is sent as (portal/tasks.py registers it under this name); sent
# by name so that services never import the tasks module, which imports services.
EXECUTE_RUN_TASK = "portal.execute_run"


def dispatch_account(account_id: int) -> list[int]:
    """Fill the account's free slots from its queue; returns the ids of the runs dispatched."""
    promoted: list[int] = []
    with transaction.atomic():
        # The account row lock serialises dispatchers of one account (different accounts
        # dispatch in parallel); on SQLite the IMMEDIATE transaction does the same.
        account = SandboxAccount.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            return []
        active = Run.objects.filter(account_id=account_id, status=RunStatus.RUNNING).count()
        free = account.max_concurrent_runs - active
        if free <= 0:
            return []
        waiting = (
            Run.objects.filter(account_id=account_id, status=RunStatus.QUEUED, cancel_requested_at__isnull=True)
            .order_by("queued_at", "id")
            .values_list("pk", flat=True)[:free]
        )
        for run_id in waiting:
            try:
                transitions.dispatch_run(run_id)
            except TransitionLost:
                continue
            promoted.append(run_id)
        if promoted:
            transaction.on_commit(lambda: _send(promoted))
    return promoted


# Shared by every dispatcher in this process: the broker is one.
_broker_outage = Outage(
    "the broker", "runs wait in the queue and are dispatched again once it is back (every reaper pass)",
    level=logging.ERROR,
)


def _send(run_ids: list[int]) -> None:
    """Ask a worker for each dispatched run. Runs after commit, inside whatever request or
    run committed: it never raises. A run the broker refused goes back to the queue (nothing
    ran), and the reaper's next pass dispatches it again - so a request answers 202 with its
    run queued while the broker is down (issue 12: it answered 500 although it was committed)."""
    for index, run_id in enumerate(run_ids):
        try:
            current_app.send_task(EXECUTE_RUN_TASK, args=(run_id,))
        except Exception as exc:  # kombu OperationalError, ConnectionError, ... whatever the broker says
            _broker_outage.failed(exc)
            for unsent in run_ids[index:]:
                try:
                    transitions.requeue_unclaimed_run(
                        unsent, "the broker could not be reached; dispatched again when it is back", redispatch=False
                    )
                except TransitionLost:
                    pass  # a worker got an earlier copy after all, or it was cancelled
                except Exception:
                    log.exception("run %s: could not put it back in the queue; the reaper will", unsent)
            return
        _broker_outage.succeeded()


def queue_position(run: Run) -> int | None:
    """1-based place of a queued run in its account's queue; None when not waiting."""
    if run.status != RunStatus.QUEUED:
        return None
    # The dispatcher's order (queued_at, id), counted in one query.
    ahead = Run.objects.filter(account_id=run.account_id, status=RunStatus.QUEUED).filter(
        Q(queued_at__lt=run.queued_at) | Q(queued_at=run.queued_at, pk__lt=run.pk)
    )
    return ahead.count() + 1
