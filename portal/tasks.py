"""Celery tasks: thin wrappers only.

A task loads a row by id and calls one service function; retry wiring may live here, rules
and branching live in `portal.services`. Progress is read from the Run row, never from
Celery's result backend (which only the `health` task uses).
"""

import socket

from celery import current_task, shared_task
from django.utils import timezone


@shared_task(name="portal.health", ignore_result=False)
def health() -> dict:
    """Prove that a worker picks up a message and can answer through the result backend."""
    return {
        "status": "ok",
        "worker": current_task.request.hostname or socket.gethostname(),
        "time": timezone.now().isoformat(),
    }


@shared_task(name="portal.execute_run", ignore_result=True, acks_late=False)
def execute_run(run_id: int) -> None:
    """Execute a dispatched run. Acknowledged on receipt: a redelivery could never start a
    second apply anyway (the claim is a compare-and-swap), and a message lost with a dead
    worker is recovered by the reaper from the Run row, not by the broker."""
    from portal.services.execution import execute_run as execute

    execute(run_id)


@shared_task(name="portal.reap", ignore_result=True)
def reap() -> None:
    """Periodic (Celery beat): interrupt runs whose lease expired, refill account slots."""
    from portal.services.reaper import reap_expired

    reap_expired()
