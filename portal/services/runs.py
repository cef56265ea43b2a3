"""Every state transition of a Run and every status change of an Environment, in one module.

Each transition is a compare-and-swap: `filter(pk=..., status=<expected>).update(...)`; a
result other than 1 means the race was lost and `TransitionLost` is raised instead of
overwriting someone else's move (Healthchecks `sendalerts`, STYLE rule 4). Environment status
changes happen in the same transaction as the run transition that causes them. What a
transition sets off once committed (the account's queue moves on, the GitHub issue follows)
goes through `portal.services.effects`; who is told (ready, failed, rollback failed, change
planned) is `portal.services.notifications.run_finished`, inside the same transaction, so the
Notification rows commit with the transition. A finished run keeps the stage it reached.

Must not import views, the API, Celery tasks, the queue or the GitHub mirror (they import this).
"""

import re
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.models import (
    ChangePlan,
    CidrAllocation,
    Endpoint,
    Environment,
    EnvironmentStatus,
    ListenerPriority,
    NotificationEvent,
    Run,
    RunEvent,
    RunKind,
    RunStage,
    RunStatus,
    StateLock,
    StateLockRelease,
)
from portal.models.cmdb import ENVIRONMENT_NEEDS_ATTENTION
from portal.services import effects, notifications
from portal.services.errors import TransitionLost
from portal.services.events import append_events, system_event
from provisioning.pipeline import change_summary

# Stages after which Terraform may have created something. A run whose worker is lost is
# judged by the stage its row shows, so the worker writes each stage before it starts it.
_MAY_HAVE_CREATED = {RunStage.APPLY, RunStage.OUTPUTS}
# Stages whose start the run's GitHub issue shows (it asks when resources began to change).
_STAGES_MIRRORED = {RunStage.APPLY, RunStage.DESTROY}
# What the environment is while a run of each kind is queued or running.
_ENVIRONMENT_WHILE = {
    RunKind.CREATE: EnvironmentStatus.PROVISIONING,
    RunKind.DESTROY: EnvironmentStatus.DELETING,
    RunKind.PLAN: EnvironmentStatus.PLANNING,
    RunKind.UPDATE: EnvironmentStatus.UPDATING,
}


def _lease_deadline():
    return timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS)


def _cas(run_id: int, expected: dict, **changes) -> None:
    """Update one run if it still matches `expected`, else raise TransitionLost."""
    updated = Run.objects.filter(pk=run_id, **expected).update(**changes)
    if updated != 1:
        raise TransitionLost(f"run {run_id} no longer matches {expected}")


def _set_environment(environment_id: int, status: str, reason: str = "", **extra) -> None:
    Environment.objects.filter(pk=environment_id).update(
        status=status, status_reason=reason, updated_at=timezone.now(), **extra
    )


# --- waiting -> active ----------------------------------------------------------------------


def queue_run(environment: Environment, kind: str, *, requested_by=None, pattern_version: str | None = None) -> Run:
    """Queue a run and put the environment in the status it has meanwhile (`provisioning`
    for a create, `deleting` for a destroy); the account's queue moves on after commit.

    The database refuses a second unfinished run per environment (IntegrityError): the
    caller says so in its own words.
    """
    run = Run.objects.create(
        environment=environment,
        account_id=environment.account_id,
        kind=kind,
        status=RunStatus.QUEUED,
        stage=RunStage.QUEUED,
        requested_by=requested_by,
        pattern_slug=environment.pattern_slug,
        pattern_version=pattern_version or environment.pattern_version,
        environment_status_before=environment.status,
    )
    if environment.status != _ENVIRONMENT_WHILE[kind] or environment.status_reason:
        _set_environment(environment.pk, _ENVIRONMENT_WHILE[kind])
        environment.status, environment.status_reason = _ENVIRONMENT_WHILE[kind], ""
    effects.run_changed(run.pk)
    effects.queue_moved(environment.account_id)
    return run


