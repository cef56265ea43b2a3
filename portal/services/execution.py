"""Executing a run on a worker: the glue between a Run row and the provisioning pipeline.

`execute_run` is what the Celery task calls. It claims the run (compare-and-swap, so a
duplicate delivery does nothing), gives Terraform per-run state credentials, streams events
into the database through `RunRecorder`, keeps the lease alive and watches for cancel on a
`Watchdog` thread, and hands the pipeline's Outcome to the transitions in `runs`.

One runner owns start / try / finally / cleanup (STYLE rule 9).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import socket
import threading
import time
import traceback
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection

from portal.models import Run, RunEvent, RunKind, RunStage, RunStatus
from portal.services import aws_accounts
from portal.services import runs as transitions
from portal.services.catalog import get_pattern
from portal.services.errors import ServiceError, TransitionLost
from portal.services.events import append_events
from provisioning.pipeline import Outcome, Pipeline
from provisioning.redact import Redactor
from provisioning.terraform import StepResult, TerraformEvent, TerraformSettings

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25
FLUSH_LINES = 200


def worker_identity() -> str:
    """host:pid, recorded on the run so a restarted worker can tell its dead runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def terraform_settings() -> TerraformSettings:
    """The Terraform configuration of this worker, from Django settings."""
    cache = settings.TERRAFORM_PLUGIN_CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    mirror = settings.TERRAFORM_PROVIDER_MIRROR
    return TerraformSettings(
        binary=settings.TERRAFORM_BIN,
        plugin_cache_dir=cache,
        provider_mirror_dir=Path(mirror) if mirror else None,
        grace_seconds=settings.TERRAFORM_GRACE_SECONDS,
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RunRecorder:
    """The pipeline's Sink: buffers events and progress and writes them in small batches.

    Thread-safe: Terraform's stdout arrives on the run's thread, stderr on a helper thread,
    and the watchdog flushes every FLUSH_SECONDS so a quiet stretch still reaches the page.
    """

    def __init__(self, run: Run, worker: str):
        self.run_id = run.pk
        self.worker = worker
        self.lock = threading.Lock()
        self.buffer: list[dict] = []
        self.progress_value: tuple[int, int] | None = None
        self.commands: list[dict] = list(run.commands or [])
        self.last_flush = time.monotonic()

    def _add(self, item: dict) -> None:
        with self.lock:
            self.buffer.append(item)
            due = len(self.buffer) >= FLUSH_LINES or time.monotonic() - self.last_flush >= FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            items, self.buffer = self.buffer, []
            progress, self.progress_value = self.progress_value, None
            self.last_flush = time.monotonic()
            if items:
                append_events(self.run_id, items)
            if progress is not None:
                Run.objects.filter(pk=self.run_id).update(resources_done=progress[0], resources_planned=progress[1])

    # -- Sink --------------------------------------------------------------------------------

    def stage(self, stage: str) -> None:
        self.flush()  # what came before the stage stays before its event
        transitions.set_stage(self.run_id, stage, self.worker)

    def event(self, event: TerraformEvent) -> None:
        data = event.data
        if data is not None:
            data = {k: v for k, v in data.items() if k not in ("@message", "@level", "@module")}
        self._add({"kind": RunEvent.Kind.LOG, "level": event.level, "message": event.message, "data": data})

    def note(self, message: str, level: str = "info") -> None:
        self._add({"kind": RunEvent.Kind.SYSTEM, "level": level, "message": message})

    def plan_summary(self, summary: dict) -> None:
        Run.objects.filter(pk=self.run_id).update(plan_summary=summary)

    def progress(self, done: int, planned: int) -> None:
        with self.lock:
            self.progress_value = (done, planned)

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
        Run.objects.filter(pk=self.run_id).update(commands=self.commands)


class Watchdog(threading.Thread):
    """Renews the run's lease, flushes the recorder, and turns a cancel request into `cancel`.

    If the lease cannot be renewed (the reaper declared the worker dead, e.g. after a long
    stall), the run is no longer ours: Terraform is stopped at once.
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

    def run(self) -> None:
        last_renew = time.monotonic()
        try:
            while not self.stopped.wait(FLUSH_SECONDS * 2):
                try:
                    self.recorder.flush()
                    if not self.cancel.is_set() and Run.objects.filter(
                        pk=self.run_id, cancel_requested_at__isnull=False
                    ).exists():
                        self.cancel.set()
                    if time.monotonic() - last_renew >= self.renew_every:
                        last_renew = time.monotonic()
                        if not transitions.renew_lease(self.run_id, self.worker):
                            self.lost = True
                            self.cancel.set()
                except Exception:  # a database hiccup must not kill the watchdog
                    log.exception("watchdog of run %s", self.run_id)
        finally:
            connection.close()

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
    workdir = Path(settings.RUN_WORKDIR_ROOT) / f"run-{run.pk}-{secrets.token_hex(4)}"
    try:
        follow_up = _execute(run, worker, workdir)
        while follow_up is not None:  # a rollback continues in the same slot and workdir
            follow_up = _execute(follow_up, worker, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _execute(run: Run, worker: str, workdir: Path) -> Run | None:
    """Run one pipeline for `run`; returns a rollback run to execute next, if any."""
    cancel = threading.Event()
    recorder = RunRecorder(run, worker)
    watchdog = Watchdog(run.pk, worker, recorder, cancel)
    redactor = Redactor()
    follow_up = None
    try:
        if run.cancel_requested_at:
            cancel.set()
        token = secrets.token_urlsafe(32)
        redactor.add(token)
        Run.objects.filter(pk=run.pk).update(state_token_hash=hash_token(token))
        env = state_backend_env(run, token)
        watchdog.start()
        recorder.note(f"Run #{run.pk} ({run.kind}) started on {worker}.")
        files = dict(run.environment.code_snapshot)
        if aws_accounts.is_aws(run):
            if aws_accounts.PROVIDER_FILE in files:  # an AWS pattern: this run's own provider file
                files.update(aws_accounts.provider_file(run))
            env.update(aws_accounts.terraform_env())
            check = aws_accounts.preflight(run)
            recorder.note(f"Account check: {check.reason}", "info" if check.ok else "error")
            if not check.ok:
                recorder.flush()
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
        )
        if run.kind == RunKind.CREATE:
            outcome = pipeline.create(get_pattern_endpoints(run))
        else:
            outcome = pipeline.destroy()
        recorder.flush()
        if watchdog.lost:
            recorder.note("This worker lost the run's lease; the reaper already ended it.", "error")
            return None
        if outcome.ok and aws_accounts.is_aws(run):
            # Before the run concludes, so whoever sees it finished also sees the check.
            _after_aws_run(run, outcome, recorder)
        follow_up = _conclude(run, worker, outcome, pipeline.current)
    except TransitionLost:
        log.warning("run %s moved on while it was being executed", run.pk)
    except Exception as exc:  # errored: a bug or an infrastructure fault, not Terraform saying no
        log.exception("run %s errored", run.pk)
        try:
            recorder.flush()
        except Exception:
            log.exception("flushing run %s", run.pk)
        stage = Run.objects.filter(pk=run.pk).values_list("stage", flat=True).first() or ""
        try:
            transitions.fail_run(
                run,
                worker,
                status=RunStatus.ERRORED,
                explanation=f"The portal hit an internal error during {stage}: {redactor.redact(str(exc))}",
                traceback=redactor.redact(traceback.format_exc()),
                stage_reached=stage,
            )
        except TransitionLost:
            pass
    finally:
        watchdog.stop()
        recorder.flush()
    return follow_up


def _after_aws_run(run: Run, outcome: Outcome, recorder: RunRecorder) -> None:
    """DNS records after a create, tagged leftovers after a destroy: reported, never fatal."""
    from provisioning.aws import AwsCheckError

    try:
        if run.kind == RunKind.CREATE:
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


def get_pattern_endpoints(run: Run):
    """Endpoint specs of the pattern version the environment was rendered from."""
    try:
        pattern = get_pattern(run.environment.pattern_slug)
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
        "TF_HTTP_RETRY_WAIT_MIN": "1",
    }


def _conclude(run: Run, worker: str, outcome: Outcome, stage: str) -> Run | None:
    """Map the pipeline's Outcome onto the run/environment transitions."""
    if run.kind == RunKind.CREATE:
        if outcome.ok:
            try:
                transitions.succeed_create(run, worker, outputs=outcome.outputs, endpoints=outcome.endpoints)
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
    elif outcome.ok:
        transitions.succeed_destroy(run, worker)
        return None
    status = RunStatus.CANCELLED if outcome.status == "cancelled" else RunStatus.FAILED
    transitions.fail_run(run, worker, status=status, explanation=outcome.explanation, stage_reached=outcome.stage or stage)
    return None
