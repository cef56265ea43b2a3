"""Executing a run on a worker: the glue between a Run row and the provisioning pipeline.

`execute_run` is what the Celery task calls. It claims the run (compare-and-swap, so a
duplicate delivery does nothing), gives Terraform per-run state credentials, streams events
into the database through `RunRecorder`, keeps the lease alive and watches for cancel on a
`Watchdog` thread, and hands the pipeline's Outcome to the transitions in `runs`.

Durability (DESIGN.md): nothing the database does can make this module stop a running
Terraform. Writes that fail are kept and retried; the conclusion waits for the database; the
run folder is removed only when no state in it is unstored (`workdirs`).

One runner owns start / try / finally / cleanup (STYLE rule 9).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
from pathlib import Path

import jinja2
from django.conf import settings
from django.db import Error as DatabaseFault
from django.db import close_old_connections

from portal.models import ChangePlan, Run, RunEvent, RunKind, RunStage, RunStatus
from portal.models.runs import ENDPOINT_KINDS, TEARDOWN_KINDS
from portal.services import aws_accounts, credentials, local_accounts, workdirs
from portal.services import runs as transitions
from portal.services import state as state_service
from portal.services.catalog import get_pattern
from portal.services.errors import ServiceError, TransitionLost
from portal.services.outages import Outage, reset_connection
from portal.services.preflight import planned_fqdns
from provisioning.pipeline import Outcome, Pipeline, planned_completions
from provisioning.redact import Redactor
from provisioning.terraform import StepResult, TerraformEvent, TerraformSettings

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25


def worker_identity() -> str:
    """host:pid, recorded on the run so a restarted worker can tell its dead runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _new_fqdns(run) -> list[str]:
    """What a create that has made nothing yet is about to add to the zone (its pattern's
    `fqdn` templates); nothing for other runs, whose records may rightly exist."""
    environment = run.environment
    if run.kind != RunKind.CREATE or transitions.stored_resource_count(environment.pk):
        return []
    try:
        pattern = get_pattern(environment.pattern_slug, environment.pattern_version)
    except ServiceError:
        return []
    try:
        return planned_fqdns(pattern, name=environment.name, product_slug=environment.product.slug,
                             account=run.account, parameters=environment.parameters)
    except (jinja2.TemplateError, TypeError, ValueError):
        return []  # parameters of an older pattern version: the outputs step still guards


def terraform_settings() -> TerraformSettings:
    """The Terraform configuration of this worker, from Django settings.

    With a provider mirror, providers come from it alone and no shared cache is written: an
    unpacked mirror is linked into each run's `.terraform/`, read-only. Without one, the
    plugin cache (shared by the worker's runs, `init` serialised on its flock)."""
    mirror = settings.TERRAFORM_PROVIDER_MIRROR
    cache = None if mirror else settings.TERRAFORM_PLUGIN_CACHE_DIR
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    return TerraformSettings(
        binary=settings.TERRAFORM_BIN,
        plugin_cache_dir=cache,
        provider_mirror_dir=Path(mirror) if mirror else None,
        grace_seconds=settings.TERRAFORM_GRACE_SECONDS,
        backend_metadata_dir=settings.TERRAFORM_BACKEND_METADATA_DIR,
    )