def dispatch_run(run_id: int) -> None:
    """queued -> running/dispatched: the run holds an account slot and a worker is asked."""
    now = timezone.now()
    _cas(
        run_id,
        {"status": RunStatus.QUEUED, "cancel_requested_at__isnull": True},
        status=RunStatus.RUNNING,
        stage=RunStage.DISPATCHED,
        dispatched_at=now,
        lease_expires_at=_lease_deadline(),
    )


def claim_run(run_id: int, worker: str) -> None:
    """running/dispatched -> running/render by exactly one worker.

    A duplicate delivery of the same task finds the stage moved on and loses here, so a run
    can never be executed twice.
    """
    _cas(
        run_id,
        {"status": RunStatus.RUNNING, "stage": RunStage.DISPATCHED},
        stage=RunStage.RENDER,
        started_at=timezone.now(),
        worker=worker,
        lease_expires_at=_lease_deadline(),
    )


def requeue_unclaimed_run(run_id: int, reason: str, *, redispatch: bool = True) -> None:
    """running/dispatched -> queued: no worker picked it up; nothing has run, so it is safe.
    `redispatch=False` (the broker refused it): leave it to the reaper's next pass rather
    than ask the broker again at once."""
    with transaction.atomic():
        run = Run.objects.get(pk=run_id)
        _cas(
            run_id,
            {"status": RunStatus.RUNNING, "stage": RunStage.DISPATCHED},
            status=RunStatus.QUEUED,
            stage=RunStage.QUEUED,
            dispatched_at=None,
            lease_expires_at=None,
        )
        system_event(run_id, f"Back in the queue: {reason}", "warning")
        if redispatch:
            effects.queue_moved(run.account_id)


# --- active bookkeeping (not status changes) -------------------------------------------------


def set_stage(run_id: int, stage: str, worker: str, at: float | None = None) -> None:
    """Move a running run to the next pipeline stage (only its own worker may).

    The "Stage: x" event is written in the same transaction, so whoever sees the new stage
    (the UI, the GitHub mirror asking when apply started) also sees its event and time
    (`at`, seconds since the epoch: when the worker reached it).
    """
    record_progress(run_id, worker, [{"stage": stage, "at": at}])


def record_progress(run_id: int, worker: str, items: list[dict], fields: dict | None = None) -> None:
    """What a running run's worker has buffered, in one transaction: `items` in order - log
    and portal lines (`{"kind", "level", "message", "data", "at"}`, see `append_events`) and
    stage changes (`{"stage", "at"}`, each written as its "Stage: x" event, the run taking the
    last one) - and run `fields` (progress, commands, plan summary). Only the run's own worker
    may, while the run is running: TransitionLost otherwise, and nothing is written.
    """
    fields = dict(fields or {})
    events, stages = [], []
    for item in items:
        if "stage" in item:
            stages.append(item["stage"])
            item = {"kind": RunEvent.Kind.STAGE, "message": f"Stage: {item['stage']}",
                    "data": {"stage": item["stage"]}, "at": item.get("at")}
        events.append(item)
    if stages:
        fields["stage"] = stages[-1]
    append_events(run_id, events, worker=worker, fields=fields)
    if _STAGES_MIRRORED.intersection(stages):
        effects.run_changed(run_id)


def renew_lease(run_id: int, worker: str) -> bool:
    """Extend the lease; False means the run is no longer ours (reaped or finished)."""
    return (
        Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker=worker).update(
            lease_expires_at=_lease_deadline()
        )
        == 1
    )


