"""How rows are shown: status tones, the run's stage bar, queue estimates, the live run page.

Presentation only: it reads rows (through selectors) and decides nothing about what may
happen to them (no services, no permission rules).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from urllib.parse import urlencode

from django.template.loader import render_to_string
from django.utils import timezone

from portal import selectors
from portal.models import DriftCheck, DriftStatus, EnvironmentStatus, Run, RunEvent, RunKind, RunStage, RunStatus
from portal.models.runs import CANCELLABLE, TERMINAL
from portal.services.catalog import get_catalog
from portal.services.dispatch import queue_position

# Badge colour per status value (environments and runs share the palette).
TONES = {
    EnvironmentStatus.PROVISIONING: "info",
    EnvironmentStatus.READY: "ok",
    EnvironmentStatus.FAILED: "bad",
    EnvironmentStatus.ROLLBACK_FAILED: "alarm",
    EnvironmentStatus.INCOMPLETE: "warn",
    EnvironmentStatus.DELETING: "info",
    EnvironmentStatus.DELETE_FAILED: "alarm",
    EnvironmentStatus.DELETED: "muted",
    EnvironmentStatus.PLANNING: "info",
    EnvironmentStatus.UPDATING: "info",
    EnvironmentStatus.UPDATE_FAILED: "alarm",
    RunStatus.QUEUED: "muted",
    RunStatus.RUNNING: "info",
    RunStatus.SUCCEEDED: "ok",
    RunStatus.FAILED: "bad",
    RunStatus.ERRORED: "alarm",
    RunStatus.CANCELLED: "muted",
    RunStatus.INTERRUPTED: "warn",
    # Drift (an environment's `drift_status` and a check's status). "failed" (Check failed),
    # "queued" and "running" share the values, and the colours, above; "unknown" is muted.
    DriftStatus.IN_SYNC: "ok",
    DriftStatus.DRIFTED: "warn",
    DriftCheck.Status.SUPERSEDED: "muted",
}

# The stage bar of each run kind: (stage key, label). The last step is the outcome.
STAGES = {
    RunKind.CREATE: [
        ("queued", "Queued"),
        ("render", "Render"),
        ("init", "Init"),
        ("plan", "Plan"),
        ("apply", "Apply"),
        ("outputs", "Outputs"),
        ("finish", "Ready"),
    ],
    RunKind.DESTROY: [
        ("queued", "Queued"),
        ("render", "Render"),
        ("init", "Init"),
        ("destroy", "Destroy"),
        ("finish", "Deleted"),
    ],
    RunKind.PLAN: [
        ("queued", "Queued"),
        ("render", "Render"),
        ("init", "Init"),
        ("plan", "Plan"),
        ("finish", "Planned"),
    ],
    RunKind.UPDATE: [
        ("queued", "Queued"),
        ("render", "Render"),
        ("init", "Init"),
        ("apply", "Apply"),
        ("outputs", "Outputs"),
        ("finish", "Updated"),
    ],
    RunKind.ROLLBACK: [
        ("render", "Render"),
        ("init", "Init"),
        ("destroy", "Destroy"),
        ("finish", "Rolled back"),
    ],
}


def endpoint_href(fqdn: str, url: str | None) -> str:
    """Where an endpoint link goes: its URL when it is http(s) (an output could hold
    anything, e.g. `javascript:`), else https://<fqdn>/."""
    if url and url.startswith(("https://", "http://")):
        return url
    return f"https://{fqdn}/"


def tone(status: str) -> str:
    return TONES.get(status, "muted")


def stage_bar(run: Run) -> list[dict]:
    """The steps of the run's stage bar, each `done`, `current`, `failed` or `todo`.

    A finished run keeps the stage it reached, so a failed one shows where it stopped.
    """
    steps = STAGES.get(run.kind, STAGES[RunKind.CREATE])
    keys = [key for key, _ in steps]
    if run.stage in (RunStage.QUEUED, RunStage.DISPATCHED):
        reached = "queued"
    else:
        reached = run.stage
    if reached not in keys:
        reached = keys[0]
    position = keys.index(reached)
    states = []
    for index, key in enumerate(keys):
        if run.status == RunStatus.SUCCEEDED:
            state = "done"
        elif run.status in TERMINAL:
            state = "done" if index < position else ("failed" if index == position else "todo")
        else:
            state = "done" if index < position else ("current" if index == position else "todo")
        states.append(state)
    return [
        {"key": key, "label": label, "state": state}
        for (key, label), state in zip(steps, states, strict=True)
    ]