class RunRecorder:
    """The pipeline's Sink: buffers events, stages and run fields and writes them in order.

    Nothing the database does reaches Terraform through here (issue 11: an OperationalError
    raised in the event callback made the runner kill Terraform mid-apply). While the
    database is away, everything is kept - in memory, then spilled to a file in the run
    folder past MEMORY_ITEMS - and written in order once it is back: event numbers keep no
    gaps. Every write is guarded by this worker still owning the running run; once it does
    not (reaped, ended by someone else), `lost` is set and nothing more is written.

    Thread-safe: Terraform's stdout arrives on the run's thread, stderr on a helper thread;
    only the pipeline thread (between steps) and the watchdog talk to the database.
    """

    MEMORY_ITEMS = 5000
    EVENTS_PER_WRITE = 500

    def __init__(self, run: Run, worker: str, spill_path: Path):
        self.run_id = run.pk
        self.environment_id = run.environment_id
        self.worker = worker
        self.lock = threading.Lock()  # the buffers
        self.write_lock = threading.Lock()  # one writer at a time
        self.items: list[dict] = []  # oldest first; {"stage": ...} or an event
        self.spill_path = spill_path
        self.spilled = 0  # items in the spill file, all newer than those in memory
        self.fields: dict = {}  # Run columns to update, newest value wins
        self.commands: list[dict] = list(run.commands or [])
        self.row_stage = run.stage  # the stage the run's row is known to hold
        self.lost = False
        self.outage = Outage(f"run {run.pk}: the database", "keeping what cannot be written")

    # -- buffering ---------------------------------------------------------------------------

    def _add(self, item: dict) -> None:
        item["at"] = time.time()  # when it happened, whenever it is written
        with self.lock:
            if self.lost:
                return
            if self.spilled or len(self.items) >= self.MEMORY_ITEMS:
                self.spill_path.parent.mkdir(parents=True, exist_ok=True)
                with self.spill_path.open("a", encoding="utf-8") as spill:
                    spill.write(json.dumps(item) + "\n")
                self.spilled += 1
            else:
                self.items.append(item)

    def _set_fields(self, **fields) -> None:
        with self.lock:
            self.fields.update(fields)

    def _unspill(self) -> None:
        """Under `lock`, with memory empty: the spilled items come back in order."""
        with self.spill_path.open(encoding="utf-8") as spill:
            self.items = [json.loads(line) for line in spill if line.strip()]
        self.spill_path.unlink()
        self.spilled = 0

    @property
    def pending(self) -> int:
        with self.lock:
            return len(self.items) + self.spilled

    # -- writing -----------------------------------------------------------------------------

    def flush(self) -> bool:
        """Write what is buffered, in order; True when nothing is left. Never raises for the
        database: on an error the rest stays buffered for the next call."""
        with self.write_lock:
            try:
                self._write_all()
            except TransitionLost:
                self._lose()
                return False
            except DatabaseFault as exc:
                self.outage.failed(exc)
                reset_connection()
                return False
            self.outage.succeeded()
            return True

    def _write_all(self) -> None:
        """Everything buffered, oldest first, in batches of EVENTS_PER_WRITE items, each one
        transaction (`record_progress`); the run fields go with the last batch."""
        while True:
            with self.lock:
                if self.lost:
                    raise TransitionLost(f"run {self.run_id} is no longer ours")
                if not self.items and self.spilled:
                    self._unspill()
                head = self.items[: self.EVENTS_PER_WRITE]
                last_batch = len(self.items) <= self.EVENTS_PER_WRITE and not self.spilled
                fields = dict(self.fields) if last_batch else {}
            if not head and not fields:
                return
            transitions.record_progress(self.run_id, self.worker, head, fields)
            with self.lock:
                del self.items[: len(head)]
                for name, value in fields.items():
                    if self.fields.get(name) is value:
                        del self.fields[name]
            if last_batch:
                return

    def _lose(self) -> None:
        with self.lock:
            if not self.lost:
                log.warning("run %s is no longer running on %s; dropping %s buffered item(s)", self.run_id, self.worker, len(self.items) + self.spilled)
            self.lost = True
            self.items = []
            self.fields = {}
            self.spilled = 0
            self.spill_path.unlink(missing_ok=True)

    # -- Sink --------------------------------------------------------------------------------

    def stage(self, stage: str) -> None:
        self._add({"stage": stage})  # the stage and its event, in order with the log
        if stage != self.row_stage:
            # Written before the stage starts: a lost worker's run is judged by its row's
            # stage. The row already holds `render` once claimed, so that stage's event goes
            # with the next write (one transaction less between a claim and Terraform).
            self.row_stage = stage
            self.flush()

    def event(self, event: TerraformEvent) -> None:
        data = event.data
        if data is not None:
            data = {k: v for k, v in data.items() if k not in ("@message", "@level", "@module")}
        self._add({"kind": RunEvent.Kind.LOG, "level": event.level, "message": event.message, "data": data})

    def note(self, message: str, level: str = "info") -> None:
        self._add({"kind": RunEvent.Kind.SYSTEM, "level": level, "message": message})

    def plan_summary(self, summary: dict) -> None:
        self._set_fields(plan_summary=summary)  # written by may_apply's flush, or the conclusion's

    def progress(self, done: int, planned: int) -> None:
        self._set_fields(resources_done=done, resources_planned=planned)

    def command(self, result: StepResult) -> None:
        self.commands.append(
            {
                "step": result.step,
                "started_at": round(time.time() - result.duration, 3),
                "argv": result.argv,
                "cwd": result.cwd,
                "env": result.env,
                "returncode": result.returncode,
                "pid": result.pid,
                "duration": round(result.duration, 3),
                "cancelled": result.cancelled,
                "timed_out": result.timed_out,
            }
        )
        self._set_fields(commands=list(self.commands))
        self.flush()

    def may_apply(self) -> bool:
        """Right before apply: the database says no cancel was asked for and the run is ours.
        Waits for a database that is away (up to the step timeout): applying without knowing
        could apply what a person cancelled."""
        deadline = time.monotonic() + settings.TERRAFORM_STEP_TIMEOUT
        while True:
            if self.flush():
                try:
                    row = (
                        Run.objects.filter(pk=self.run_id, status=RunStatus.RUNNING, worker=self.worker)
                        .values("cancel_requested_at")
                        .first()
                    )
                except DatabaseFault as exc:
                    self.outage.failed(exc)
                    reset_connection()
                else:
                    if row is None:
                        self._lose()
                        return False
                    return row["cancel_requested_at"] is None
            elif self.lost:
                return False
            if time.monotonic() >= deadline:
                self.note("The database could not be asked whether the run was cancelled; apply not started.", "error")
                return False
            time.sleep(1.0)

    def recover_state(self, path: Path) -> bool:
        """Store the state Terraform could not write (see `state.recover_state`), retrying
        while the database is away for up to STATE_RECOVERY_WAIT_SECONDS."""
        body = path.read_bytes()
        source = f"{socket.gethostname()}:{path}"
        try:
            version = _until_database_answers(
                lambda: state_service.recover_state(self.environment_id, self.run_id, body, source=source)
            )
        except state_service.RecoveryRefused as exc:
            self.note(f"The state Terraform left could not be stored: {exc}. It stays in {path}.", "error")
            return False
        except DatabaseFault:
            log.error("run %s: state in %s not stored after %ss; the folder is kept", self.run_id, path, settings.STATE_RECOVERY_WAIT_SECONDS)
            return False
        if version is not None:
            self.note(f"Stored the state Terraform left (serial {version.serial}, {version.resource_count} resource(s)) as a recovered version.", "warning")
        return True


