"""Append-only run events. One writer at a time per run, serialised on the run row."""

from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from portal.models import Run, RunEvent, RunStatus
from portal.services.errors import TransitionLost

MAX_MESSAGE = 8000


def append_events(run_id: int, items: list[dict], *, worker: str | None = None, fields: dict | None = None) -> int:
    """Append events `{"kind", "level", "message", "data", "at"}` with consecutive seq numbers
    (`at`: when it happened, seconds since the epoch; now when absent), and set the run's
    `fields` in the same statement that moves its last seq.

    The run row is locked while seqs are taken, so the worker's log stream and a person's
    "cancel requested" note never collide. Returns the last seq written. With `worker`, the
    events are written only while that worker still owns the running run (a reaped worker
    cannot write into an interrupted run): TransitionLost otherwise, and nothing is written.
    One lock, one insert and one update, whatever the batch holds.
    """
    if not items and not fields:
        return 0
    with transaction.atomic():
        last, status, owner = (
            Run.objects.select_for_update().values_list("last_event_seq", "status", "worker").get(pk=run_id)
        )
        if worker is not None and (status != RunStatus.RUNNING or owner != worker):
            raise TransitionLost(f"run {run_id} is no longer running on {worker}")
        changes = dict(fields or {})
        if items:
            RunEvent.objects.bulk_create(
                event_row(run_id, last + offset, item) for offset, item in enumerate(items, start=1)
            )
            changes["last_event_seq"] = last + len(items)
        Run.objects.filter(pk=run_id).update(**changes)
    return last + len(items)


def event_row(run_id: int, seq: int, item: dict) -> RunEvent:
    """The RunEvent of one buffered item (not saved)."""
    return RunEvent(
        run_id=run_id,
        seq=seq,
        kind=item.get("kind", RunEvent.Kind.LOG),
        level=item.get("level", "info"),
        message=str(item.get("message", ""))[:MAX_MESSAGE],
        data=item.get("data"),
        created_at=datetime.fromtimestamp(item["at"], tz=UTC) if item.get("at") else timezone.now(),
    )


def system_event(run_id: int, message: str, level: str = "info") -> int:
    """One line from the portal itself (not Terraform) in a run's log."""
    return append_events(run_id, [{"kind": RunEvent.Kind.SYSTEM, "level": level, "message": message}])