def request_cancel(run_id: int, user=None) -> str:
    """Cancel a run: a queued one is dropped at once, a running one is asked to stop.

    Returns "dropped", "requested" or "finished" (nothing to cancel any more).
    """
    with transaction.atomic():
        run = Run.objects.select_related("environment").get(pk=run_id)
        if run.status == RunStatus.QUEUED:
            _cas(
                run_id,
                {"status": RunStatus.QUEUED},
                status=RunStatus.CANCELLED,
                finished_at=timezone.now(),
                cancel_requested_at=timezone.now(),
                cancel_requested_by=user,
                explanation="Cancelled while queued; nothing ran.",
            )
            if run.kind == RunKind.CREATE:
                _finish_environment_create_not_started(run)
            else:
                _set_environment(
                    run.environment_id,
                    run.environment_status_before or EnvironmentStatus.READY,
                    "Delete cancelled before it started." if run.kind == RunKind.DESTROY
                    else f"{run.get_kind_display()} cancelled before it started; nothing changed.",
                )
            system_event(run_id, f"Cancelled while queued by {user or 'the portal'}.")
            return "dropped"
        if run.status == RunStatus.RUNNING:
            updated = Run.objects.filter(
                pk=run_id, status=RunStatus.RUNNING, cancel_requested_at__isnull=True
            ).update(cancel_requested_at=timezone.now(), cancel_requested_by=user)
            if updated:
                system_event(run_id, f"Cancel requested by {user or 'the portal'}; stopping Terraform.")
                return "requested"
            # Not updated: asked twice (still running), or the run ended meanwhile.
            still_running = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING).exists()
            return "requested" if still_running else "finished"
        return "finished"


def _finish_environment_create_not_started(run: Run) -> None:
    _release_allocations(run.environment_id)
    _set_environment(run.environment_id, EnvironmentStatus.FAILED, "Cancelled before anything was created.")


# --- active -> terminal -----------------------------------------------------------------------


def _terminal(run_id: int, status: str, *, worker: str | None, explanation: str, traceback: str = "", **extra):
    expected = {"status": RunStatus.RUNNING}
    if worker is not None:
        expected["worker"] = worker
    _cas(
        run_id,
        expected,
        status=status,
        finished_at=timezone.now(),
        lease_expires_at=None,
        explanation=explanation,
        traceback=traceback,
        state_token_hash="",
        **extra,
    )
    effects.run_changed(run_id)


def succeed_create(run: Run, worker: str, *, outputs: dict, endpoints: list[dict], late_cancel: bool = False) -> None:
    """Create applied: outputs and endpoints written, environment ready.

    Raises `EndpointTaken` (and changes nothing) when an FQDN already belongs to another
    live environment, so the caller rolls back instead. `late_cancel`: a cancel arrived
    after Terraform had finished; what was built stays, and the run says so.
    """
    with transaction.atomic():
        _record_endpoints(run.environment_id, endpoints)
        explanation = "Applied; endpoints recorded."
        _terminal(run.pk, RunStatus.SUCCEEDED, worker=worker, explanation=explanation)
        _note_late_cancel(
            run.pk, late_cancel, explanation,
            " The cancel came too late: Terraform had already finished, so nothing was stopped and the environment is ready.",
        )
        _set_environment(run.environment_id, EnvironmentStatus.READY, "", outputs=outputs)
        _release_state_lock(run, reason=f"run #{run.pk} succeeded; Terraform could not release its lock itself")
        effects.queue_moved(run.account_id)
        notifications.run_finished(run, NotificationEvent.READY)


def _note_late_cancel(run_id: int, seen_by_the_worker: bool, explanation: str, addition: str) -> None:
    """Say so on a run that succeeded although a cancel was asked for. Read after the terminal
    compare-and-swap, inside its transaction: the run row is locked by then, so a cancel is
    either already recorded here or will find the run finished (and be answered "finished")
    - none slips in between (the fault suite found one that did, read before the swap)."""
    if seen_by_the_worker or Run.objects.filter(pk=run_id, cancel_requested_at__isnull=False).exists():
        Run.objects.filter(pk=run_id).update(explanation=explanation + addition)
        system_event(run_id, "Cancel arrived too late: Terraform had already finished.", "warning")


class EndpointTaken(Exception):
    """An FQDN the pattern produced is registered to another live environment."""

    def __init__(self, fqdns):
        super().__init__(", ".join(fqdns))
        self.fqdns = fqdns


