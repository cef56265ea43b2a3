"""Cancel at queued, init, plan (right at its start, and at its end) and apply: 20 times each
at random offsets (seeded; the seed is in the report), run in parallel on one account per
worker process. Accepted outcomes: the run is cancelled (`incomplete` / `failed`), or the
cancel came after Terraform had finished (`ready`, and the run's explanation says the cancel
came too late, or the cancel itself was answered "finished"); every invariant must hold either way, and a delete afterwards ends `deleted`.

Offsets are drawn within the stage, whose length is measured once per session by one
uncancelled create per account (the report's notes give the lengths; each scenario records
the stage its cancel actually met)."""

import re
import statistics
import time

import pytest

from portal.models import EnvironmentStatus, Run, RunStatus
from tests.faults.conftest import ACCOUNTS
from tests.faults.harness import in_parallel, injecting, run_row, stage_timings, wait_for, wait_for_stage
from tests.faults.invariants import assert_ok, finish_scenario, settle
from tests.faults.report import REPORT, ScenarioResult

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(1200)]

CASES = 20
APPLY_DELAY = 7  # demo-ecs apply lasts about 4/7 of this (its graph is 4 resources deep)
TOO_LATE_RE = re.compile(r"too late", re.I)
ACCEPTED = {EnvironmentStatus.INCOMPLETE, EnvironmentStatus.FAILED, EnvironmentStatus.READY}

# stage -> (the stage to watch for, the offset after it is seen, from the measured lengths L)
WHERE = {
    "init": ("init", lambda rng, L: rng.uniform(0, L["init"])),
    "plan-start": ("plan", lambda rng, L: rng.uniform(0, 0.25 * L["plan"])),
    "plan-end": ("plan", lambda rng, L: rng.uniform(0.7 * L["plan"], 1.3 * L["plan"])),
    "apply": ("apply", lambda rng, L: rng.uniform(0, 1.2 * L["apply"])),
}
_LENGTHS: dict[str, float] = {}


def stage_lengths(world, group):
    """How long init, plan and apply last here with one run per account in parallel
    (median of one uncancelled create per account, measured once per session from the stage
    events); the calibration runs are scenarios without a fault, checked and deleted too."""
    if _LENGTHS:
        return _LENGTHS, []

    def calibrate(account):
        started = time.monotonic()
        run = world.create(account=account, delay_seconds=APPLY_DELAY)
        settle(run.environment_id)
        timings = stage_timings(run.pk)
        result = finish_scenario(ScenarioResult(group, "calibration (no fault)", details={"stages": timings}),
                                 run.environment_id, world.owner, started=started,
                                 expect={run.environment_id: {EnvironmentStatus.READY}})
        return result, timings

    measured = in_parallel([lambda a=a: calibrate(a) for a in world.accounts], ACCOUNTS)
    for stage in ("init", "plan", "apply"):
        values = [t[stage] for _, t in measured if stage in t]
        _LENGTHS[stage] = round(statistics.median(values), 2) if values else {"init": 1.0, "plan": 1.0, "apply": 4.0}[stage]
    REPORT.notes["cancel offsets drawn from stage lengths (s)"] = dict(_LENGTHS)
    return _LENGTHS, [r for r, _ in measured]


def cancel_outcome(run_id):
    """The rules for the cancelled create itself."""

    def check(env, result):
        run = Run.objects.get(pk=run_id)
        result.details["create"] = f"{run.status}: {run.explanation}"
        if run.status == RunStatus.SUCCEEDED:
            if env.status != EnvironmentStatus.READY:
                result.problems.append(f"the create succeeded but the environment is {env.status}")
            # A cancel asked of a run that had already ended is answered "finished" (the API
            # and the UI say so to whoever asked); one that reached the running run must be
            # explained on the run.
            if result.details.get("cancel_answer") != "finished" and not TOO_LATE_RE.search(run.explanation):
                result.problems.append(f"the cancel was ignored without saying it came too late: {run.explanation!r}")
        elif run.status != RunStatus.CANCELLED:
            result.problems.append(f"the cancelled create ended {run.status}: {run.explanation!r}")

    return check


