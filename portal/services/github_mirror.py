"""The GitHub audit trail (issue 8): every create/delete request becomes a GitHub issue, and the
rendered Terraform code of the environment is committed to the provisioning repository.

`schedule_mirror(run_id)` is called on commit of every run transition worth mirroring
(`portal.services.runs._mirror`). It only enqueues the `portal.mirror_run` task and never
raises: GitHub being down, slow or rate-limited must never delay or fail provisioning.

`sync_run(run_id)` (what the task calls) is idempotent. It reads the request run (a rollback run
maps to the create run it rolls back) and its `GitHubMirror` row, and does only what is
missing, in this order, saving the row after EACH successful call so a crash or an outage
never makes it repeat a call that already succeeded:

    create:  issue -> code commit -> "queued" -> "apply" -> "result" -> "rollback" -> close
    destroy: issue -> "queued" -> "destroy" -> removal commit (destroyed only) -> "result" -> close
    change:  issue -> "planned" -> "confirmed" -> "apply" -> "result" -> code commit (applied only) -> close
             issue -> "planned" -> "not_applied" -> close   (a plan that went stale unconfirmed)

A change (day two) is one issue per change plan: its plan-only run is the request run and
the update run that applies the confirmed plan maps to it, as a rollback maps to its create.
The "planned" comment is the per-resource plan (or why planning failed); the code commit is
the plan's rendered code, to the path the create committed to, so the repository holds what
runs. No transition happens when an unconfirmed plan goes stale (by age, or because another
run came after it): `catch_up_stale` revisits open plan issues, and the next pass says the
plan was not applied and closes the issue.

A step is done when it is recorded on the row (`issue_number`, `closed`, or its key in
`milestones`; the commit steps are the key "code"). Steps appear only once the run reached
them, so each pass posts what happened since the last one.

Writes whose outcome is unknown (a timeout, a 5xx after GitHub acted, a worker killed
mid-call) are not repeated blindly: every issue and comment carries a hidden marker, the
issue is looked up by its marker before one is opened, and after a failed pass the comments
are read back before any is posted again. Commits are idempotent by content.

Failures are recorded on the row (`last_error`, redacted; `attempts` counts failed passes)
for the UI and the API, and as a run event when a streak of failures starts or ends.
`last_error` is empty whenever the latest pass succeeded.

Must not import views, the API or Celery tasks at module level.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timezone as dt_timezone
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone

from portal.models import ChangePlan, Environment, EnvironmentStatus, GitHubMirror, Run, RunEvent, RunKind, RunStage, RunStatus
from portal.models.runs import TERMINAL, UNFINISHED
from portal.services.changes import stale_reason
from portal.services.events import system_event
from provisioning.locks import exclusive_lock
from provisioning.github import GitHubError, GitHubMirrorClient, RateLimited
from provisioning.redact import Redactor

log = logging.getLogger(__name__)

# The task that runs `sync_run` (portal/tasks.py registers it under this name); sent by name
# so that services never import the tasks module, which imports services.
MIRROR_RUN_TASK = "portal.mirror_run"

__all__ = ["MirrorBusy", "RateLimited", "GitHubError", "is_enabled", "schedule_mirror", "sync_run"]

ISSUE_LABELS = {
    RunKind.CREATE: ("portal", "create"),
    RunKind.DESTROY: ("portal", "delete"),
    RunKind.PLAN: ("portal", "change"),
}
# The runs mirrored on the issue of another run: a rollback on its create's, an update on
# its change plan's (the plan-only run's).
MAPPED_KINDS = (RunKind.ROLLBACK, RunKind.UPDATE)
# A plan comment lists at most this many resources (a comment holds 65536 characters).
MAX_PLAN_ROWS = 200
LOOKUP_LABELS = ("portal",)
# One pass rechecks the run after its work, so a transition that happened meanwhile (and whose
# own task found this pass holding the lock) is not left for later; bounded, to stay short.
MAX_ROUNDS = 4
# Postgres advisory-lock namespace ("GH") for one sync pass per request run at a time.
LOCK_NAMESPACE = 0x4748


class MirrorBusy(Exception):
    """Another pass is syncing the same request right now; try again in a moment."""


def is_enabled() -> bool:
    """The mirror is on only when both a token and a repository are configured."""
    return bool(settings.GITHUB_TOKEN and settings.GITHUB_REPOSITORY)


def _redactor() -> Redactor:
    return Redactor([settings.GITHUB_TOKEN] if settings.GITHUB_TOKEN else [])


# --- scheduling -------------------------------------------------------------------------------


def schedule_mirror(run_id: int) -> None:
    """Ask a worker to bring the run's GitHub issue up to date (idempotent, retried).

    Runs inside a transition's on-commit hook, so it must never raise: a broker that refuses
    the message is logged and recorded on the mirror row, and the next transition (or a
    later sync) catches up.
    """
    if not is_enabled():
        return
    try:
        current_app.send_task(MIRROR_RUN_TASK, args=(run_id,))
    except Exception as exc:
        message = _redactor().redact(f"Could not queue the GitHub sync: {type(exc).__name__}: {exc}")
        log.warning("run %s: %s", run_id, message)
        try:
            request = _request_run(Run.objects.filter(pk=run_id).first())
            if request is not None:
                mirror = _mirror_row(request)
                _record_failure(mirror, message)
        except Exception:
            log.warning("run %s: could not record that the GitHub sync was not queued", run_id, exc_info=True)


# --- syncing ------------------------------------------------------------------------------------

_clients: dict[tuple, GitHubMirrorClient] = {}
_clients_lock = threading.Lock()


def get_client() -> GitHubMirrorClient:
    """One client per configuration and process, so a rate-limit pause it learned (no calls
    until GitHub's reset) holds for every sync this process runs, not just the current one."""
    key = (
        settings.GITHUB_TOKEN,
        settings.GITHUB_REPOSITORY,
        settings.GITHUB_API_URL,
        _setting("GITHUB_TIMEOUT", 10.0),
        _setting("GITHUB_SECONDS_BETWEEN_WRITES", 0.5),
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = GitHubMirrorClient(
                settings.GITHUB_TOKEN,
                settings.GITHUB_REPOSITORY,
                settings.GITHUB_API_URL,
                timeout=key[3],
                seconds_between_writes=key[4] or None,
            )
            _clients[key] = client
        return client


def reset_clients() -> None:
    """Forget cached clients (and the rate-limit pauses they learned); for tests."""
    with _clients_lock:
        _clients.clear()


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def sync_run(run_id: int) -> GitHubMirror | None:
    """Do what is missing on GitHub for the request `run_id` belongs to; returns its mirror row.

    Returns None when the mirror is off or the run (or the create run a rollback belongs to)
    no longer exists. Raises `MirrorBusy` when another pass holds the request, and
    `GitHubError` / `RateLimited` (already recorded on the row) when GitHub failed.
    """
    if not is_enabled():
        return None
    request = _request_run(Run.objects.filter(pk=run_id).first())
    if request is None:
        return None
    mirror = _mirror_row(request)
    with _exclusive(request.pk):
        mirror.refresh_from_db()
        try:
            _catch_up(get_client(), mirror)
        except Exception as exc:
            # GitHubError messages are redacted already; anything else (a bug, a database
            # hiccup) is redacted here before it is stored, and re-raised for its traceback.
            message = exc.message if isinstance(exc, GitHubError) else f"{type(exc).__name__}: {exc}"
            _record_failure(mirror, _redactor().redact(message))
            raise
        if mirror.last_error:  # the pass succeeded without writing anything
            _progress(mirror)
    return mirror


def _request_run(run: Run | None) -> Run | None:
    """The create/destroy/plan run whose issue a run belongs to: a rollback's create run, an
    update's plan-only run (the change plan it applies). None when there is none."""
    if run is None or run.kind not in ISSUE_LABELS and run.kind not in MAPPED_KINDS:
        return None
    if run.kind == RunKind.ROLLBACK:
        return run.rollback_of
    if run.kind == RunKind.UPDATE:
        plan = ChangePlan.objects.filter(apply_run_id=run.pk).select_related("plan_run").first()
        return plan.plan_run if plan else None
    return run


def _mirror_row(request: Run) -> GitHubMirror:
    mirror, _ = GitHubMirror.objects.get_or_create(
        run_id=request.pk, defaults={"repository": settings.GITHUB_REPOSITORY}
    )
    return mirror


@contextmanager
def _exclusive(request_run_id: int) -> Iterator[None]:
    """One sync pass per request at a time, across worker processes and hosts.

    Two passes of one request (say the "queued" and the "apply started" tasks on two pool
    processes) would otherwise both see no issue and both open one. PostgreSQL: a session
    advisory lock (no transaction held open across HTTP calls, released if the worker dies).
    SQLite, which is one host by nature: an flock under VAR_DIR.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, request_run_id % 2**31])
            acquired = cursor.fetchone()[0]
        if not acquired:
            raise MirrorBusy(f"run {request_run_id} is being synced by another worker")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, request_run_id % 2**31])
        return
    with exclusive_lock(Path(settings.VAR_DIR) / "locks" / f"github-mirror-{request_run_id}.lock", timeout=0) as held:
        if not held:
            raise MirrorBusy(f"run {request_run_id} is being synced by another process")
        yield


def _save(mirror: GitHubMirror, **changes) -> None:
    """Record progress at once (the caller holds the request's lock, so the row is ours)."""
    for name, value in changes.items():
        setattr(mirror, name, value)
    mirror.save(update_fields=[*changes, "updated_at"])


def _progress(mirror: GitHubMirror, **changes) -> None:
    """Record what a successful GitHub call did, and end a failure streak in the same write, so
    no reader ever sees a closed issue (or any new step) next to a stale error."""
    if mirror.last_error:
        system_event(
            mirror.run_id,
            f"GitHub mirror caught up after {mirror.attempts} failed attempt(s): "
            f"{changes.get('issue_url', mirror.issue_url)}",
        )
        changes["last_error"] = ""
    _save(mirror, **changes)


def _record_failure(mirror: GitHubMirror, message: str) -> None:
    mirror.refresh_from_db(fields=["attempts", "last_error"])
    first = not mirror.last_error
    _save(mirror, attempts=mirror.attempts + 1, last_error=message[:4000])
    log.warning("GitHub mirror of run %s failed (attempt %s): %s", mirror.run_id, mirror.attempts, message)
    if first:
        system_event(mirror.run_id, f"GitHub mirror failed; it is retried: {message}", "warning")


# --- what to do -------------------------------------------------------------------------------


@dataclass
class Step:
    """One thing to mirror: a comment, a commit (`commit`="add"/"remove") or closing the issue."""

    key: str
    commit: str = ""
    close_reason: str = ""

    @property
    def is_comment(self) -> bool:
        return not (self.commit or self.close_reason)


def _catch_up(client: GitHubMirrorClient, mirror: GitHubMirror) -> None:
    # After a failed pass a comment may have been created although we saw an error.
    unverified = bool(mirror.last_error)
    for _ in range(MAX_ROUNDS):
        request = (
            Run.objects.select_related(
                "environment", "environment__product", "environment__product__department", "environment__account",
                "requested_by",
            ).get(pk=mirror.run_id)
        )
        rollback = Run.objects.filter(rollback_of=request).first() if request.kind == RunKind.CREATE else None
        change = _change_plan(request) if request.kind == RunKind.PLAN else None
        view = RequestView(request, rollback, change)
        if not mirror.issue_number:
            found = client.find_issue(view.issue_marker, labels=LOOKUP_LABELS)
            number, url = found or client.open_issue(view.title, view.issue_body(), ISSUE_LABELS[request.kind])
            _progress(mirror, issue_number=number, issue_url=url)
            system_event(request.pk, f"GitHub issue #{number}: {url}")
        steps = [s for s in view.steps(mirror) if s.key not in mirror.milestones and not (s.close_reason and mirror.closed)]
        if not steps:
            return
        if unverified and any(s.is_comment for s in steps):
            bodies = client.comment_bodies(mirror.issue_number)
            already = [s.key for s in steps if s.is_comment and any(view.step_marker(s.key) in b for b in bodies)]
            if already:
                _save(mirror, milestones=[*mirror.milestones, *already])
            unverified = False
            steps = [s for s in steps if s.key not in already]
        for step in steps:
            if step.commit:
                files = view.committed_files
                if step.commit == "add" and files:
                    sha, url = client.commit_files(view.code_path, files, view.commit_message(mirror.issue_number))
                elif step.commit == "remove":
                    sha, url = client.delete_files(view.code_path, view.commit_message(mirror.issue_number))
                else:
                    sha, url = "", ""
                _progress(mirror, commit_sha=sha, commit_url=url, milestones=[*mirror.milestones, step.key])
            elif step.close_reason:
                client.close_issue(mirror.issue_number, reason=step.close_reason)
                _progress(mirror, closed=True)
            else:
                body = view.render(step, mirror)
                client.comment(mirror.issue_number, body)
                _progress(mirror, milestones=[*mirror.milestones, step.key])


def _change_plan(plan_run: Run) -> ChangePlan:
    """The change plan a plan-only run made, with the update run that applies it (if any)."""
    plan = ChangePlan.objects.select_related("apply_run", "requested_by", "confirmed_by").get(plan_run=plan_run)
    plan.plan_run = plan_run
    plan.environment = plan_run.environment
    return plan


def _parameters_before(plan: ChangePlan) -> dict | None:
    """The parameters the environment had when `plan` was made, or None once no row says.

    They are the environment's own until an update planned at or after `plan` succeeds (only
    a succeeded update changes them); after that, those a succeeded earlier update gave it.
    A plan is stale once another run follows it, so no update runs between a plan and its
    own. The issue is normally opened when the plan is queued, long before any of this.
    """
    applied = ChangePlan.objects.filter(environment_id=plan.environment_id, apply_run__status=RunStatus.SUCCEEDED)
    if not applied.filter(plan_run_id__gte=plan.plan_run_id).exists():
        return dict(plan.environment.parameters or {})
    earlier = applied.filter(plan_run_id__lt=plan.plan_run_id).order_by("-plan_run_id").first()
    return dict(earlier.parameters) if earlier else None


class RequestView:
    """What a request looks like on GitHub: titles, bodies and the steps reached so far."""

    def __init__(self, request: Run, rollback: Run | None, change: ChangePlan | None = None):
        self.request = request
        self.rollback = rollback
        # A plan-only run's change plan, and the update run that applies it once confirmed.
        self.change = change
        self.update: Run | None = change.apply_run if change is not None else None
        self.stale_reason: str | None = None  # set by steps() when an unconfirmed plan went stale
        self.environment: Environment = request.environment
        self.portal = settings.PORTAL_URL

    # identity --------------------------------------------------------------------------
    @property
    def issue_marker(self) -> str:
        return f"<!-- portal-mirror run={self.request.pk} portal={self.portal} -->"

    def step_marker(self, key: str) -> str:
        return f"<!-- portal-mirror run={self.request.pk} step={key} portal={self.portal} -->"

    def run_url(self, run: Run) -> str:
        return f"{self.portal}/runs/{run.pk}/"

    @property
    def name(self) -> str:
        return f"{self.environment.product.slug}/{self.environment.name}"

    @property
    def code_path(self) -> str:
        env = self.environment
        return f"environments/{env.account.account_id}/{env.product.slug}-{env.name}"

    @property
    def title(self) -> str:
        if self.request.kind == RunKind.CREATE:
            return f"Create {self.name} ({self.request.pattern_slug} {self.request.pattern_version})"
        if self.request.kind == RunKind.PLAN:
            return f"Change {self.name} ({self._change_headline()})"
        return f"Delete {self.name}"

    def _change_headline(self) -> str:
        """What the change is, in a few words: the upgrade, or the parameters it sets (when
        the values before it are still known)."""
        plan = self.change
        before = None if plan.is_upgrade else _parameters_before(plan)
        names = sorted(_changed_parameters(before, plan.parameters)) if before is not None else []
        if not names:
            return self._versions()
        shown = ", ".join(names[:3])
        return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    def _versions(self) -> str:
        plan = self.change
        if plan.is_upgrade:
            return f"{self.request.pattern_slug} {plan.pattern_version_before} -> {plan.pattern_version}"
        return f"{self.request.pattern_slug} {plan.pattern_version}"

    @property
    def committed_files(self) -> dict:
        """What the code commit writes: the environment's code, or the change plan's new code
        (the environment takes it when the update succeeds; the commit follows that).

        Nothing (the step is recorded without a commit) when the environment no longer runs
        the change's code - a later change was applied, or it was deleted - so a commit
        delayed by an outage never puts older code over what the later issue committed.
        Read now, not with the request: the update was seen succeeded after that read, and
        the environment took the code in the same transaction."""
        if self.change is not None:
            env = Environment.objects.filter(pk=self.environment.pk).values("status", "code_snapshot").first()
            if env is None or env["status"] == EnvironmentStatus.DELETED or env["code_snapshot"] != self.change.code_snapshot:
                return {}
            return self.change.code_snapshot or {}
        return self.environment.code_snapshot or {}

    def commit_message(self, issue_number: int | None) -> str:
        refs = f"\nRefs #{issue_number}" if issue_number else ""
        if self.change is not None:
            # Like a create's: the version whose code it is (the parameters are in the issue).
            run = self.update or self.request
            return f"Change {self.name} ({self._versions()})\n\nRun #{run.pk}: {self.run_url(run)}{refs}\n"
        verb = "Create" if self.request.kind == RunKind.CREATE else "Delete"
        pattern = f" ({self.request.pattern_slug} {self.request.pattern_version})" if verb == "Create" else ""
        return f"{verb} {self.name}{pattern}\n\nRun #{self.request.pk}: {self.run_url(self.request)}{refs}\n"

    # the issue -------------------------------------------------------------------------
    def issue_body(self) -> str:
        if self.change is not None:
            return self._change_body()
        env, run = self.environment, self.request
        product, department, account = env.product, env.product.department, env.account
        requester = getattr(run.requested_by, "username", "") or "the portal"
        verb = "Create" if run.kind == RunKind.CREATE else "Delete"
        lines = [
            f"**{verb}** {code(self.name)}, requested through the sandbox portal.",
            "",
            f"- **Product:** {code(product.slug)} ({code(product.name)})",
            f"- **Department:** {code(department.slug)} ({code(department.name)})",
            f"- **Pattern:** {code(run.pattern_slug)} version {code(run.pattern_version)}",
            f"- **Account:** {code(account.name)} ({code(account.account_id)}, {code(account.kind)}, {code(account.region)})",
        ]
        if env.cidr:
            lines.append(f"- **Network:** {code(env.cidr)}")
        lines += [
            f"- **Requested by:** {code(requester)}",
            f"- **Run:** [#{run.pk}]({self.run_url(run)})",
            f"- **Code:** {code(self.code_path + '/')}",
            "",
            "**Parameters:**",
            "",
            fenced(json.dumps(env.parameters or {}, indent=2, sort_keys=True, ensure_ascii=False), "json"),
            "",
            self.issue_marker,
        ]
        return _redactor().redact("\n".join(lines))

    def _change_body(self) -> str:
        env, run, plan = self.environment, self.request, self.change
        product, department, account = env.product, env.product.department, env.account
        requester = getattr(plan.requested_by, "username", "") or "the portal"
        if plan.is_upgrade:
            version = (f"{code(run.pattern_slug)} version {code(plan.pattern_version_before)} -> "
                       f"{code(plan.pattern_version)} (upgrade)")
        else:
            version = f"{code(run.pattern_slug)} version {code(plan.pattern_version)} (unchanged)"
        lines = [
            f"**Change** {code(self.name)}, requested through the sandbox portal. Terraform plans it first; "
            "nothing is applied until a person confirms the plan.",
            "",
            f"- **Environment:** {code(self.name)} in account {code(account.name)} ({code(account.account_id)}, {code(account.region)})",
            f"- **Product:** {code(product.slug)} ({code(product.name)}), department {code(department.slug)}",
            f"- **Pattern:** {version}",
            f"- **Requested by:** {code(requester)}",
            f"- **Plan run:** [#{run.pk}]({self.run_url(run)})",
            f"- **Code:** {code(self.code_path + '/')}",
            "",
            "**Changed parameters:**",
            "",
        ]
        before = _parameters_before(plan)
        changed = _changed_parameters(before, plan.parameters)
        if before is None:
            lines.append("(The values before the change are no longer recorded; the new values are below.)")
        elif not changed:
            lines.append("None: the change is the version upgrade.")
        for name in sorted(changed):
            old, new = changed[name]
            lines.append(f"- {code(name)}: {_value(old)} -> {_value(new)}")
        lines += [
            "",
            "**Parameters after the change:**",
            "",
            fenced(json.dumps(plan.parameters or {}, indent=2, sort_keys=True, ensure_ascii=False), "json"),
            "",
            self.issue_marker,
        ]
        return _redactor().redact("\n".join(lines))

    # steps -----------------------------------------------------------------------------
    def steps(self, mirror: GitHubMirror) -> list[Step]:
        """Every step the request has reached, in order (done ones included)."""
        if self.change is not None:
            return self._change_steps()
        run, rollback = self.request, self.rollback
        terminal = run.status in TERMINAL
        out: list[Step] = []
        if run.kind == RunKind.CREATE:
            out.append(Step("code", commit="add"))
            out.append(Step("queued"))
            if _reached(run, RunStage.APPLY):
                out.append(Step("apply"))
            if terminal:
                out.append(Step("result"))
            if rollback is not None and rollback.status in TERMINAL:
                out.append(Step("rollback"))
            finished = terminal and (rollback is None or rollback.status in TERMINAL)
            succeeded = run.status == RunStatus.SUCCEEDED
        else:
            out.append(Step("queued"))
            if _reached(run, RunStage.DESTROY):
                out.append(Step("destroy"))
            if run.status == RunStatus.SUCCEEDED:
                out.append(Step("code", commit="remove"))
            if terminal:
                out.append(Step("result"))
            finished = terminal
            succeeded = run.status == RunStatus.SUCCEEDED
        if finished:
            out.append(Step("close", close_reason="completed" if succeeded else "not_planned"))
        return out

    def _change_steps(self) -> list[Step]:
        plan_run, update = self.request, self.update
        out: list[Step] = []
        if plan_run.status not in TERMINAL:
            return out
        out.append(Step("planned"))
        if plan_run.status != RunStatus.SUCCEEDED:
            out.append(Step("close", close_reason="not_planned"))
            return out
        if update is None:
            # Stale stays stale (age only grows, runs after the plan stay after it), and a
            # stale plan cannot be confirmed: closing the issue here loses no later step. But
            # a confirm that committed after this plan row was read makes it look stale (its
            # update run is "another run since"): read again, after the check, whether it
            # is still unconfirmed - the update run and `apply_run` are written together.
            reason = stale_reason(self.change)
            if reason is not None and ChangePlan.objects.filter(pk=self.change.pk, apply_run__isnull=True).exists():
                self.stale_reason = reason
                out += [Step("not_applied"), Step("close", close_reason="not_planned")]
            return out
        out.append(Step("confirmed"))
        if _reached(update, RunStage.APPLY):
            out.append(Step("apply"))
        if update.status in TERMINAL:
            out.append(Step("result"))
            if update.status == RunStatus.SUCCEEDED:
                out.append(Step("code", commit="add"))
            out.append(Step("close", close_reason="completed" if update.status == RunStatus.SUCCEEDED else "not_planned"))
        return out

    def render(self, step: Step, mirror: GitHubMirror) -> str:
        """The comment for `step`, ending with its marker (redacted like everything posted)."""
        text = getattr(self, f"_{step.key}")(mirror)
        return _redactor().redact(f"{text}\n\n{self.step_marker(step.key)}")

    def _queued(self, mirror: GitHubMirror) -> str:
        run = self.request
        text = f"Queued at {stamp(run.queued_at)} as run [#{run.pk}]({self.run_url(run)}) in account {code(self.environment.account.name)}."
        if run.kind == RunKind.CREATE and mirror.commit_sha:
            text += f"\n\nRendered code: [{mirror.commit_sha[:7]}]({mirror.commit_url}) in {code(self.code_path + '/')}."
        return text

    def _planned(self, mirror: GitHubMirror) -> str:
        run, plan = self.request, self.change
        if run.status != RunStatus.SUCCEEDED:
            when = stamp(run.finished_at) if run.finished_at else "the end"
            return (
                f"**Plan {run.get_status_display().lower()}** at {when} (run [#{run.pk}]({self.run_url(run)})):\n\n"
                f"{fenced(self._explain(run))}\n\nNothing was changed; the change can be planned again."
            )
        summary = plan.summary or {}
        counts = ", ".join(f"{summary.get(k, 0)} to {k}" for k in ("add", "change", "replace", "destroy", "move"))
        lines = [
            f"**Planned** at {stamp(plan.planned_at or run.finished_at)} (run [#{run.pk}]({self.run_url(run)})): {counts}.",
        ]
        if summary.get("replace"):
            lines.append("(A replacement counts as one to add and one to destroy.)")
        rows = list(plan.resource_changes or [])
        replaced = [c["address"] for c in rows if c.get("action") == "replace"]
        destroyed = [c["address"] for c in rows if c.get("action") == "delete"]
        if replaced:
            lines += ["", f"**Replaced** (destroyed, then created again): {', '.join(code(a) for a in replaced)}"]
        if destroyed:
            lines += ["", f"**Destroyed:** {', '.join(code(a) for a in destroyed)}"]
        if rows:
            lines += ["", "| Resource | Action | Attributes |", "| --- | --- | --- |"]
            for change in rows[:MAX_PLAN_ROWS]:
                lines.append(f"| {cell(code(change.get('address', '')))} | {cell(_action(change))} | "
                             f"{cell(_attributes(change))} |")
            if len(rows) > MAX_PLAN_ROWS:
                lines += ["", f"... and {len(rows) - MAX_PLAN_ROWS} more on the run page."]
        else:
            lines += ["", "Terraform plans no resource changes."]
        lines += ["", "Nothing is applied until the plan is confirmed in the portal."]
        return "\n".join(lines)

    def _confirmed(self, mirror: GitHubMirror) -> str:
        plan, update = self.change, self.update
        who = getattr(plan.confirmed_by, "username", "") or "the portal"
        when = stamp(plan.confirmed_at) if plan.confirmed_at else stamp(update.queued_at)
        return (f"**Confirmed** by {code(who)} at {when}: update run [#{update.pk}]({self.run_url(update)}) "
                "applies exactly this saved plan.")

    def _not_applied(self, mirror: GitHubMirror) -> str:
        reason = self.stale_reason or "it went stale."
        return f"**Not applied:** this plan can no longer be confirmed: {reason}\n\nNothing was changed."

    def _apply(self, mirror: GitHubMirror) -> str:
        if self.change is not None:
            summary = self.change.summary or {}
            counts = ", ".join(f"{summary.get(k, 0)} to {k}" for k in ("add", "change", "destroy"))
            started = _stage_time(self.update, RunStage.APPLY)
            return (f"Apply of the confirmed plan started{' at ' + stamp(started) if started else ''} "
                    f"(run [#{self.update.pk}]({self.run_url(self.update)})). Plan: {counts}.")
        plan = self.request.plan_summary or {}
        counts = ", ".join(f"{plan.get(k, 0)} to {k}" for k in ("add", "change", "destroy")) if plan else ""
        started = _stage_time(self.request, RunStage.APPLY)
        return f"Apply started{' at ' + stamp(started) if started else ''}." + (f" Plan: {counts}." if counts else "")

    def _destroy(self, mirror: GitHubMirror) -> str:
        started = _stage_time(self.request, RunStage.DESTROY)
        return f"Destroy started{' at ' + stamp(started) if started else ''}."

    def _result(self, mirror: GitHubMirror) -> str:
        if self.change is not None:
            return self._update_result()
        run = self.request
        when = stamp(run.finished_at) if run.finished_at else "the end"
        if run.kind == RunKind.CREATE:
            if run.status == RunStatus.SUCCEEDED:
                endpoints = list(self.environment.endpoints.order_by("fqdn"))
                lines = [f"**Succeeded** at {when}: {code(self.name)} is ready."]
                if endpoints:
                    lines += ["", "Endpoints:"]
                    lines += [f"- {code(e.fqdn)}" + (f" {e.url}" if e.url else "") for e in endpoints]
                return "\n".join(lines)
            text = f"**{run.get_status_display()}** at {when}:\n\n{fenced(self._explain(run))}"
            if self.rollback is not None:
                text += f"\n\nRollback run [#{self.rollback.pk}]({self.run_url(self.rollback)}) destroys what the failed apply created."
            return text
        if run.status == RunStatus.SUCCEEDED:
            text = f"**Destroyed** at {when}: the state of {code(self.name)} is empty and its allocations are released."
            if mirror.commit_sha:
                text += f"\n\nCode removed in [{mirror.commit_sha[:7]}]({mirror.commit_url})."
            return text
        return (
            f"**Delete {run.get_status_display().lower()}** at {when}:\n\n{fenced(self._explain(run))}\n\n"
            "The state and the code are kept; the delete can be retried."
        )

    def _update_result(self) -> str:
        update, plan = self.update, self.change
        when = stamp(update.finished_at) if update.finished_at else "the end"
        link = f"run [#{update.pk}]({self.run_url(update)})"
        if update.status == RunStatus.SUCCEEDED:
            lines = [f"**Applied** at {when} ({link}): {code(self.name)} runs the change "
                     f"({code(update.pattern_slug)} {code(plan.pattern_version)})."]
            endpoints = list(self.environment.endpoints.filter(released_at__isnull=True).order_by("fqdn"))
            if endpoints:
                lines += ["", "Endpoints:"]
                lines += [f"- {code(e.fqdn)}" + (f" {e.url}" if e.url else "") for e in endpoints]
            return "\n".join(lines)
        return (
            f"**Update {update.get_status_display().lower()}** at {when} ({link}):\n\n{fenced(self._explain(update))}\n\n"
            "Nothing was destroyed for it and the state is kept: what was applied stays, and the environment keeps "
            "its parameters, version and code. Plan the change again, or retry."
        )

    def _rollback(self, mirror: GitHubMirror) -> str:
        rollback = self.rollback
        link = f"[#{rollback.pk}]({self.run_url(rollback)})"
        when = stamp(rollback.finished_at) if rollback.finished_at else "the end"
        if rollback.status == RunStatus.SUCCEEDED:
            return f"**Rolled back** at {when}: run {link} destroyed everything the failed apply created; the state is empty."
        return (
            f"**Rollback {rollback.get_status_display().lower()}** at {when} (run {link}):\n\n{fenced(self._explain(rollback))}\n\n"
            "The state is kept and the resources in it still exist: the environment needs attention "
            "(deleting it retries the destroy)."
        )

    def _explain(self, run: Run) -> str:
        return run.explanation or "(no explanation recorded)"


def _reached(run: Run, stage: str) -> bool:
    """Whether the run got to `stage` (it is there now, or a stage event says it was)."""
    if run.stage == stage or (stage == RunStage.APPLY and run.stage == RunStage.OUTPUTS):
        return True
    if run.kind in (RunKind.CREATE, RunKind.UPDATE) and stage == RunStage.APPLY and run.status == RunStatus.SUCCEEDED:
        return True
    if run.kind == RunKind.DESTROY and stage == RunStage.DESTROY and run.status == RunStatus.SUCCEEDED:
        return True
    return run.events.filter(kind=RunEvent.Kind.STAGE, data__stage=stage).exists()


def _changed_parameters(before: dict | None, after: dict) -> dict[str, tuple]:
    """name -> (old, new) for every parameter the change sets, adds or drops; with `before`
    unknown (None), every new value (old shown as unknown)."""
    after = after or {}
    if before is None:
        return {name: (_UNKNOWN, value) for name, value in after.items()}
    names = set(before) | set(after)
    return {
        name: (before.get(name, _ABSENT), after.get(name, _ABSENT))
        for name in names
        if before.get(name, _ABSENT) != after.get(name, _ABSENT)
    }


_ABSENT, _UNKNOWN = object(), object()


def _value(value) -> str:
    if value is _ABSENT:
        return "(not set)"
    if value is _UNKNOWN:
        return "(unknown)"
    return code(json.dumps(value, sort_keys=True, ensure_ascii=False))


def _action(change: dict) -> str:
    action = change.get("action", "")
    text = {"replace": "**replace**", "delete": "**destroy**", "create": "create", "update": "update"}.get(action, action)
    if change.get("moved_from"):
        text += f" (moved from {code(change['moved_from'])})" if action != "move" else f" from {code(change['moved_from'])}"
    return text


def _attributes(change: dict) -> str:
    text = ", ".join(code(a) for a in change.get("attributes") or [])
    forcing = change.get("forces_replacement") or []
    if forcing:
        text += ("; " if text else "") + "forces replacement: " + ", ".join(code(a) for a in forcing)
    return text


def _stage_time(run: Run, stage: str):
    event = run.events.filter(kind=RunEvent.Kind.STAGE, data__stage=stage).order_by("seq").first()
    return event.created_at if event else None


# --- markdown helpers -------------------------------------------------------------------------


def code(text: str) -> str:
    """`text` as inline code, whatever backticks it holds (and so no @mention or link)."""
    text = str(text).replace("\n", " ")
    longest = max((len(run) for run in _backtick_runs(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def fenced(text: str, language: str = "") -> str:
    """`text` as a fenced code block that no line of it can close."""
    longest = max((len(run) for run in _backtick_runs(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def cell(text: str) -> str:
    """`text` fit for a table cell: a pipe (even inside a code span) would end the cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _backtick_runs(text: str) -> list[str]:
    runs, current = [], ""
    for char in text:
        if char == "`":
            current += char
        elif current:
            runs.append(current)
            current = ""
    if current:
        runs.append(current)
    return runs


def stamp(moment) -> str:
    return timezone.localtime(moment, dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def catch_up_stale(limit: int = 50) -> list[int]:
    """Re-schedule mirrors that fell behind: a request whose run has finished but whose issue
    is not closed (its messages were lost with a dead worker, or its retries ran out), and a
    finished request that was never mirrored at all. Called periodically by Celery beat.

    A change's plan run finishes long before its issue may close (a person confirms, or the
    plan goes stale without any transition to say so), so open change issues come last,
    oldest first: each pass revisits them, closing those that went stale, without crowding
    out requests that really fell behind."""
    if not is_enabled():
        return []
    open_finished = GitHubMirror.objects.filter(closed=False, run__status__in=TERMINAL)
    behind = list(open_finished.exclude(run__kind=RunKind.PLAN).values_list("run_id", flat=True)[:limit])
    never = list(
        Run.objects.filter(kind__in=list(ISSUE_LABELS), github_mirror__isnull=True)
        .exclude(status__in=UNFINISHED)
        .values_list("pk", flat=True)[: max(0, limit - len(behind))]
    )
    changes = list(
        open_finished.filter(run__kind=RunKind.PLAN).order_by("run_id")
        .values_list("run_id", flat=True)[: max(0, limit - len(behind) - len(never))]
    )
    for run_id in behind + never + changes:
        schedule_mirror(run_id)
    return behind + never + changes
