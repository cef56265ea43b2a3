"""Drift detection: do an environment's real resources still match its Terraform state?

A drift check runs a refreshing `terraform plan` on a private copy of the environment's
stored state, with the code it was built from, and reports per resource what changed outside
Terraform that Terraform would put back (`DriftCheck.resources`; why not `-refresh-only`:
`provisioning.pipeline.drift_findings`). It locks nothing and writes nothing back, so it never
stands in a user's way:

- it is not a Run: the environment stays `ready`, and a delete, change or retry may start
  while a check is running (the check then notices the state moved and reports `superseded`);
- it runs on its own Celery queue (`drift`, consumed by a worker of its own) and never takes
  an account's run slot, so a user's create never waits behind drift checks.

`schedule_due` (beat, every DRIFT_SCHEDULE_SECONDS) queues the ready environments whose
interval has passed: the product's `drift_check_hours`, else the account's, else
DRIFT_CHECK_HOURS for AWS accounts and never for `local` ones (0 = never). People can ask for a
check now (`request_check`), and `plan_fix` plans the change that undoes what a check found,
through the usual plan -> review -> confirm flow. A check whose worker died is failed by the
scheduler after DRIFT_CHECK_TIMEOUT_SECONDS; one whose message was lost is sent again.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from portal.models import DriftCheck, DriftStatus, Environment, EnvironmentStatus, SandboxAccount
from portal.services import aws_accounts, local_accounts, notifications, workdirs
from portal.services import state as state_service
from portal.services.errors import Conflict, InvalidRequest
from portal.services.github_drift import schedule_drift_mirror
from portal.services.permissions import recorded_user, require_product
from provisioning.pipeline import Pipeline
from provisioning.redact import Redactor

log = logging.getLogger(__name__)

# The task a drift check is sent as (portal/tasks.py registers it), and the queue it goes to.
DRIFT_CHECK_TASK = "portal.check_drift"
DRIFT_QUEUE = "drift"
OPEN = (DriftCheck.Status.QUEUED, DriftCheck.Status.RUNNING)
# What a check keeps of Terraform's output (the tail matters: that is where errors are).
LOG_LIMIT = 64 * 1024
BACKEND_FILE = "portal_backend.tf"

STATUS_OF = {
    DriftCheck.Status.IN_SYNC: DriftStatus.IN_SYNC,
    DriftCheck.Status.DRIFTED: DriftStatus.DRIFTED,
    DriftCheck.Status.FAILED: DriftStatus.FAILED,
}


# --------------------------------------------------------------------------------------------
# Who is due
# --------------------------------------------------------------------------------------------


def interval_hours(product, account) -> int:
    """How many hours apart this product's environments in this account are checked (0: never)."""
    if product.drift_check_hours is not None:
        return product.drift_check_hours
    if account.drift_check_hours is not None:
        return account.drift_check_hours
    return settings.DRIFT_CHECK_HOURS if account.kind == SandboxAccount.Kind.AWS else 0


def schedule_due(*, now=None, limit: int | None = None) -> list[int]:
    """Queue a check for every ready environment that is due (at most `limit`, least recently
    checked first); also fail checks whose worker died and resend ones whose message was lost.
    Returns the ids of the checks queued."""
    now = now or timezone.now()
    limit = settings.DRIFT_SCHEDULE_BATCH if limit is None else limit
    recover(now=now)
    ready = Environment.objects.filter(status=EnvironmentStatus.READY)
    pairs = ready.values_list("product_id", "account_id").distinct()
    from portal.models import Product

    products = {p.pk: p for p in Product.objects.filter(pk__in={pair[0] for pair in pairs})}
    accounts = {a.pk: a for a in SandboxAccount.objects.filter(pk__in={pair[1] for pair in pairs})}
    due = Q(pk__in=[])
    for product_id, account_id in pairs:
        hours = interval_hours(products[product_id], accounts[account_id])
        if hours <= 0:
            continue
        cutoff = now - timedelta(hours=hours)
        due |= Q(product_id=product_id, account_id=account_id) & (Q(drift_checked_at__isnull=True) | Q(drift_checked_at__lt=cutoff))
    candidates = (
        ready.filter(due).exclude(drift_checks__status__in=OPEN)
        .order_by("drift_checked_at", "id").values_list("pk", flat=True)[:limit]
    )
    return [check.pk for pk in list(candidates) if (check := _queue(pk, requested_by=None)) is not None]


def queue_check(environment_id: int) -> DriftCheck | None:
    """Queue a check now (after a fix was applied); None when one is already in flight."""
    return _queue(environment_id, requested_by=None)


