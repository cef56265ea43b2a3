"""How rows are shown: status tones, the run's stage bar, queue estimates, the live payload.

Presentation only: it reads rows (through selectors) and decides nothing about what may
happen to them.
"""

from __future__ import annotations

import math

from django.urls import reverse
from django.utils import timezone

from portal import selectors
from portal.models import EnvironmentStatus, Run, RunEvent, RunKind, RunStatus
from portal.models.runs import TERMINAL
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
    RunStatus.QUEUED: "muted",
    RunStatus.RUNNING: "info",
    RunStatus.SUCCEEDED: "ok",
    RunStatus.FAILED: "bad",
    RunStatus.ERRORED: "alarm",
    RunStatus.CANCELLED: "muted",
    RunStatus.INTERRUPTED: "warn",
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


def stage_bar(run: Run, stage_reached: str) -> list[dict]:
    """The steps of the run's stage bar, each `done`, `current`, `failed` or `todo`."""
    steps = STAGES.get(run.kind, STAGES[RunKind.CREATE])
    keys = [key for key, _ in steps]
    reached = "queued" if stage_reached in ("queued", "dispatched") else stage_reached
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


def event_payload(event: RunEvent) -> dict:
    return {
        "seq": event.seq,
        "kind": event.kind,
        "level": event_level(event),
        "time": timezone.localtime(event.created_at).strftime("%H:%M:%S"),
        "message": event.message,
    }


def should_poll(run: Run, rollback: Run | None) -> bool:
    """The page keeps polling while the run, or the rollback that took over, is unfinished."""
    return run.status not in TERMINAL or (rollback is not None and rollback.status not in TERMINAL)


def progress(run: Run) -> dict:
    return {"done": run.resources_done, "planned": run.resources_planned, "percent": run.progress_percent}


def live_payload(run: Run, *, after: int, want_plan: bool, limit: int = 300) -> dict:
    """What one tick of the run page needs: status, progress and the log lines after `after`.

    Small when nothing happened (a few hundred bytes); the plan is sent once, when the page
    asks for it, and the endpoints once the run has finished.
    """
    events = selectors.run_events_after(run.pk, after=after, limit=limit)
    rollback = selectors.rollback_of_run(run)
    environment = run.environment
    stage_reached = selectors.run_stage_reached(run)
    queue = run_queue(run) if run.status == RunStatus.QUEUED else None
    payload = {
        "status": run.status,
        "status_label": run.get_status_display(),
        "tone": tone(run.status),
        "terminal": run.status in TERMINAL,
        "stage": run.get_stage_display() if run.stage != "done" else "Finished",
        "stages": [step["state"] for step in stage_bar(run, stage_reached)],
        "progress": progress(run),
        "queue": queue["text"] if queue else None,
        "elapsed": format_duration(elapsed_seconds(run)),
        "explanation": run.explanation,
        "cancel_requested": bool(run.cancel_requested_at),
        "environment": {
            "status": environment.status,
            "status_label": environment.get_status_display(),
            "tone": tone(environment.status),
            "reason": environment.status_reason,
        },
        "rollback": None,
        "events": [event_payload(event) for event in events],
        "last_seq": events[-1].seq if events else after,
        "more": len(events) >= limit,
        "poll": should_poll(run, rollback),
    }
    if rollback is not None:
        payload["rollback"] = {
            "id": rollback.pk,
            "url": reverse("run-detail", args=[rollback.pk]),
            "status": rollback.status,
            "status_label": rollback.get_status_display(),
            "tone": tone(rollback.status),
            "progress": progress(rollback),
        }
    if want_plan and run.plan_summary:
        payload["plan"] = run.plan_summary
    if payload["terminal"] and run.kind == RunKind.CREATE:
        payload["endpoints"] = [
            {"fqdn": endpoint.fqdn, "url": endpoint_href(endpoint.fqdn, endpoint.url), "kind": endpoint.kind}
            for endpoint in selectors.live_endpoints(environment.pk)
        ]
    return payload
