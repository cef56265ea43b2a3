"""The GitHub trail of drift (issue 16): an environment found drifted gets one GitHub issue,
"Drift in <product>/<env>", that follows the drift until it is gone.

    drifted (no open drift issue)    -> the issue: environment, account, when, a table of the
                                        drifted resources (attribute: state -> real, shortened)
    drifted again, same resources and attributes -> nothing (a daily check is not news)
    drifted again, a different set   -> a "changed" comment with the new table
    a plan to fix it (ChangePlan.fixes_drift) -> a comment linking the change plan and its issue
    in sync again, or the environment deleted -> a "resolved" comment, and the issue is closed

The next drift after that opens a new issue. Failed and superseded checks are no finding and
change nothing here.

`schedule_drift_mirror(environment_id)` is called on commit of every finished check
(`portal.services.drift._finish`); like `github_mirror.schedule_mirror` it only enqueues the
`portal.mirror_drift` task and never raises. `sync_drift(environment_id)` (what the task
calls) is idempotent and crash-safe in the same way as `github_mirror.sync_run`, whose helpers
it uses: each step is recorded as soon as GitHub took it; the issue and every comment carry a
hidden marker; the episode (the check the issue is about, and so the issue's marker) is
recorded BEFORE the issue is opened, and the issue is looked up by its marker first; a
comment is recorded as pending before it is posted, and after a pass that failed or died
mid-call the comments are read back before any is posted again. `catch_up_drift` (with the
mirror's periodic catch-up) re-schedules environments whose trail fell behind - a fix planned,
a deletion, retries that ran out.

Where the state lives: no model of its own. An environment has at most one open drift issue,
and its state is one `{"drift": {...}}` entry in the `milestones` of the `GitHubMirror` row of
the environment's first create run (every environment is created with one). The create's own
sync never looks at that entry and keeps it when it adds its steps, and both syncs take the
same lock (that request's), so neither overwrites the other. The entry's keys:

    check          the drifted check the issue is about (in every marker)
    issue_number, issue_url, closed
    seen           the [address, action, attribute] triples the issue last described
    posted         the steps done ("changed-<check>", "fix-<plan>", "resolved", "close")
    pending        the comment being posted (read back before it is posted again)
    last           the latest check the trail accounts for: only a drifted check after it
                   opens a new issue once this one is closed
    attempts, last_error   failed passes (redacted; empty whenever the latest pass succeeded)

Must not import views, the API, Celery tasks or `portal.services.drift` (drift imports this).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from celery import current_app
from django.conf import settings

from portal.models import ChangePlan, DriftCheck, Environment, EnvironmentStatus, GitHubMirror, Run, RunKind
from portal.services.github_mirror import (
    LOOKUP_LABELS,
    MAX_ROUNDS,
    GitHubError,
    MirrorBusy,
    RateLimited,
    _exclusive,
    _redactor,
    _save,
    cell,
    code,
    get_client,
    is_enabled,
    stamp,
)
from provisioning.github import GitHubMirrorClient
from provisioning.redact import SECRET_KEY_PATTERN

log = logging.getLogger(__name__)

# The task that runs `sync_drift` (portal/tasks.py registers it under this name).
MIRROR_DRIFT_TASK = "portal.mirror_drift"

__all__ = ["MirrorBusy", "RateLimited", "GitHubError", "catch_up_drift", "drift_issue", "schedule_drift_mirror", "sync_drift"]

DRIFT_LABELS = ("portal", "drift")
STATE_KEY = "drift"
FINDINGS = (DriftCheck.Status.DRIFTED, DriftCheck.Status.IN_SYNC)
# A table lists at most this many rows (a comment holds 65536 characters), a value this many
# characters (the whole value is on the environment page).
MAX_TABLE_ROWS = 100
MAX_VALUE_CHARS = 60


# --- the state ----------------------------------------------------------------------------------


def _create_run_id(environment_id: int) -> int | None:
    """The request whose mirror row holds the environment's drift trail: its first create."""
    return (
        Run.objects.filter(environment_id=environment_id, kind=RunKind.CREATE)
        .order_by("pk").values_list("pk", flat=True).first()
    )