class Watchdog(threading.Thread):
    """Flushes the recorder, renews the run's lease and turns a cancel request into `cancel`.

    A database outage stops none of it for good: the connection is re-opened on every try,
    and the lease is renewed at once when the database is back. Only a definite answer -
    the run is no longer running on this worker (the reaper ended it, or someone else did) -
    makes it stop Terraform, gracefully, as a cancel does: the portal already considers this
    worker lost and may have let another run take the state.
    """

    def __init__(self, run_id: int, worker: str, recorder: RunRecorder, cancel: threading.Event):
        super().__init__(name=f"run-{run_id}-watchdog", daemon=True)
        self.run_id = run_id
        self.worker = worker
        self.recorder = recorder
        self.cancel = cancel
        self.stopped = threading.Event()
        self.lost = False
        self.renew_every = max(1.0, settings.RUN_LEASE_SECONDS / 3)
        self.outage = Outage(f"watchdog of run {run_id}: the database", "the lease is renewed once it is back")

    def run(self) -> None:
        last_renew = time.monotonic()
        try:
            while not self.stopped.wait(FLUSH_SECONDS * 2):
                try:
                    self.recorder.flush()
                    if self.recorder.lost:
                        self._lose("its events could no longer be written")
                        continue
                    if not self.cancel.is_set() and Run.objects.filter(
                        pk=self.run_id, cancel_requested_at__isnull=False
                    ).exists():
                        self.cancel.set()
                    back = self.outage.succeeded()
                    if back or time.monotonic() - last_renew >= self.renew_every:
                        if not transitions.renew_lease(self.run_id, self.worker):
                            self._lose("its lease could not be renewed")
                        last_renew = time.monotonic()
                except DatabaseFault as exc:
                    self.outage.failed(exc)
                    reset_connection()
                except Exception:  # a bug here must not end the watchdog (or the run)
                    log.exception("watchdog of run %s", self.run_id)
        finally:
            reset_connection()

    def _lose(self, why: str) -> None:
        if not self.lost:
            log.error("run %s is no longer running on %s (%s); stopping Terraform gracefully", self.run_id, self.worker, why)
        self.lost = True
        self.cancel.set()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def execute_run(run_id: int, worker: str | None = None) -> None:
    """Claim and execute one dispatched run (the Celery task's whole body)."""
    worker = worker or worker_identity()
    close_old_connections()
    try:
        transitions.claim_run(run_id, worker)
    except TransitionLost:
        log.info("run %s was not waiting for a worker (duplicate delivery, cancelled or reaped)", run_id)
        return
    run = Run.objects.select_related("environment", "environment__product", "account").get(pk=run_id)
    workdir = workdirs.new_folder(run.pk)
    try:
        follow_up = _execute(run, worker, workdir)
        while follow_up is not None:  # a rollback continues in the same slot and workdir
            follow_up = _execute(follow_up, worker, workdir)
    finally:
        workdirs.remove_if_safe(workdir)
        workdirs.sweep_quietly()