def fail_create_and_start_rollback(run: Run, worker: str, *, explanation: str) -> Run:
    """Apply failed: the create run fails and a rollback run takes over its account slot.

    One transaction, so the slot is never free in between and no queued run can jump in
    while the half-built environment is being destroyed.
    """
    with transaction.atomic():
        _terminal(run.pk, RunStatus.FAILED, worker=worker, explanation=explanation)
        # The rollback's Terraform must be able to take the lock the apply may have kept.
        _release_state_lock(run, reason=f"run #{run.pk} failed; its rollback takes over the state")
        now = timezone.now()
        rollback = Run.objects.create(
            environment_id=run.environment_id,
            account_id=run.account_id,
            kind=RunKind.ROLLBACK,
            status=RunStatus.RUNNING,
            stage=RunStage.INIT,
            rollback_of=run,
            requested_by=run.requested_by,
            pattern_slug=run.pattern_slug,
            pattern_version=run.pattern_version,
            environment_status_before=EnvironmentStatus.PROVISIONING,
            dispatched_at=now,
            started_at=now,
            worker=worker,
            lease_expires_at=_lease_deadline(),
        )
        _set_environment(run.environment_id, EnvironmentStatus.PROVISIONING, "Apply failed; rolling back.")
        system_event(run.pk, f"Apply failed; rollback run #{rollback.pk} destroys what was created.", "error")
    return rollback


def fail_run(
    run: Run,
    worker: str | None,
    *,
    explanation: str,
    status: str = RunStatus.FAILED,
    traceback: str = "",
    stage_reached: str = "",
    state_unknown: bool = False,
) -> None:
    """Any run ends unsuccessfully (failed, errored, cancelled or interrupted).

    The environment follows from the run kind and from the *stored state* (never from how
    far the run seemed to get alone, DESIGN.md durability rules):
    - create: resources stored, or stopped during/after apply -> `incomplete` (delete or
      retry); nothing stored and apply never started -> `failed`, allocations released;
    - rollback -> `rollback_failed`; destroy -> `delete_failed`; the state is kept;
    - `state_unknown`: the state Terraform ended with did not reach the portal - said so,
      never "nothing was created".
    Every reason names what the stored state lists.
    """
    stage_reached = stage_reached or run.stage
    with transaction.atomic():
        _terminal(run.pk, status, worker=worker, explanation=explanation, traceback=traceback)
        stored = _what_is_stored(run.environment_id)
        unknown = "State unknown: resources may exist that the stored state does not list. " if state_unknown else ""
        if run.kind == RunKind.CREATE:
            if state_unknown or stage_reached in _MAY_HAVE_CREATED or stored_resource_count(run.environment_id):
                _set_environment(
                    run.environment_id,
                    EnvironmentStatus.INCOMPLETE,
                    f"Create {status} during {stage_reached}. {unknown}{stored} Delete it, or retry.",
                )
            else:
                _release_allocations(run.environment_id)
                _set_environment(
                    run.environment_id,
                    EnvironmentStatus.FAILED,
                    f"Create {status} before apply; nothing was created. {stored} {explanation}",
                )
            notifications.run_finished(run, NotificationEvent.FAILED)
        elif run.kind == RunKind.PLAN:
            # A plan changes nothing: the environment is what it was before.
            _set_environment(
                run.environment_id,
                run.environment_status_before or EnvironmentStatus.READY,
                f"Planning a change {status}; nothing was changed. {explanation}",
            )
        elif run.kind == RunKind.UPDATE:
            # Never destroyed, never rolled back: what was applied stays, the state says what.
            _set_environment(
                run.environment_id,
                EnvironmentStatus.UPDATE_FAILED,
                f"Update {status} during {stage_reached}: nothing was destroyed for it and the state is kept. "
                f"{unknown}{stored} Plan the change again, or retry. {explanation}",
            )
        elif run.kind == RunKind.ROLLBACK:
            _set_environment(
                run.environment_id,
                EnvironmentStatus.ROLLBACK_FAILED,
                f"Rollback {status}: the state is kept. {unknown}{stored} {explanation}",
            )
            notifications.run_finished(run, NotificationEvent.ROLLBACK_FAILED)
        else:
            _set_environment(
                run.environment_id,
                EnvironmentStatus.DELETE_FAILED,
                f"Delete {status}: the state is kept; retry the delete. {unknown}{stored} {explanation}",
            )
        _release_state_lock(run, reason=f"run #{run.pk} ended {status}")
        effects.queue_moved(run.account_id)