def wait_estimate(*, running: int, ahead_in_queue: int, slots: int, expected_seconds: int) -> dict:
    """How long a run waits for a slot of its account.

    `ahead_in_queue` queued runs are before it; each run is assumed to take the pattern's
    expected duration, `slots` of them at a time.
    """
    slots = max(1, slots)
    ahead = running + ahead_in_queue
    rounds = ahead // slots if ahead >= slots else 0
    seconds = rounds * expected_seconds
    minutes = math.ceil(seconds / 60) if seconds else 0
    if ahead == 0:
        text = "No runs ahead: it starts at once."
    elif rounds == 0:
        text = f"{ahead} run{'s' if ahead != 1 else ''} ahead, but a slot is free: it starts at once."
    else:
        text = f"{ahead} run{'s' if ahead != 1 else ''} ahead, expected wait ~{minutes} min."
    return {"ahead": ahead, "seconds": seconds, "minutes": minutes, "text": text}


def expected_seconds(pattern_slug: str) -> int:
    pattern = get_catalog().get(pattern_slug)
    return pattern.expected_duration_seconds if pattern else 60


def run_queue(run: Run) -> dict | None:
    """Queue position and expected wait of a queued run; None when it is not waiting."""
    position = queue_position(run)
    if position is None:
        return None
    load = selectors.account_load(run.account)
    estimate = wait_estimate(
        running=load["running"],
        ahead_in_queue=position - 1,
        slots=load["slots"],
        expected_seconds=expected_seconds(run.pattern_slug),
    )
    return {"position": position, **estimate, "text": f"Position {position} in the queue of {run.account.name}. {estimate['text']}"}


def elapsed_seconds(run: Run) -> int:
    start = run.started_at or run.queued_at
    end = run.finished_at or timezone.now()
    return max(0, int((end - start).total_seconds())) if start else 0