def _execute(run: Run, worker: str, workdir: Path) -> Run | None:
    """Run one pipeline for `run`; returns a rollback run to execute next, if any."""
    cancel = threading.Event()
    recorder = RunRecorder(run, worker, workdirs.spill_file(workdir, run.pk))
    watchdog = Watchdog(run.pk, worker, recorder, cancel)
    redactor = Redactor()
    try:
        if run.cancel_requested_at:
            cancel.set()
        token = credentials.new_secret()
        redactor.add(token)
        if not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, worker=worker).update(state_token_hash=credentials.digest(token)):
            raise TransitionLost(f"run {run.pk} is no longer running on {worker}")
        env = state_backend_env(run, token)
        watchdog.start()
        recorder.note(f"Run #{run.pk} ({run.kind}) started on {worker}.")
        change = _change_plan_of(run)
        files = dict(change.code_snapshot if change is not None else run.environment.code_snapshot)
        if local_accounts.is_local(run):
            env.update(local_accounts.terraform_env(run))
        if aws_accounts.is_aws(run):
            if aws_accounts.PROVIDER_FILE in files:  # an AWS pattern: this run's own provider file
                files.update(aws_accounts.provider_file(run))
            env.update(aws_accounts.terraform_env())
            check = aws_accounts.preflight(run, _new_fqdns(run))
            recorder.note(f"Account check: {check.reason}", "info" if check.ok else "error")
            if not check.ok:
                recorder.flush()
                watchdog.stop()
                transitions.fail_run(
                    run,
                    worker,
                    explanation=f"The account check refused to run Terraform: {check.reason}",
                    stage_reached=RunStage.RENDER,
                )
                return None
        pipeline = Pipeline(
            settings=terraform_settings(),
            workdir=workdir,
            files=files,
            env=env,
            sink=recorder,
            redactor=redactor,
            cancel=cancel,
            step_timeout=settings.TERRAFORM_STEP_TIMEOUT,
            max_state_bytes=settings.STATE_MAX_BYTES,
            state_backend_wait=settings.STATE_BACKEND_WAIT_SECONDS,
            destroy_retries=settings.DESTROY_RETRIES,
            destroy_retry_seconds=settings.DESTROY_RETRY_SECONDS,
            run_id=run.pk,
        )
        if run.kind == RunKind.CREATE:
            outcome = pipeline.create(get_pattern_endpoints(run))
        elif run.kind == RunKind.PLAN:
            outcome = pipeline.plan_change()
        elif run.kind == RunKind.UPDATE:
            outcome = pipeline.apply_change(bytes(change.plan_file), planned_completions(change.summary), get_pattern_endpoints(run))
        else:
            outcome = pipeline.destroy()
        if watchdog.lost or recorder.lost:
            log.error("run %s: this worker lost the run; the reaper (or someone) already ended it", run.pk)
            return None
        if outcome.ok and aws_accounts.is_aws(run):
            # Before the run concludes, so whoever sees it finished also sees the check.
            _after_aws_run(run, outcome, recorder)
        if outcome.ok and local_accounts.is_local(run) and run.kind in TEARDOWN_KINDS:
            _until_database_answers(lambda: _after_local_destroy(run, recorder))
        _wait_for_database(recorder)
        follow_up = _until_database_answers(lambda: _conclude(run, worker, outcome, pipeline.current))
        watchdog.stop()
        return follow_up
    except TransitionLost:
        log.warning("run %s moved on while it was being executed", run.pk)
    except Exception as exc:  # errored: a bug or an infrastructure fault, not Terraform saying no
        log.exception("run %s errored", run.pk)
        recorder.flush()
        try:
            stage = _until_database_answers(
                lambda: Run.objects.filter(pk=run.pk).values_list("stage", flat=True).first() or ""
            )
            _until_database_answers(
                lambda: transitions.fail_run(
                    run,
                    worker,
                    status=RunStatus.ERRORED,
                    explanation=f"The portal hit an internal error during {stage}: {redactor.redact(str(exc))}",
                    traceback=redactor.redact(traceback.format_exc()),
                    stage_reached=stage,
                )
            )
        except TransitionLost:
            pass
        except Exception:
            log.exception("run %s: recording the error failed; the reaper will end it", run.pk)
    finally:
        watchdog.stop()
        recorder.flush()
    return None


