"""What must hold after every fault, checked against the database and the footprint.

- existing = the resources whose footprint file exists under LOCAL_CLOUD_DIR (the demo
  pattern touches `<LOCAL_CLOUD_DIR>/environment-<pk>/<resource>` once a creation succeeded
  and removes it when the resource is destroyed); stored = the managed resources with at least
  one instance in the environment's newest StateVersion.
- STATE LOST: something exists that the stored state does not list (existing - stored).
- FALSE CLAIM: a status or message that contradicts the stored state:
    * `deleted` or `failed` (rolled back) while the stored state or the footprint is not empty;
    * `ready` while the stored state lacks one of the pattern's 7 resources;
    * a status reason or run explanation claiming "destroyed", "rolled back", "nothing was
      created" or "empty" while the stored state (as it was when that run's successor began)
      is not empty;
    * `incomplete` / `rollback_failed` / `delete_failed` whose reason does not say
      `the stored state lists N resource(s)` with the right N, or `state unknown`.
- PROBLEM: event numbers of a run are not exactly 1..n = Run.last_event_seq; a run left
  queued/running or a state lock left once everything settled; an environment stuck in
  provisioning/deleting; a delete that does not end `deleted` with an empty state and no
  footprint.

`finish_scenario()` runs the checks, requests the delete, checks again, and returns the
`ScenarioResult` it also adds to the session report.
"""

from __future__ import annotations

import json
import re
import time

from django.conf import settings
from django.db import connection

from portal.models import Environment, EnvironmentStatus, Run, RunEvent, StateLock, StateVersion
from portal.models.cmdb import ENVIRONMENT_BUSY, ENVIRONMENT_CLAIMS_NOTHING, ENVIRONMENT_NEEDS_ATTENTION
from portal.models.runs import UNFINISHED
from provisioning.localcloud import existing_resources
from tests.faults.report import REPORT, ScenarioResult

RESOURCES = ("database", "dns_record", "image_repository", "listener_rule", "load_balancer", "network", "service")
COUNT_RE = re.compile(r"the stored state lists (\d+) resource\(s\)", re.I)
UNKNOWN_RE = re.compile(r"state unknown", re.I)
CLAIM_RE = re.compile(r"\b(destroyed|rolled back|nothing was created|empty)\b", re.I)
NEGATION_RE = re.compile(r"\b(not|never|nothing|no longer|cannot|could not|n't)\b|n't\b", re.I)
SETTLE_TIMEOUT = 240


# --- reading ----------------------------------------------------------------------------


def parse_state(version: StateVersion | None) -> dict | None:
    return json.loads(bytes(version.content)) if version is not None else None


def state_resources(document: dict | None) -> tuple[list[str], int]:
    """(names of managed resources with instances, number of managed instances)."""
    if not document:
        return [], 0
    managed = [r for r in document.get("resources", []) if r.get("mode") == "managed"]
    names = sorted({r.get("name", "") for r in managed if r.get("instances")})
    return names, sum(len(r.get("instances") or []) for r in managed)


def stored_state(env_id: int, before=None) -> tuple[list[str], int]:
    """Resources of the newest StateVersion (written before `before`, when given)."""
    versions = StateVersion.objects.filter(environment_id=env_id)
    if before is not None:
        versions = versions.filter(created_at__lt=before)
    return state_resources(parse_state(versions.order_by("-id").first()))


def footprint(env_id: int) -> list[str]:
    found = existing_resources(settings.LOCAL_CLOUD_DIR, env_id)
    if found:
        REPORT.footprint_seen = True
    return found


def claims_in(text: str) -> list[str]:
    """Phrases in `text` that claim nothing (or nothing more) exists, unless negated in
    their own clause ("nothing was destroyed", "is not empty" are no claims)."""
    found = []
    for match in CLAIM_RE.finditer(text or ""):
        phrase = match.group(1).lower()
        clause_start = max(text.rfind(c, 0, match.start()) for c in ".;:,()\n") + 1
        before = text[clause_start:match.start()]
        if phrase != "nothing was created" and NEGATION_RE.search(before):
            continue
        found.append(phrase)
    return found