def _queue(environment_id: int, *, requested_by) -> DriftCheck | None:
    try:
        with transaction.atomic():
            check = DriftCheck.objects.create(environment_id=environment_id, requested_by=requested_by)
            transaction.on_commit(lambda: _send(check.pk))
    except IntegrityError:
        return None  # one is already queued or running
    return check


def _send(check_id: int) -> None:
    try:
        current_app.send_task(DRIFT_CHECK_TASK, args=[check_id], queue=DRIFT_QUEUE)
    except Exception:  # noqa: BLE001 - the broker is away: `recover` resends it
        log.warning("drift check %s: could not reach the broker; it is sent again later", check_id, exc_info=True)


def recover(*, now=None) -> None:
    """Checks left behind: running past DRIFT_CHECK_TIMEOUT_SECONDS (its worker died: nothing
    was written, so failing it loses nothing) and queued for long (a lost message: send again)."""
    now = now or timezone.now()
    timeout = timedelta(seconds=settings.DRIFT_CHECK_TIMEOUT_SECONDS)
    stuck = DriftCheck.objects.filter(status=DriftCheck.Status.RUNNING, started_at__lt=now - timeout)
    for check in stuck:
        _finish(check, DriftCheck.Status.FAILED,
                explanation=f"The drift worker stopped answering ({check.worker}); nothing was changed - it is checked again later.")
    lost = DriftCheck.objects.filter(status=DriftCheck.Status.QUEUED, queued_at__lt=now - timedelta(seconds=settings.DRIFT_RESEND_SECONDS))
    for check_id in lost.values_list("pk", flat=True):
        _send(check_id)


# --------------------------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------------------------


def request_check(*, user, environment: Environment) -> DriftCheck:
    """Check this environment now (409 while one is in flight or it is not ready)."""
    require_product(user, environment.product, "check drift of")
    if environment.status != EnvironmentStatus.READY:
        raise Conflict(f"{environment} is {environment.get_status_display().lower()}; only a ready environment is "
                       "checked for drift.", field="environment")
    check = _queue(environment.pk, requested_by=recorded_user(user))
    if check is None:
        raise Conflict(f"{environment} already has a drift check queued or running.", field="environment")
    return check


def plan_fix(*, user, check: DriftCheck):
    """Plan the change that puts the drifted resources back as the code says (no new
    parameters, same version): the usual plan-only run, reviewed and confirmed as any change."""
    from portal.services.changes import request_change

    if check.status != DriftCheck.Status.DRIFTED:
        raise InvalidRequest(f"Drift check #{check.pk} found no drift ({check.get_status_display().lower()}); "
                             "there is nothing to fix.", field="drift_check")
    latest = check.environment.drift_checks.order_by("-queued_at", "-id").first()
    if latest is not None and latest.pk != check.pk:
        raise Conflict(f"Drift check #{check.pk} is not the environment's latest (#{latest.pk}); fix what the latest found.",
                       field="drift_check")
    return request_change(user=user, environment=check.environment, fixes_drift=check)


# --------------------------------------------------------------------------------------------
# The worker side
# --------------------------------------------------------------------------------------------


class _LogSink:
    """A pipeline sink for a check: keeps the redacted output, applies nothing."""

    def __init__(self):
        self.lines: list[str] = []

    def _add(self, line: str) -> None:
        self.lines.append(line)

    def stage(self, stage):
        self._add(f"-- {stage}")

    def event(self, event):
        text = getattr(event, "message", "") or getattr(event, "raw", "")
        if text:
            self._add(str(text))

    def note(self, message, level="info"):
        self._add(f"[{level}] {message}")

    def plan_summary(self, summary):
        pass

    def progress(self, done, planned):
        pass

    def command(self, result):
        self._add(f"$ terraform {result.step} -> exit {result.returncode} ({result.duration:.1f}s)")
        if not (result.returncode == 0) and result.stderr_tail:
            self._add(result.stderr_tail)

    def may_apply(self):
        return False  # a drift check never applies

    def recover_state(self, path: Path):
        return True  # a private copy: nothing to keep

    def text(self) -> str:
        text = "\n".join(self.lines)
        return text if len(text) <= LOG_LIMIT else "...\n" + text[-LOG_LIMIT:]