def succeed_destroy(run: Run, worker: str, *, late_cancel: bool = False) -> None:
    """A destroy or rollback emptied the state: release everything, keep the rows for audit.

    Only if the stored state says so: Terraform's exit code alone is no proof that nothing
    exists (a state write may have failed). Otherwise the run fails with what is stored.
    """
    remaining = stored_resource_count(run.environment_id)
    if remaining:
        fail_run(
            run,
            worker,
            explanation=f"Terraform reported the destroy done, but the stored state still lists {remaining} resource(s).",
        )
        return
    with transaction.atomic():
        explanation = "Destroyed; the state is empty."
        _terminal(run.pk, RunStatus.SUCCEEDED, worker=worker, explanation=explanation)
        _note_late_cancel(run.pk, late_cancel, explanation, " The cancel came too late: Terraform had already finished.")
        _release_allocations(run.environment_id)
        Endpoint.objects.filter(environment_id=run.environment_id, released_at__isnull=True).update(
            released_at=timezone.now()
        )
        if run.kind == RunKind.ROLLBACK:
            _set_environment(
                run.environment_id,
                EnvironmentStatus.FAILED,
                "Apply failed and everything it created was destroyed (rolled back); the stored state is empty.",
            )
            notifications.run_finished(run, NotificationEvent.FAILED)
        else:
            _set_environment(
                run.environment_id, EnvironmentStatus.DELETED, "Destroyed; the stored state is empty.", deleted_at=timezone.now()
            )
        _release_state_lock(run, reason=f"run #{run.pk} succeeded; Terraform could not release its lock itself")
        effects.queue_moved(run.account_id)


def succeed_plan(run: Run, worker: str, *, plan_file: bytes, state_serial: int | None, resource_changes: list[dict]) -> None:
    """A change was planned: its saved plan is kept for review (the counts as the plan run's
    plan summary); the environment is as before."""
    with transaction.atomic():
        _terminal(run.pk, RunStatus.SUCCEEDED, worker=worker, explanation="Planned; nothing is applied until the plan is confirmed.",
                  plan_summary=change_summary(resource_changes))
        ChangePlan.objects.filter(plan_run_id=run.pk).update(
            plan_file=plan_file, state_serial=state_serial, resource_changes=resource_changes, planned_at=timezone.now(),
        )
        _set_environment(run.environment_id, run.environment_status_before or EnvironmentStatus.READY, "")
        _release_state_lock(run, reason=f"run #{run.pk} succeeded; Terraform could not release its lock itself")
        effects.queue_moved(run.account_id)
        notifications.run_finished(run, NotificationEvent.UPDATE_PLANNED)


def succeed_update(run: Run, worker: str, *, outputs: dict, endpoints: list[dict], late_cancel: bool = False) -> None:
    """A confirmed change was applied: the environment takes its parameters, version and code,
    and its endpoints become the ones the new outputs name.

    Raises `EndpointTaken` (and changes nothing) when a new FQDN belongs to another live
    environment; the caller then ends the update failed (what was applied stays)."""
    plan = ChangePlan.objects.get(apply_run_id=run.pk)
    with transaction.atomic():
        _record_endpoints(run.environment_id, endpoints)
        explanation = "Applied the confirmed plan; the environment runs the change."
        _terminal(run.pk, RunStatus.SUCCEEDED, worker=worker, explanation=explanation)
        _note_late_cancel(run.pk, late_cancel, explanation, " The cancel came too late: Terraform had already finished.")
        _set_environment(
            run.environment_id, EnvironmentStatus.READY, "", outputs=outputs, parameters=plan.parameters,
            pattern_version=plan.pattern_version, code_snapshot=plan.code_snapshot,
        )
        _release_state_lock(run, reason=f"run #{run.pk} succeeded; Terraform could not release its lock itself")
        effects.queue_moved(run.account_id)
        if plan.fixes_drift_id is not None:
            from portal.services.drift import queue_check

            queue_check(run.environment_id)  # so the badge says whether the fix took