def drift_state(mirror: GitHubMirror) -> dict:
    """The drift entry of a create's mirror row (a copy; {} when there is none)."""
    for item in mirror.milestones or []:
        if isinstance(item, dict) and STATE_KEY in item:
            return dict(item[STATE_KEY])
    return {}


def drift_issue(environment_id: int) -> dict:
    """What the trail recorded for the environment's latest drift issue ({} if none), for
    the UI, the API and tests."""
    run_id = _create_run_id(environment_id)
    mirror = GitHubMirror.objects.filter(run_id=run_id).first() if run_id else None
    return drift_state(mirror) if mirror else {}


def _store(mirror: GitHubMirror, state: dict) -> dict:
    """Write the drift entry (the caller holds the request's lock, so the row is ours)."""
    others = [item for item in mirror.milestones or [] if not (isinstance(item, dict) and STATE_KEY in item)]
    _save(mirror, milestones=[*others, {STATE_KEY: state}])
    return state


def _progress(mirror: GitHubMirror, state: dict, **changes) -> dict:
    """Record what a successful GitHub call did; a failure streak ends in the same write."""
    return _store(mirror, {**state, **changes, "last_error": ""})


def _mirror_of(run_id: int) -> GitHubMirror:
    mirror, _ = GitHubMirror.objects.get_or_create(run_id=run_id, defaults={"repository": settings.GITHUB_REPOSITORY})
    return mirror


def _record_failure(mirror: GitHubMirror, environment_id: int, message: str) -> None:
    """Count a failed pass on the open trail (the caller holds the request's lock)."""
    mirror.refresh_from_db(fields=["milestones"])
    state = drift_state(mirror)
    if not state or state.get("closed"):
        return  # nothing is due on GitHub for an issue; the catch-up finds it behind
    attempts = state.get("attempts", 0) + 1
    _store(mirror, {**state, "attempts": attempts, "last_error": message[:4000]})
    log.warning("GitHub drift trail of environment %s failed (attempt %s): %s", environment_id, attempts, message)


# --- scheduling -----------------------------------------------------------------------------------


def schedule_drift_mirror(environment_id: int) -> None:
    """Ask a worker to bring the environment's drift issue up to date (idempotent, retried).

    Runs in a drift check's on-commit hook, so it never raises: a broker that refuses the
    message is logged (and recorded on an open trail), and `catch_up_drift` sends it again.
    """
    try:
        if not is_enabled():
            return
        current_app.send_task(MIRROR_DRIFT_TASK, args=(environment_id,))
    except Exception as exc:
        message = _redactor().redact(f"Could not queue the GitHub drift sync: {type(exc).__name__}: {exc}")
        log.warning("environment %s: %s", environment_id, message)
        try:
            run_id = _create_run_id(environment_id)
            mirror = GitHubMirror.objects.filter(run_id=run_id).first() if run_id else None
            if mirror is not None:
                with _exclusive(run_id):
                    _record_failure(mirror, environment_id, message)
        except MirrorBusy:
            pass  # a pass is syncing it right now anyway
        except Exception:
            log.warning("environment %s: could not record that the GitHub drift sync was not queued",
                        environment_id, exc_info=True)


def catch_up_drift(limit: int = 50) -> list[int]:
    """Re-schedule the drift trails that fell behind: a drifted environment without its issue
    or comment, an open issue whose environment is in sync again or deleted, a fix planned
    and not yet told, a pass that failed last. Periodic, with the mirror's catch-up."""
    if not is_enabled():
        return []
    drifted = Environment.objects.filter(drift_status="drifted").exclude(status=EnvironmentStatus.DELETED)
    candidates = set(drifted.values_list("pk", flat=True))
    # Open trails of environments no longer drifted (the entry's key is in the text of the row).
    for mirror in GitHubMirror.objects.filter(run__kind=RunKind.CREATE, milestones__icontains=f'"{STATE_KEY}"').select_related("run"):
        state = drift_state(mirror)
        if state and not state.get("closed"):
            candidates.add(mirror.run.environment_id)
    behind = []
    for environment_id in sorted(candidates):
        if len(behind) >= limit:
            break
        if _is_behind(environment_id):
            schedule_drift_mirror(environment_id)
            behind.append(environment_id)
    return behind