def _finish(check: DriftCheck, status: str, *, explanation: str = "", resources=None, log_text: str = "",
            only_if_running_on: str | None = None) -> bool:
    """Record a check's result and, for a real finding, the environment's badge."""
    now = timezone.now()
    with transaction.atomic():
        rows = DriftCheck.objects.filter(pk=check.pk, status__in=OPEN)
        if only_if_running_on is not None:
            rows = rows.filter(status=DriftCheck.Status.RUNNING, worker=only_if_running_on)
        if not rows.update(status=status, finished_at=now, explanation=explanation, resources=resources or [],
                           log=log_text):
            return False
        transaction.on_commit(lambda: schedule_drift_mirror(check.environment_id))  # its GitHub issue follows
        if status == DriftCheck.Status.DRIFTED:
            notifications.drift_found(check)  # before the badge moves: only becoming drifted is told
        if status in STATUS_OF:
            Environment.objects.filter(pk=check.environment_id).update(drift_status=STATUS_OF[status], drift_checked_at=now)
        elif status == DriftCheck.Status.SUPERSEDED:
            # Not a finding, but the environment was looked at: the schedule moves on.
            Environment.objects.filter(pk=check.environment_id).update(drift_checked_at=now)
    return True


def execute_check(check_id: int) -> None:
    """Claim a queued check and run it (the drift worker's task)."""
    from portal.services.execution import terraform_settings, worker_identity

    worker = worker_identity()
    claimed = DriftCheck.objects.filter(pk=check_id, status=DriftCheck.Status.QUEUED).update(
        status=DriftCheck.Status.RUNNING, started_at=timezone.now(), worker=worker
    )
    if not claimed:
        return  # already run, or failed by the scheduler
    check = DriftCheck.objects.select_related("environment__product", "environment__account").get(pk=check_id)
    environment = check.environment
    sink = _LogSink()
    workdir = workdirs.drift_folder(check.pk)
    try:
        status, explanation, resources = _check(check, environment, sink, workdir, terraform_settings())
    except Exception as exc:  # noqa: BLE001 - a bug or an infrastructure fault: a failed check
        log.exception("drift check %s errored", check.pk)
        status, explanation, resources = DriftCheck.Status.FAILED, f"The drift check hit an internal error: {exc}", []
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    _finish(check, status, explanation=explanation, resources=resources, log_text=sink.text(), only_if_running_on=worker)


def _check(check: DriftCheck, environment: Environment, sink: _LogSink, workdir: Path, tf_settings):
    if environment.status != EnvironmentStatus.READY:
        return DriftCheck.Status.SUPERSEDED, f"The environment became {environment.status} before the check ran.", []
    serial = state_service.latest_serial(environment.pk)
    latest = state_service.latest_state(environment.pk)
    if latest is None:
        return DriftCheck.Status.FAILED, "The environment has no stored state to compare with.", []
    DriftCheck.objects.filter(pk=check.pk).update(state_serial=serial)
    import json

    files = {name: text for name, text in environment.code_snapshot.items() if name != BACKEND_FILE}
    env: dict[str, str] = {}
    session_name = f"portal-drift-{check.pk}"
    redactor = Redactor()
    if environment.account.kind == SandboxAccount.Kind.AWS:
        if aws_accounts.PROVIDER_FILE in files:
            files.update(aws_accounts.drift_provider_file(environment, session_name))
        env.update(aws_accounts.terraform_env())
        guard = aws_accounts.drift_preflight(environment, session_name)
        sink.note(f"Account check: {guard.reason}", "info" if guard.ok else "error")
        if not guard.ok:
            return DriftCheck.Status.FAILED, f"The account check refused to run Terraform: {guard.reason}", []
    else:
        env.update(local_accounts.terraform_env_for(environment.pk))
    pipeline = Pipeline(
        settings=tf_settings, workdir=workdir, files=files, env=env, sink=sink, redactor=redactor,
        cancel=threading.Event(), step_timeout=settings.DRIFT_CHECK_STEP_TIMEOUT,
    )
    outcome = pipeline.check_drift(json.dumps(latest).encode("utf-8"))
    if state_service.latest_serial(environment.pk) != serial:
        return (DriftCheck.Status.SUPERSEDED,
                "The environment's state moved while it was checked (a run applied); its answer is about the past.", [])
    if not outcome.ok:
        return DriftCheck.Status.FAILED, outcome.explanation, []
    drifted = outcome.resource_changes or []
    if drifted:
        names = ", ".join(row["address"] for row in drifted[:5]) + (" ..." if len(drifted) > 5 else "")
        return DriftCheck.Status.DRIFTED, f"{len(drifted)} resource(s) changed outside Terraform: {names}", drifted
    return DriftCheck.Status.IN_SYNC, "The real resources match the state.", []