def _wait_for_database(recorder: RunRecorder) -> None:
    """Before a run concludes, everything it logged is written (the end comes last)."""
    deadline = time.monotonic() + settings.STATE_RECOVERY_WAIT_SECONDS
    while not recorder.flush() and not recorder.lost and time.monotonic() < deadline:
        time.sleep(1.0)


def _until_database_answers(call, wait: float | None = None):
    """Call `call` until it does not fail for the database (up to STATE_RECOVERY_WAIT_SECONDS).
    Transitions are compare-and-swap updates, so a retry after an unknown outcome is safe:
    if the first try committed, the retry raises TransitionLost."""
    deadline = time.monotonic() + (settings.STATE_RECOVERY_WAIT_SECONDS if wait is None else wait)
    while True:
        try:
            return call()
        except DatabaseFault:
            reset_connection()
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def _after_aws_run(run: Run, outcome: Outcome, recorder: RunRecorder) -> None:
    """DNS records after a create or an update, tagged leftovers after a destroy or a rollback
    (never after a plan, nor after runs that leave the environment standing): reported, never fatal."""
    from provisioning.aws.checks import AwsCheckError

    try:
        if run.kind == RunKind.PLAN:
            return
        if run.kind in ENDPOINT_KINDS:
            check = aws_accounts.check_endpoints(run, [e["fqdn"] for e in outcome.endpoints])
            recorder.note(f"DNS check: {check.reason}", "info" if check.ok else "warning")
        else:
            orphans = aws_accounts.record_orphans(run)
            if orphans:
                recorder.note(
                    f"{len(orphans)} resource(s) still carry this environment's tag: "
                    + ", ".join(o["arn"] for o in orphans[:10]),
                    "warning",
                )
            else:
                recorder.note("No resource carries this environment's tag any more.")
    except AwsCheckError as exc:
        recorder.note(f"The post-run AWS check could not complete: {exc}", "warning")
    recorder.flush()


def _after_local_destroy(run: Run, recorder: RunRecorder) -> None:
    """The offline cloud's orphan report: footprints of resources still there after destroy."""
    orphans = local_accounts.record_orphans(run)
    if orphans:
        recorder.note(
            f"{len(orphans)} resource(s) of this environment still exist: " + ", ".join(o["arn"] for o in orphans[:10]),
            "warning",
        )
    else:
        recorder.note("No resource of this environment exists any more.")
    recorder.flush()