def refresh_environment_reason(environment_id: int) -> None:
    """After a state was stored late (the sweeper): the reason of an environment that needs
    attention names what the stored state lists now."""
    environment = Environment.objects.filter(pk=environment_id).first()
    if environment is None or environment.status not in ENVIRONMENT_NEEDS_ATTENTION:
        return
    reason = re.sub(r"State unknown: [^.]*\. ", "", environment.status_reason)
    from portal.services.state import STORED_STATE_SENTENCE_RE

    reason = STORED_STATE_SENTENCE_RE.sub(_what_is_stored(environment_id), reason)
    _set_environment(environment_id, environment.status, reason)


def interrupt_run(run_id: int, reason: str) -> bool:
    """The worker vanished (lease expired): mark the run interrupted and free what it held.

    Nothing is re-applied automatically; the environment shows what the user can do next.
    Returns False when the run had already moved on (no-op).
    """
    with transaction.atomic():
        run = Run.objects.filter(pk=run_id).first()
        if run is None or run.status != RunStatus.RUNNING:
            return False
        try:
            fail_run(
                run,
                None,
                explanation=f"The worker stopped answering ({reason}); the run was interrupted. Nothing is re-applied automatically.",
                status=RunStatus.INTERRUPTED,
            )
        except TransitionLost:
            return False
        system_event(run_id, f"Interrupted: {reason}", "error")
    return True


# --- helpers shared by the transitions ----------------------------------------------------------

def _what_is_stored(environment_id: int) -> str:
    from portal.services.state import what_the_stored_state_says

    return what_the_stored_state_says(environment_id)


def stored_resource_count(environment_id: int) -> int:
    from portal.services.state import stored_resource_count as count

    return count(environment_id)



def _record_endpoints(environment_id: int, endpoints: list[dict]) -> None:
    """Make the environment's live endpoints exactly `endpoints` (`{fqdn, url, kind}`): new
    FQDNs recorded, kept ones updated, the rest released (rows kept for audit). Raises
    `EndpointTaken` (inside the caller's transaction, with nothing written) when a new FQDN
    belongs to another live environment: the database's unique constraint decides."""
    live = Endpoint.objects.filter(environment_id=environment_id, released_at__isnull=True)
    held = set(live.values_list("fqdn", flat=True))
    new = [e for e in endpoints if e["fqdn"] not in held]
    try:
        with transaction.atomic():
            Endpoint.objects.bulk_create(Endpoint(environment_id=environment_id, **e) for e in new)
    except IntegrityError:
        taken = [e["fqdn"] for e in new if Endpoint.objects.filter(fqdn=e["fqdn"], released_at__isnull=True).exists()]
        raise EndpointTaken(taken) from None
    for e in endpoints:
        if e["fqdn"] in held:
            live.filter(fqdn=e["fqdn"]).update(url=e["url"], kind=e["kind"])
    live.filter(fqdn__in=held - {e["fqdn"] for e in endpoints}).update(released_at=timezone.now())


def _release_allocations(environment_id: int) -> None:
    """Networks and listener-rule priorities go back to their pools (rows kept for audit)."""
    now = timezone.now()
    CidrAllocation.objects.filter(environment_id=environment_id, released_at__isnull=True).update(released_at=now)
    ListenerPriority.objects.filter(environment_id=environment_id, released_at__isnull=True).update(released_at=now)


def _release_state_lock(run: Run, *, reason: str) -> None:
    """Free a state lock a finished run still holds (Terraform normally unlocks itself)."""
    lock = StateLock.objects.filter(environment_id=run.environment_id, run_id=run.pk).first()
    if lock is None:
        return
    StateLockRelease.objects.create(
        environment_id=run.environment_id, lock_id=lock.lock_id, info=lock.info, reason=reason
    )
    lock.delete()