def _is_behind(environment_id: int) -> bool:
    environment = Environment.objects.select_related("product", "account").filter(pk=environment_id).first()
    run_id = _create_run_id(environment_id)
    if environment is None or run_id is None:
        return False
    mirror = GitHubMirror.objects.filter(run_id=run_id).first()
    state = drift_state(mirror) if mirror else {}
    view = DriftView(environment, state)
    if view.new_episode() is not None:
        return True
    if not state or state.get("closed"):
        return False
    return bool(state.get("last_error") or state.get("pending") or not state.get("issue_number")
                or any(s.key not in state.get("posted", []) for s in view.steps()))


# --- syncing -----------------------------------------------------------------------------------


def sync_drift(environment_id: int) -> dict | None:
    """Do what is missing on GitHub for the environment's drift; returns the trail's state.

    None when the mirror is off, or the environment (or its create run) is gone. Raises
    `MirrorBusy` when another pass holds the environment's create request, and `GitHubError`
    / `RateLimited` (already recorded in the state) when GitHub failed.
    """
    if not is_enabled():
        return None
    run_id = _create_run_id(environment_id)
    if run_id is None:
        return None
    mirror = _mirror_of(run_id)
    with _exclusive(run_id):
        mirror.refresh_from_db()
        try:
            _catch_up(get_client(), mirror, environment_id)
        except Exception as exc:
            message = exc.message if isinstance(exc, GitHubError) else f"{type(exc).__name__}: {exc}"
            _record_failure(mirror, environment_id, _redactor().redact(message))
            raise
    return drift_state(mirror)


@dataclass
class Step:
    """One comment (or closing the issue), and what the state takes once it is done."""

    key: str
    close_reason: str = ""
    updates: dict = field(default_factory=dict)
    subject: object = None  # the check or change plan the comment is about


def _catch_up(client: GitHubMirrorClient, mirror: GitHubMirror, environment_id: int) -> None:
    for _ in range(MAX_ROUNDS):
        environment = Environment.objects.select_related("product", "account").filter(pk=environment_id).first()
        if environment is None:
            return
        state = drift_state(mirror)
        view = DriftView(environment, state)
        fresh = view.new_episode()
        if fresh is not None:
            # Recorded before the issue is opened: the marker it is looked up by is fixed now.
            state = _store(mirror, fresh)
            view = DriftView(environment, state)
        if not state or state.get("closed"):
            return
        if not state.get("issue_number"):
            found = client.find_issue(view.issue_marker, labels=LOOKUP_LABELS)
            number, url = found or client.open_issue(view.title, view.issue_body(), DRIFT_LABELS)
            state = _progress(mirror, state, issue_number=number, issue_url=url)
        steps = [s for s in view.steps() if s.key not in state["posted"]]
        if not steps:
            return
        if (state.get("pending") or state.get("last_error")) and any(not s.close_reason for s in steps):
            # The last pass died or failed mid-call: a comment may be there although unrecorded.
            bodies = client.comment_bodies(state["issue_number"])
            already = [s for s in steps if not s.close_reason and any(view.step_marker(s.key) in b for b in bodies)]
            updates = {name: value for s in already for name, value in s.updates.items()}
            state = _store(mirror, {**state, **updates, "pending": "", "posted": [*state["posted"], *(s.key for s in already)]})
            steps = [s for s in steps if s not in already]
        for step in steps:
            if step.close_reason:
                client.close_issue(state["issue_number"], reason=step.close_reason)
                state = _progress(mirror, state, **step.updates, closed=True, posted=[*state["posted"], step.key])
                continue
            body = view.render(step)
            state = _store(mirror, {**state, "pending": step.key})
            client.comment(state["issue_number"], body)
            state = _progress(mirror, state, **step.updates, pending="", posted=[*state["posted"], step.key])


# --- what to post -------------------------------------------------------------------------------