def _change_plan_of(run: Run) -> ChangePlan | None:
    """The change plan a plan run makes or an update run applies (None for other kinds)."""
    if run.kind == RunKind.PLAN:
        return ChangePlan.objects.get(plan_run_id=run.pk)
    if run.kind == RunKind.UPDATE:
        return ChangePlan.objects.get(apply_run_id=run.pk)
    return None


def get_pattern_endpoints(run: Run):
    """Endpoint specs of the pattern version the run renders (an update's target version)."""
    try:
        pattern = get_pattern(run.environment.pattern_slug, run.pattern_version)
    except ServiceError:
        return ()
    return pattern.endpoints


def state_backend_env(run: Run, token: str) -> dict[str, str]:
    """Terraform's http-backend settings for this run: per-run credentials, env only."""
    address = f"{settings.PORTAL_URL}/state/{run.environment_id}/"
    return {
        "TF_HTTP_ADDRESS": address,
        "TF_HTTP_LOCK_ADDRESS": address,
        "TF_HTTP_UNLOCK_ADDRESS": address,
        "TF_HTTP_USERNAME": f"run-{run.pk}",
        "TF_HTTP_PASSWORD": token,
        # Ride out an unreachable web server or database (the endpoint answers 503 then):
        # with 1 s doubling up to RETRY_WAIT_MAX, the default 24 retries span about 2 minutes.
        "TF_HTTP_RETRY_MAX": str(settings.STATE_BACKEND_RETRY_MAX),
        "TF_HTTP_RETRY_WAIT_MIN": "1",
        "TF_HTTP_RETRY_WAIT_MAX": str(settings.STATE_BACKEND_RETRY_WAIT_MAX),
    }


def _conclude(run: Run, worker: str, outcome: Outcome, stage: str) -> Run | None:
    """Map the pipeline's Outcome onto the run/environment transitions."""
    if outcome.state_unknown:
        transitions.fail_run(
            run, worker, explanation=outcome.explanation, stage_reached=outcome.stage or stage, state_unknown=True
        )
        return None
    if run.kind == RunKind.CREATE:
        if outcome.ok:
            try:
                transitions.succeed_create(
                    run, worker, outputs=outcome.outputs, endpoints=outcome.endpoints, late_cancel=outcome.late_cancel
                )
                return None
            except transitions.EndpointTaken as exc:
                outcome = Outcome(
                    "failed",
                    "outputs",
                    f"The FQDN {', '.join(exc.fqdns)} already belongs to another environment.",
                    apply_failed=True,
                )
        if outcome.apply_failed:
            return transitions.fail_create_and_start_rollback(run, worker, explanation=outcome.explanation)
    elif run.kind == RunKind.PLAN and outcome.ok:
        transitions.succeed_plan(
            run, worker, plan_file=outcome.plan_file, state_serial=state_service.latest_serial(run.environment_id),
            resource_changes=outcome.resource_changes,
        )
        return None
    elif run.kind == RunKind.UPDATE and outcome.ok:
        try:
            transitions.succeed_update(
                run, worker, outputs=outcome.outputs, endpoints=outcome.endpoints, late_cancel=outcome.late_cancel
            )
            return None
        except transitions.EndpointTaken as exc:
            outcome = Outcome(
                "failed", "outputs", f"Applied, but the FQDN {', '.join(exc.fqdns)} already belongs to another environment."
            )
    elif run.kind in (RunKind.PLAN, RunKind.UPDATE):
        pass  # failed or cancelled: fail_run below knows what each kind leaves
    elif outcome.ok:
        transitions.succeed_destroy(run, worker, late_cancel=outcome.late_cancel)
        return None
    status = RunStatus.CANCELLED if outcome.status == "cancelled" else RunStatus.FAILED
    transitions.fail_run(run, worker, status=status, explanation=outcome.explanation, stage_reached=outcome.stage or stage)
    return None