def one_cancel(world, account, group, stage, index, offset):
    watch, _ = WHERE[stage]
    result = ScenarioResult(group, f"cancel@{stage}#{index:02d}+{offset:.2f}s", faults=1, details={"offset": round(offset, 3)})
    started = time.monotonic()
    run = world.create(account=account, delay_seconds=APPLY_DELAY)
    with injecting(result):
        wait_for_stage(run.pk, watch, timeout=300)
        time.sleep(offset)
        before = run_row(run.pk)
        result.details["stage_at_cancel"] = f"{before.status}/{before.stage} {before.resources_done}/{before.resources_planned}"
        result.details["cancel_answer"] = world.cancel(run)
    return finish_scenario(result, run.environment_id, world.owner, started=started,
                           expect={run.environment_id: ACCEPTED}, after_fault=cancel_outcome(run.pk))


def queued_cancels(world, account, group, cases):
    """A blocker holds the account's only slot; each case is requested behind it and
    cancelled at a random offset while it waits. The blocker is checked (and deleted) too."""
    results = []
    started = time.monotonic()
    blocker = world.create(account=account, delay_seconds=10)
    wait_for(lambda: run_row(blocker.pk).status == RunStatus.RUNNING, "the blocker to hold the slot", timeout=120)
    for index, offset in cases:
        result = ScenarioResult(group, f"cancel@queued#{index:02d}+{offset:.2f}s", faults=1, details={"offset": round(offset, 3)})
        case_started = time.monotonic()
        run = world.create(account=account, delay_seconds=0)
        with injecting(result):
            time.sleep(offset)
            before = run_row(run.pk)
            result.details["stage_at_cancel"] = f"{before.status}/{before.stage}"
            if before.status != RunStatus.QUEUED:
                result.problems.append(f"harness: the run was {before.status}/{before.stage}, not queued, when cancelled")
            answer = world.cancel(run)
            result.details["cancel_answer"] = answer
            if answer != "dropped":
                result.problems.append(f"a queued run's cancel answered {answer!r}, not 'dropped'")
        results.append((result, run, case_started))
    done = [finish_scenario(ScenarioResult(group, "the blocker (no fault)"), blocker.environment_id, world.owner,
                            started=started, expect={blocker.environment_id: {EnvironmentStatus.READY}})]
    for result, run, case_started in results:
        done.append(finish_scenario(result, run.environment_id, world.owner, started=case_started,
                                    expect={run.environment_id: {EnvironmentStatus.FAILED}},
                                    after_fault=cancel_outcome(run.pk)))
    return done


@pytest.mark.parametrize("stage", ["queued", "init", "plan-start", "plan-end", "apply"])
def test_a_cancel_loses_no_state_and_claims_nothing_false(fault_world, stage, rng, request):
    group = request.node.name
    calibration = []
    if stage == "queued":
        offsets = [(i, rng.uniform(0, 0.5)) for i in range(1, CASES + 1)]
    else:
        lengths, calibration = stage_lengths(fault_world, group)
        offsets = [(i, WHERE[stage][1](rng, lengths)) for i in range(1, CASES + 1)]
    per_account = [offsets[i::ACCOUNTS] for i in range(ACCOUNTS)]
    if stage == "queued":
        jobs = [lambda a=account, c=cases: queued_cancels(fault_world, a, group, c)
                for account, cases in zip(fault_world.accounts, per_account)]
    else:
        jobs = [lambda a=account, c=cases: [one_cancel(fault_world, a, group, stage, i, o) for i, o in c]
                for account, cases in zip(fault_world.accounts, per_account)]
    results = calibration + [r for batch in in_parallel(jobs, ACCOUNTS) for r in batch]
    assert_ok(*results)