def fingerprint(check: DriftCheck) -> list[list[str]]:
    """What drifted, without the values: the sorted [address, action, attribute] triples. The
    trail comments again only when this changes (values that move daily are not news)."""
    triples = set()
    for resource in check.resources or []:
        address, action = str(resource.get("address", "")), str(resource.get("action", ""))
        attributes = resource.get("attributes") or []
        if action == "delete" or not attributes:
            triples.add((address, action, ""))
        for attribute in attributes if action != "delete" else []:
            triples.add((address, action, str(attribute.get("attribute", ""))))
    return [list(t) for t in sorted(triples)]


class DriftView:
    """What an environment's drift looks like on GitHub: the issue and the steps due."""

    def __init__(self, environment: Environment, state: dict):
        self.environment = environment
        self.state = state
        self.portal = settings.PORTAL_URL
        self.latest: DriftCheck | None = (
            DriftCheck.objects.filter(environment=environment, status__in=FINDINGS)
            .select_related("requested_by").order_by("-pk").first()
        )

    # identity --------------------------------------------------------------------------
    @property
    def issue_marker(self) -> str:
        return f"<!-- portal-drift environment={self.environment.pk} check={self.state['check']} portal={self.portal} -->"

    def step_marker(self, key: str) -> str:
        return (f"<!-- portal-drift environment={self.environment.pk} check={self.state['check']} step={key} "
                f"portal={self.portal} -->")

    @property
    def name(self) -> str:
        return f"{self.environment.product.slug}/{self.environment.name}"

    @property
    def title(self) -> str:
        return f"Drift in {self.name}"

    @property
    def environment_url(self) -> str:
        return f"{self.portal}/environments/{self.environment.pk}/"

    @property
    def deleted(self) -> bool:
        return self.environment.status == EnvironmentStatus.DELETED

    # what is due -----------------------------------------------------------------------
    def new_episode(self) -> dict | None:
        """The state of a new issue, when the latest finding is drift that no open issue
        covers and that came after the last one's end; else None."""
        state, latest = self.state, self.latest
        if state and not state.get("closed"):
            return None
        if self.deleted or latest is None or latest.status != DriftCheck.Status.DRIFTED:
            return None
        if latest.pk <= state.get("last", 0):
            return None
        return {"check": latest.pk, "last": latest.pk, "seen": fingerprint(latest), "issue_number": None,
                "issue_url": "", "posted": [], "pending": "", "closed": False, "attempts": 0, "last_error": ""}

    def steps(self) -> list[Step]:
        """Every step the open issue has reached, in order (done ones included)."""
        state, latest = self.state, self.latest
        episode = state["check"]
        out = [
            Step(f"fix-{plan.pk}", subject=plan)
            for plan in ChangePlan.objects.filter(environment=self.environment, fixes_drift_id__gte=episode)
            .select_related("requested_by").order_by("pk")
        ]
        if self.deleted:
            out += [Step("resolved"), Step("close", close_reason="not_planned")]
        elif latest is not None and latest.pk > episode and latest.status == DriftCheck.Status.IN_SYNC:
            out += [Step("resolved", updates={"last": latest.pk}, subject=latest),
                    Step("close", close_reason="completed", updates={"last": latest.pk})]
        elif latest is not None and latest.pk > episode and fingerprint(latest) != state.get("seen"):
            out.append(Step(f"changed-{latest.pk}", updates={"seen": fingerprint(latest), "last": latest.pk}, subject=latest))
        return out

    # rendering -------------------------------------------------------------------------
    def issue_body(self) -> str:
        env, account = self.environment, self.environment.account
        check = DriftCheck.objects.select_related("requested_by").get(pk=self.state["check"])
        lines = [
            f"**Drift** in {code(self.name)}: its real resources no longer match its Terraform state "
            "(changed outside Terraform).",
            "",
            f"- **Environment:** [{code(self.name)}]({self.environment_url})",
            f"- **Account:** {code(account.name)} ({code(account.account_id)}, {code(account.region)})",
            f"- **Found:** {stamp(check.finished_at)} by drift check #{check.pk} ({self._asked(check)})",
            f"- **Pattern:** {code(env.pattern_slug)} version {code(env.pattern_version)}",
            "",
            *self._table(check),
            "",
            "**Plan to fix** on the environment page plans the change that puts them back as the code says "
            "(reviewed and confirmed like any change); this issue is closed when a check finds it in sync.",
            "",
            self.issue_marker,
        ]
        return _redactor().redact("\n".join(lines))

    def render(self, step: Step) -> str:
        """The comment for `step`, ending with its marker (redacted like everything posted)."""
        if step.key.startswith("fix-"):
            text = self._fix(step.subject)
        elif step.key.startswith("changed-"):
            text = self._changed(step.subject)
        else:
            text = self._resolved(step.subject)
        return _redactor().redact(f"{text}\n\n{self.step_marker(step.key)}")

    def _changed(self, check: DriftCheck) -> str:
        before = {tuple(t) for t in self.state.get("seen") or []}
        now = {tuple(t) for t in fingerprint(check)}
        lines = [f"**The drift changed:** drift check #{check.pk} at {stamp(check.finished_at)} ({self._asked(check)}) "
                 f"found {len(check.resources or [])} resource(s) drifted."]
        if now - before:
            lines += ["", f"**Newly drifted:** {_triples(now - before)}"]
        if before - now:
            lines += ["", f"**No longer drifted:** {_triples(before - now)}"]
        return "\n".join([*lines, "", *self._table(check)])

    def _fix(self, plan: ChangePlan) -> str:
        who = getattr(plan.requested_by, "username", "") or "the portal"
        issue = GitHubMirror.objects.filter(run_id=plan.plan_run_id).exclude(issue_url="").first()
        link = f" (issue [#{issue.issue_number}]({issue.issue_url}))" if issue else ""
        return (f"**Fix planned** by {code(who)} at {stamp(plan.created_at)}: change plan "
                f"[#{plan.pk}]({self.portal}/changes/{plan.pk}/){link} puts back what drift check "
                f"#{plan.fixes_drift_id} found. Nothing is applied until a person confirms the plan.")

    def _resolved(self, check: DriftCheck | None) -> str:
        if check is None:
            when = stamp(self.environment.deleted_at)
            return (f"**Resolved:** {code(self.name)} was deleted{' at ' + when if when else ''}; "
                    "nothing of it is left to drift.")
        return (f"**Resolved:** drift check #{check.pk} at {stamp(check.finished_at)} ({self._asked(check)}) found "
                f"{code(self.name)} in sync with its Terraform state again.")

    @staticmethod
    def _asked(check: DriftCheck) -> str:
        who = getattr(check.requested_by, "username", "")
        return f"asked for by {code(who)}" if who else "scheduled"

    def _table(self, check: DriftCheck) -> list[str]:
        resources = list(check.resources or [])
        if not resources:
            return ["(The check recorded no resources.)"]
        lines = ["| Resource | Attribute | In the state -> now |", "| --- | --- | --- |"]
        rows = []
        for resource in resources:
            address = cell(code(resource.get("address", "")))
            attributes = resource.get("attributes") or []
            if resource.get("action") == "delete":
                rows.append(f"| {address} |  | **deleted** outside Terraform |")
            elif not attributes:
                rows.append(f"| {address} |  | changed |")
            for attribute in attributes if resource.get("action") != "delete" else []:
                name = str(attribute.get("attribute", ""))
                rows.append(f"| {address} | {cell(code(name))} | "
                            f"{cell(_value(name, attribute.get('before')))} -> {cell(_value(name, attribute.get('after')))} |")
        lines += rows[:MAX_TABLE_ROWS]
        if len(rows) > MAX_TABLE_ROWS:
            lines += ["", f"... and {len(rows) - MAX_TABLE_ROWS} more on [the environment page]({self.environment_url})."]
        return lines


def _value(attribute: str, value) -> str:
    """A value as compact JSON inline code, cut to MAX_VALUE_CHARS. Hidden when the attribute's
    name says it is a secret: the check's findings are Terraform's plan JSON, whose values
    include those Terraform marks sensitive, and GitHub is a wider audience than the portal."""
    if SECRET_KEY_PATTERN.search(attribute):
        return "(hidden)"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return code(text)


def _triples(triples: set) -> str:
    shown = sorted(triples)
    return ", ".join(code(f"{a}.{attr}" if attr else a) for a, _action, attr in shown)
