#!/usr/bin/env python
"""Drift checks of many ready environments while people create (issue 16). Prints one JSON document.

Makes N ready `demo-ecs` environments over A accounts (local accounts, each with one run slot
and drift checks switched on for the bench - local accounts are off by default), then lets the
scheduler queue a drift check for every one of them and, while those run on the drift worker,
requests a user create every few seconds in a random account. Reported:

- drift: total time from the scheduler's pass to the last check finished, per-check p50/max,
  how the checks ended (all should be in sync: nothing drifts offline);
- creates during drift against the same creates with no drift running (baseline): how long
  each waited for an account slot (queued -> dispatched), and queued -> first Terraform
  command. Drift checks hold no slot, so the goal is 0 s of waiting caused by drift: the slot
  wait under drift is no worse than the baseline's (both are the dispatcher's few ms).

Like bench/provisioning.py it starts its own gunicorn, run worker and drift worker on a scratch
database (BENCH_DATABASE_URL; default SQLite) and broker (BENCH_BROKER_URL, default Redis db 13).
Usage: `.venv/bin/python bench/drift.py [--environments 200] [--accounts 10] [--creates 10]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import prepare_database  # noqa: E402

from tests.processes import CeleryWorker, free_port, gunicorn_process, purge_broker  # noqa: E402


def wait_settled(env_ids, timeout=1800.0):
    from portal.models import Environment

    deadline = time.monotonic() + timeout
    pending = set(env_ids)
    while pending and time.monotonic() < deadline:
        done = dict(Environment.objects.filter(pk__in=pending).exclude(status="provisioning").values_list("pk", "status"))
        bad = {pk: status for pk, status in done.items() if status != "ready"}
        if bad:
            raise RuntimeError(f"environments ended badly: {bad}")
        pending -= set(done)
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"{len(pending)} environments not ready after {timeout}s")


def create_wait(run) -> dict:
    """How long the create waited for its account's slot, and what held that slot when it was
    requested: only runs take slots, so a drift check can never be among the holders; a wait
    with no holder is the dispatcher's own latency (commit -> dispatch), not queueing."""
    from django.db.models import Q

    from portal.models import Run

    run = Run.objects.get(pk=run.pk)
    holders = Run.objects.filter(account_id=run.account_id, started_at__lte=run.queued_at).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gt=run.queued_at)).exclude(pk=run.pk).count()
    return {
        "slot_wait_s": round((run.started_at - run.queued_at).total_seconds(), 4),
        "slot_held_by_runs_at_request": holders,
        "queued_to_first_terraform_s": round(run.commands[0]["started_at"] - run.queued_at.timestamp(), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environments", type=int, default=200)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--creates", type=int, default=10, help="user creates during the drift checks (and baseline)")
    parser.add_argument("--create-every", type=float, default=3.0, help="seconds between those creates")
    parser.add_argument("--drift-concurrency", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    database_url = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{var}/bench.sqlite3")
    broker_url = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
    prepare_database(database_url)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", str(var)),
        "DJANGO_SETTINGS_MODULE": "portal.settings", "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url, "PORTAL_VAR_DIR": str(var), "SECRET_KEY": "bench-only-secret",
        "PORTAL_URL": f"http://127.0.0.1:{port}", "RUN_LEASE_SECONDS": "60", "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    purge_broker(settings.CELERY_BROKER_URL, getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}))

    from django.contrib.auth.models import User

    from portal.models import CidrPool, Department, DriftCheck, Product, SandboxAccount
    from portal.services import drift
    from portal.services.environments import request_create

    department = Department.objects.create(slug="bench", name="Bench")
    user = User.objects.create_user("bench", password="x", is_staff=True)
    department.members.add(user)
    accounts = []
    for i in range(args.accounts):
        account = SandboxAccount.objects.create(
            department=department, name=f"bench-{i}", account_id=f"0000000001{i:02d}", kind="local",
            dns_zone=f"a{i}.bench.test", max_concurrent_runs=1, drift_check_hours=1,
        )
        CidrPool.objects.create(account=account, cidr=f"10.{100 + i}.0.0/16", prefix_length=24)
        accounts.append(account)
    product = Product.objects.create(department=department, slug="bench", name="Bench")
    counter = iter(range(1, 1_000_000))
    rng = random.Random(16)

    def create(account):
        return request_create(user=user, product=product, pattern_slug="demo-ecs", name=f"e{next(counter)}",
                              parameters={}, account=account)

    def user_creates() -> tuple[list[dict], list]:
        # One create per account in turn (shuffled): a create never waits behind another
        # user's create, so any slot wait would be drift's.
        order = rng.sample(accounts, len(accounts))
        runs = []
        for i in range(args.creates):
            runs.append(create(order[i % len(order)]))
            time.sleep(args.create_every)
        wait_settled([run.environment_id for run in runs])
        return [create_wait(run) for run in runs], runs

    logs = var / "logs"
    web = gunicorn_process(env, logs, port=port)
    worker = CeleryWorker(env, logs, node_name="bench@%h", concurrency=args.worker_concurrency)
    drift_worker = CeleryWorker(env, logs, node_name="drift@%h", concurrency=args.drift_concurrency, queues="drift",
                                name="drift-worker")
    web.start()
    worker.start()
    drift_worker.start()
    try:
        started = time.monotonic()
        runs = [create(accounts[i % len(accounts)]) for i in range(args.environments)]
        wait_settled([run.environment_id for run in runs])
        made_in = time.monotonic() - started

        baseline, _ = user_creates()  # no drift check running

        scheduled_at = time.monotonic()
        queued = drift.schedule_due()
        during, during_runs = user_creates()
        deadline = time.monotonic() + 3600
        while DriftCheck.objects.filter(pk__in=queued, status__in=["queued", "running"]).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("drift checks did not finish within an hour")
            time.sleep(0.2)
        total = time.monotonic() - scheduled_at
        checks = list(DriftCheck.objects.filter(pk__in=queued))
        durations = [(c.finished_at - c.started_at).total_seconds() for c in checks if c.started_at and c.finished_at]
        from portal.models import Run

        window = (min(c.started_at for c in checks if c.started_at), max(c.finished_at for c in checks if c.finished_at))
        overlapping = sum(1 for run in Run.objects.filter(pk__in=[r.pk for r in during_runs])
                          if window[0] <= run.queued_at <= window[1])
        outcome: dict[str, int] = {}
        for check in checks:
            outcome[check.status] = outcome.get(check.status, 0) + 1

        def summary(rows):
            waits = [r["slot_wait_s"] for r in rows]
            firsts = [r["queued_to_first_terraform_s"] for r in rows]
            return {"creates": len(rows), "slot_wait_max_s": max(waits), "slot_wait_p50_s": statistics.median(waits),
                    "creates_whose_slot_was_held": sum(1 for r in rows if r["slot_held_by_runs_at_request"]),
                    "waited_behind_a_held_slot_s": round(sum(r["slot_wait_s"] for r in rows if r["slot_held_by_runs_at_request"]), 4),
                    "queued_to_first_terraform_p50_s": statistics.median(firsts),
                    "queued_to_first_terraform_max_s": max(firsts)}

        base, under = summary(baseline), summary(during)
        print(json.dumps({
            "database": database_url.split("://")[0],
            "cpus": os.cpu_count(),
            "environments": args.environments,
            "accounts": args.accounts,
            "made_ready_in_s": round(made_in, 1),
            "drift": {
                "checks": len(queued),  # the environments plus the baseline's creates, all ready
                "drift_worker_concurrency": args.drift_concurrency,
                "total_s": round(total, 1),
                "per_check_p50_s": round(statistics.median(durations), 2),
                "per_check_max_s": round(max(durations), 2),
                "outcomes": outcome,
                "user_creates_queued_while_checks_ran": overlapping,
            },
            "user_creates_baseline": base,
            "user_creates_during_drift": under,
            # A create waits only for its account's slot, and only runs hold slots: waiting
            # caused by drift is the wait of creates whose slot was held while checks ran
            # (no user run ahead of them here, so none is). What drift does cost a create is CPU
            # on this 2-core machine: the dispatch and first-Terraform latencies above.
            "longest_wait_caused_by_drift_s": under["waited_behind_a_held_slot_s"],
            "goal_wait_caused_by_drift_s": 0,
        }, indent=2))
    finally:
        drift_worker.stop()
        worker.stop()
        web.stop()
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