# --- settling -----------------------------------------------------------------------------


def settle(env_id: int, timeout: float = SETTLE_TIMEOUT, *, beat=None) -> Environment:
    """Wait until the environment has no queued/running run and a non-transitional status.

    Returns the environment as it is then (or after `timeout`: the checks report it)."""
    deadline = time.monotonic() + timeout
    while True:
        env = Environment.objects.get(pk=env_id)
        busy = Run.objects.filter(environment_id=env_id, status__in=UNFINISHED).exists()
        if not busy and env.status not in ENVIRONMENT_BUSY:
            return env
        if time.monotonic() > deadline:
            return env
        time.sleep(0.25)


# --- checks ---------------------------------------------------------------------------------


def check(env_id: int, result: ScenarioResult, *, phase: str) -> Environment:
    """Every invariant of one environment, now; findings go into `result`."""
    env = Environment.objects.get(pk=env_id)
    stored, instances = stored_state(env_id)
    existing = footprint(env_id)
    tag = f"[{phase}] env {env_id} {env.status}"

    lost = sorted(set(existing) - set(stored))
    if lost:
        result.states_lost.append(f"{tag}: {', '.join(lost)} exist(s) but the stored state lists only {stored or 'nothing'}")

    if env.status in ENVIRONMENT_CLAIMS_NOTHING and (stored or existing):
        result.false_claims.append(f"{tag} ({env.status_reason!r}) but stored={stored} footprint={existing}")
    if env.status == EnvironmentStatus.READY and set(RESOURCES) - set(stored):
        result.false_claims.append(f"{tag} but the stored state lacks {sorted(set(RESOURCES) - set(stored))}")
    if env.status in ENVIRONMENT_NEEDS_ATTENTION:
        match = COUNT_RE.search(env.status_reason or "")
        if match:
            said = int(match.group(1))
            if said != instances:
                result.false_claims.append(f"{tag}: reason says the stored state lists {said}, it lists {instances}: {env.status_reason!r}")
        elif not UNKNOWN_RE.search(env.status_reason or ""):
            result.false_claims.append(f"{tag}: reason names neither 'the stored state lists N resource(s)' nor 'state unknown': {env.status_reason!r}")
    if stored and claims_in(env.status_reason):
        result.false_claims.append(f"{tag}: reason claims {claims_in(env.status_reason)} but stored={stored}: {env.status_reason!r}")

    runs = list(Run.objects.filter(environment_id=env_id).order_by("pk"))
    for index, run in enumerate(runs):
        successor = runs[index + 1] if index + 1 < len(runs) else None
        # The state as it stood when this run's claim was made: before the next run began.
        since = (successor.started_at or successor.dispatched_at or successor.queued_at) if successor else None
        run_stored = stored_state(env_id, before=since)[0] if successor else stored
        phrases = claims_in(run.explanation)
        if phrases and run_stored:
            result.false_claims.append(f"{tag}: run #{run.pk} {run.kind} {run.status} says {phrases} but stored={run_stored}: {run.explanation!r}")
        seqs = list(RunEvent.objects.filter(run_id=run.pk).order_by("seq").values_list("seq", flat=True))
        if seqs != list(range(1, len(seqs) + 1)) or run.last_event_seq != len(seqs):
            missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
            result.problems.append(f"{tag}: run #{run.pk} events {len(seqs)} (missing {missing[:10]}), last_event_seq {run.last_event_seq}")
        if run.status in UNFINISHED:
            result.problems.append(f"{tag}: run #{run.pk} {run.kind} still {run.status}/{run.stage}")
    if env.status in ENVIRONMENT_BUSY:
        result.problems.append(f"{tag}: stuck ({env.status_reason!r})")
    if StateLock.objects.filter(environment_id=env_id).exists() and not any(r.status in UNFINISHED for r in runs):
        result.problems.append(f"{tag}: a state lock is left with no run active")
    result.runs = len(runs)
    result.details.setdefault("checks", []).append(
        {"phase": phase, "status": env.status, "reason": env.status_reason, "stored": stored, "instances": instances,
         "footprint": existing, "runs": [f"#{r.pk} {r.kind} {r.status} ({r.explanation[:160]})" for r in runs]}
    )
    return env