def format_duration(seconds: int | float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 10:
        return f"{minutes}m {seconds:02d}s"
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def event_level(event: RunEvent) -> str:
    level = (event.level or "info").lower()
    return {"warning": "warn", "warn": "warn", "error": "error", "debug": "debug"}.get(level, "info")


def log_line(event: RunEvent) -> dict:
    """One line of the run page's log (`_log_lines.html`)."""
    return {
        "seq": event.seq,
        "kind": event.kind,
        "level": event_level(event),
        "time": timezone.localtime(event.created_at).strftime("%H:%M:%S"),
        "message": event.message,
    }


def should_poll(run: Run, rollback: Run | None) -> bool:
    """The page keeps polling while the run, or the rollback that took over, is unfinished."""
    return not run.is_terminal or (rollback is not None and not rollback.is_terminal)


def progress(run: Run) -> dict:
    return {"done": run.resources_done, "planned": run.resources_planned, "percent": run.progress_percent}


# --- the live run page ------------------------------------------------------------------------
#
# One template per element (templates/portal/runs/_*.html): the page includes them, and each
# poll of `run_live` sends again, out of band, the ones whose HTML changed since the page got
# them. The poller element carries what the page has: `after` (the last log line) and `v`, the
# versions of these fragments in this order.
LIVE_FRAGMENTS = (
    "portal/runs/_status.html",
    "portal/runs/_actions.html",
    "portal/runs/_stages.html",
    "portal/runs/_progress.html",
    "portal/runs/_rollback.html",
    "portal/runs/_explanation.html",
    "portal/runs/_endpoints.html",
    "portal/runs/_plan.html",
    "portal/runs/_about.html",
)
# Django masks the CSRF token anew on every render: it is no change of the cancel form.
_CSRF_INPUT = re.compile(r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]*">')


def run_page(run: Run) -> dict:
    """What the run page's fragments show (the view adds `can_manage`)."""
    rollback = selectors.rollback_of_run(run)
    return {
        "run": run,
        "environment": run.environment,
        "tone": tone(run.status),
        "stages": stage_bar(run),
        "progress": progress(run),
        "queue": run_queue(run),
        "elapsed": format_duration(elapsed_seconds(run)),
        "rollback": rollback,
        "poll": should_poll(run, rollback),
        "cancellable": run.status in CANCELLABLE,
        "endpoints": selectors.live_endpoints(run.environment_id)
        if run.kind == RunKind.CREATE and run.status == RunStatus.SUCCEEDED
        else [],
        "mirror": getattr(run, "github_mirror", None),
    }


def fragment_version(html: str) -> str:
    return hashlib.blake2s(_CSRF_INPUT.sub("", html).encode(), digest_size=4).hexdigest()


def changed_fragments(request, context: dict, seen: str) -> tuple[list[str], str]:
    """The live fragments, rendered out of band, whose version is not in `seen` (the poller's
    `v`), and the versions of all of them now (the next `v`)."""
    known = seen.split(".")
    changed, versions = [], []
    for index, template in enumerate(LIVE_FRAGMENTS):
        html = render_to_string(template, {**context, "oob": True}, request)
        version = fragment_version(html)
        versions.append(version)
        if index >= len(known) or known[index] != version:
            changed.append(html)
    return changed, ".".join(versions)


# --- change plans (day two) ---------------------------------------------------------------------

# Badge colour and words per planned action (`ChangePlan.resource_changes`): what destroys
# something stands out.
CHANGE_ACTIONS = {
    "create": ("ok", "create"),
    "update": ("info", "update in place"),
    "replace": ("alarm", "replace (destroy, then create)"),
    "delete": ("alarm", "destroy"),
    "move": ("muted", "move"),
}


def _changed_attributes(change: dict) -> list[dict]:
    """The attributes a resource change names: `{"name", "forces", "before", "after"}` each
    (before/after only when the plan recorded them)."""
    forcing = set(change.get("forces_replacement") or ())
    attributes = []
    for item in change.get("attributes") or ():
        if isinstance(item, dict):
            name = str(item.get("name", ""))
            entry = {"name": name, "forces": name in forcing, "has_values": "before" in item or "after" in item,
                     "before": item.get("before"), "after": item.get("after")}
        else:
            entry = {"name": str(item), "forces": str(item) in forcing, "has_values": False}
        attributes.append(entry)
    return attributes


def change_review(resource_changes: list[dict]) -> dict:
    """What the change page shows of a plan: a row per resource (action, tone, changed
    attributes, where it moved from) and the counts its warning banner states."""
    rows = []
    for change in resource_changes or ():
        action = change.get("action", "")
        tone_, label = CHANGE_ACTIONS.get(action, ("muted", action))
        rows.append({
            "address": change.get("address", ""),
            "action": action,
            "tone": tone_,
            "label": label,
            "moved_from": change.get("moved_from") or "",
            "attributes": _changed_attributes(change),
            "destructive": action in ("replace", "delete"),
        })
    count = {action: sum(1 for row in rows if row["action"] == action) for action in CHANGE_ACTIONS}
    count["moved"] = sum(1 for row in rows if row["moved_from"])
    return {"rows": rows, "count": count, "destructive": count["replace"] + count["delete"]}


def parameter_changes(before: dict | None, after: dict | None) -> list[dict]:
    """The parameters that differ between what an environment runs and what a change asks
    for: `{"name", "before", "after", "added", "removed"}`, in the order of `after`."""
    before, after = before or {}, after or {}
    names = list(after) + [name for name in before if name not in after]
    return [
        {"name": name, "before": before.get(name), "after": after.get(name),
         "added": name not in before, "removed": name not in after}
        for name in names
        if before.get(name) != after.get(name) or (name in before) != (name in after)
    ]


# --- drift ------------------------------------------------------------------------------------------

# Badge colour and words per drifted resource's action (`DriftCheck.resources`).
DRIFT_ACTIONS = {
    "update": ("warn", "changed outside Terraform"),
    "delete": ("alarm", "deleted outside Terraform"),
}
# A value longer than this (as compact JSON) is cut; the whole value is in the cell's title.
DRIFT_VALUE_CHARS = 80


def compact_json(value, limit: int = DRIFT_VALUE_CHARS) -> dict:
    """A drifted attribute's value as one line of JSON: `{"text", "full", "truncated"}`
    (`text` is at most `limit` characters, ending in "…" when cut)."""
    try:
        full = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    except (TypeError, ValueError):
        full = repr(value)
    if len(full) <= limit:
        return {"text": full, "full": full, "truncated": False}
    return {"text": full[: max(1, limit - 1)] + "…", "full": full, "truncated": True}


def drift_resources(resources: list[dict] | None) -> list[dict]:
    """What the drift card's table shows of a check's `resources`: a row per resource
    (address, type, action with its tone and words) with its attributes' before -> after
    as compact JSON."""
    rows = []
    for resource in resources or ():
        if not isinstance(resource, dict):
            continue
        action = str(resource.get("action", ""))
        tone_, label = DRIFT_ACTIONS.get(action, ("muted", action))
        attributes = []
        for item in resource.get("attributes") or ():
            if isinstance(item, dict):
                attributes.append({
                    "name": str(item.get("attribute", item.get("name", ""))),
                    "before": compact_json(item.get("before")),
                    "after": compact_json(item.get("after")),
                })
        rows.append({
            "address": str(resource.get("address", "")),
            "type": str(resource.get("type", "")),
            "action": action,
            "tone": tone_,
            "label": label,
            "attributes": attributes,
        })
    return rows


# What an environment's drift status means, for the card under its badge.
DRIFT_MEANING = {
    DriftStatus.UNKNOWN: "Not checked for drift yet.",
    DriftStatus.IN_SYNC: "Its resources matched the Terraform state.",
    DriftStatus.DRIFTED: "Something changed outside Terraform.",
    DriftStatus.FAILED: "The last check could not finish; nothing was changed.",
}
CONCLUDED = (DriftCheck.Status.IN_SYNC, DriftCheck.Status.DRIFTED, DriftCheck.Status.FAILED)


def drift_card(environment, checks: list[DriftCheck], latest_concluded: DriftCheck | None = None) -> dict:
    """What the environment page's drift card shows. `checks` are its newest checks, newest
    first; `latest_concluded` is the newest one that found something (in sync, drifted,
    failed), when it is not among `checks`. The view adds what the user may do."""
    latest = checks[0] if checks else None
    if latest_concluded is None:
        latest_concluded = next((check for check in checks if check.status in CONCLUDED), None)
    in_flight = latest if latest is not None and not latest.finished else None
    return {
        "status": environment.drift_status,
        "label": environment.get_drift_status_display(),
        "tone": tone(environment.drift_status),
        "meaning": DRIFT_MEANING.get(environment.drift_status, ""),
        "checked_at": environment.drift_checked_at,
        "latest": latest,
        "result": latest_concluded,
        "in_flight": in_flight,
        "resources": drift_resources(latest_concluded.resources)
        if latest_concluded is not None and latest_concluded.status == DriftCheck.Status.DRIFTED
        else [],
        # Only the newest check can be fixed (`drift.plan_fix` refuses an older one).
        "fixable": latest is not None and latest.status == DriftCheck.Status.DRIFTED,
        "history": checks,
    }


def drift_should_poll(card: dict) -> bool:
    """The drift card refreshes itself while a check is queued or running."""
    return card["in_flight"] is not None


def fleet_rows(rows: list[dict], list_url: str) -> list[dict]:
    """The fleet page's rows (`catalog.fleet()`) with the pattern's name and, where some
    environment runs it, a link to the environment list filtered by the pattern."""
    catalog = get_catalog()
    shown = []
    for row in rows:
        pattern = catalog.get(row["pattern"])
        shown.append({
            **row,
            "name": pattern.name if pattern is not None else row["pattern"],
            "list_url": f"{list_url}?{urlencode({'pattern': row['pattern']})}" if row["environments"] else "",
        })
    return shown


# --- expiry -----------------------------------------------------------------------------------------


def remaining(seconds: float) -> str:
    """A time still to go, coarsely: "3 days", "5 hours", "40 min" (minutes rounded up, so
    what is left is never shown as "0 min")."""
    seconds = max(0, int(seconds))
    for unit, size in (("day", 86400), ("hour", 3600)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{max(1, math.ceil(seconds / 60))} min"


def countdown(seconds: float) -> str:
    """The expiry card's countdown: "2d 03h 04m 05s", "04m 05s"; "expired" at zero. The
    page's script (detail.html) writes the same format every second."""
    seconds = int(seconds)
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m {secs:02d}s"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes:02d}m {secs:02d}s"


def expiry(environment, now=None) -> dict:
    """When an environment expires, as the list's "Expires" cell and the expiry card show it:
    `state` (expired, kept, never, expiring), `text` ("in 3 days", "in 40 min", "expired",
    "kept", "never"), `tone`, `expires_at` and `seconds_left` (None without an expiry). A
    destroy queued by expiry (`expired_at`) or a time already past is "expired" (expiry
    destroys it at its next pass, or `expiry_blocked` says why it could not)."""
    now = now or timezone.now()
    expires_at = environment.expires_at
    left = (expires_at - now).total_seconds() if expires_at is not None else None
    if environment.expired_at is not None:
        state, text, tone_ = "expired", "expired", "muted"
    elif environment.kept:
        state, text, tone_ = "kept", "kept", "ok"
    elif expires_at is None:
        state, text, tone_ = "never", "never", "muted"
    elif left <= 0:
        state, text, tone_ = "expired", "expired", "bad"
    else:
        state, text = "expiring", f"in {remaining(left)}"
        tone_ = "bad" if left < 3600 else "warn" if left < 86400 else "ok"
    return {"state": state, "text": text, "tone": tone_, "expires_at": expires_at,
            "seconds_left": None if left is None else max(0, int(left))}


def expiry_card(environment, *, latest_allowed, now=None) -> dict:
    """What the environment page's expiry card shows; `latest_allowed` is the furthest
    expiry the product allows (`services.expiry.latest_allowed`, None: no limit). The view
    adds what the user may do."""
    shown = expiry(environment, now)
    left = shown["seconds_left"]
    return {
        **shown,
        "countdown": countdown(left) if left is not None else "",
        # The script only ticks towards an expiry that is still to come.
        "ticking": shown["state"] == "expiring",
        "latest_allowed": latest_allowed,
        "max_lifetime_hours": environment.product.max_lifetime_hours,
        "kept": environment.kept,
        "blocked": environment.expiry_blocked,
        "expired_at": environment.expired_at,
    }