def delete_and_check(env_id: int, user, result: ScenarioResult, *, timeout: float = SETTLE_TIMEOUT) -> Environment:
    """Request a delete (unless deleted), wait for it, and check it ended `deleted`, empty."""
    from portal.services import environments
    from portal.services.errors import ServiceError

    env = Environment.objects.get(pk=env_id)
    if env.status != EnvironmentStatus.DELETED:
        try:
            environments.request_delete(user=user, environment=env)
        except ServiceError as exc:
            result.problems.append(f"[delete] env {env_id} {env.status}: the delete was refused: {exc}")
            return env
        env = settle(env_id, timeout)
    env = check(env_id, result, phase="after delete")
    stored, _ = stored_state(env_id)
    if env.status != EnvironmentStatus.DELETED:
        result.problems.append(f"[delete] env {env_id} ended {env.status}, not deleted ({env.status_reason!r})")
    if stored:
        result.problems.append(f"[delete] env {env_id}: the stored state still lists {stored}")
    if footprint(env_id):
        result.problems.append(f"[delete] env {env_id}: footprint left: {footprint(env_id)}")
    return env


def finish_scenario(result: ScenarioResult, env_ids, user, *, started: float | None = None,
                    settle_timeout: float = SETTLE_TIMEOUT, expect=None, after_fault=None) -> ScenarioResult:
    """Settle, check, delete, check again; add `result` to the report and return it.

    `expect` optionally maps env id -> set of acceptable statuses after the fault (before the
    delete); anything else is a problem ("the run ends as if nothing happened").
    `after_fault(env, result)` may add scenario-specific findings before the delete."""
    if isinstance(env_ids, int):
        env_ids = [env_ids]
    outcomes = []
    try:
        connection.close()  # whatever happened to the database, start from a fresh connection
        for env_id in env_ids:
            env = settle(env_id, settle_timeout)
            env = check(env_id, result, phase="after fault")
            wanted = (expect or {}).get(env_id)
            if wanted and env.status not in wanted:
                result.problems.append(f"env {env_id} ended {env.status} ({env.status_reason!r}), expected {sorted(wanted)}")
            if after_fault is not None:
                after_fault(env, result)
            result.details.setdefault("parameters", {})[env_id] = {k: v for k, v in (env.parameters or {}).items() if v not in ("", 0, None, [], {})}
            runs = Run.objects.filter(environment_id=env_id).order_by("pk")
            story = " -> ".join(f"{r.kind}:{r.status}" for r in runs)
            outcomes.append(f"{story} => {env.status}")
        for env_id in env_ids:
            delete_and_check(env_id, user, result, timeout=settle_timeout)
        result.runs = Run.objects.filter(environment_id__in=env_ids).count()
    except Exception as exc:  # a broken harness is a problem of the scenario, not a crash of the report
        result.problems.append(f"checking raised {type(exc).__name__}: {exc}")
        raise
    finally:
        result.outcome = result.outcome or "; ".join(outcomes)
        if started is not None:
            result.seconds = round(time.monotonic() - started, 1)
        REPORT.add(result)
    return result


def assert_ok(*results: ScenarioResult) -> None:
    """Fail the test with every finding of its scenarios."""
    bad = [r for r in results if not r.ok]
    if bad:
        raise AssertionError(f"{len(bad)} of {len(results)} scenario(s) broke an invariant:\n"
                             + "\n".join(r.summary() for r in bad))
