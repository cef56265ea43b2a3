#!/usr/bin/env python
"""Benchmarks of the provisioning engine (issue 4). Prints one JSON document.

(a) overhead: a `demo-ecs` create with delay_seconds=5 through the whole stack (service call
    -> Celery -> Terraform -> portal state -> CMDB) against raw `init` + `plan` + `apply` of the
    same rendered workspace (local backend, same flags). Goal ratio <= 1.03 (issue 14).
(b) parallelism: 4 environments in 4 sandbox accounts at once against 1 alone, `--reps` rounds
    (medians). Goal wall-time ratio <= 1.3 (the seed's one-creation-at-a-time design gives 4.0),
    and within 2% of raw Terraform's own ratio for the same 4 workspaces on this machine, measured
    in the same rounds (issue 14).
(c) dispatch latency: request committed (Run.queued_at) -> Terraform process started (the
    first command's start recorded by the worker), p50/p95 with a Redis broker. Goal p50 <= 30 ms.

It starts its own web server and Celery worker (tests/processes.py) on a scratch database:
BENCH_DATABASE_URL (default: SQLite in a temporary folder; a PostgreSQL database whose name
starts with `bench` is dropped and recreated) and BENCH_BROKER_URL (default Redis db 13,
flushed). Usage: `.venv/bin/python bench/provisioning.py [--reps 3] [--latency-samples 20]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import prepare_database  # noqa: E402

from tests.processes import CeleryWorker, free_port, gunicorn_process, purge_broker  # noqa: E402

TFEXEC = ROOT / "provisioning" / "tfexec.py"


def percentile(values, q):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def wait_ready(env_id, timeout=300.0):
    from portal.models import Environment

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Environment.objects.values_list("status", flat=True).get(pk=env_id)
        if status == "ready":
            return
        if status not in ("provisioning",):
            raise RuntimeError(f"environment {env_id} ended {status}")
        time.sleep(0.02)
    raise RuntimeError(f"environment {env_id} not ready after {timeout}s")


RAW_STEPS: list[dict[str, float]] = []  # per-step seconds of each raw run, for the breakdown


def raw_terraform(files: dict[str, str]) -> float:
    """init + plan + apply of the same workspace with a local backend, as a person would.
    The same work as the portal's run: the portal gives `local` accounts a footprint folder
    (each resource touches a file there, for the orphan report); so does this."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-raw-"))
    try:
        for name, content in files.items():
            if name != "portal_backend.tf":
                (workdir / name).write_text(content)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TF_IN_AUTOMATION": "1",
               "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": "/dev/null",
               "TF_VAR_footprint_dir": str(workdir / "footprint")}
        started = time.monotonic()
        steps = {}
        for args in (["init", "-input=false", "-json"],
                     ["plan", "-input=false", "-json", "-out=tfplan"],
                     ["apply", "-input=false", "-json", "-auto-approve", "tfplan"]):
            step_started = time.monotonic()
            subprocess.run([sys.executable, "-I", str(TFEXEC), *args], cwd=workdir, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            steps[args[0]] = round(time.monotonic() - step_started, 3)
        RAW_STEPS.append(steps)
        return time.monotonic() - started
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def group_cpu_seconds(pgids: list[int]) -> float:
    """User + system CPU seconds of the live processes in these process groups (the worker's
    and the web server's: Terraform runs in groups of its own, so it is not counted)."""
    from provisioning import procfs

    return sum(process.cpu_seconds() for process in procfs.live_processes() if process.pgrp in pgids)


def start_profilers(folder: str, pids: dict[str, int]) -> list[tuple[str, subprocess.Popen]]:
    """`py-spy record` of each process and its children (collapsed stacks, idle frames left out)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    return [
        (name, subprocess.Popen([str(spy), "record", "--pid", str(pid), "--subprocesses", "--rate", "250",
                                 "--format", "raw", "--output", str(Path(folder) / f"{name}.collapsed")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for name, pid in pids.items()
    ]


def top_frames(collapsed: Path, limit: int = 12) -> list[list]:
    """The functions most often on CPU (self time), as [function (file:line), share of samples]."""
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frame = stack.rsplit(";", 1)[-1]
        own[frame] = own.get(frame, 0) + int(count)
        total += int(count)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:limit]
    return [[frame, round(count / total, 3)] for frame, count in ranked] if total else []


def stop_profilers(spies, folder: str, logs: Path) -> dict:
    import signal as signals

    for _, spy in spies:
        spy.send_signal(signals.SIGINT)
    for _, spy in spies:
        spy.wait(timeout=60)
    durations: dict[str, list[float]] = {}
    for line in (logs / "web.log").read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1].startswith("/state/") and parts[-1].isdigit():
            durations.setdefault(parts[0], []).append(float(parts[-1]))
    shutil.copy(logs / "web.log", Path(folder) / "web-access.log")
    return {
        "state_requests": {method: {"count": len(values), "median_ms": statistics.median(values), "max_ms": max(values)}
                           for method, values in durations.items()},
        "top_frames": {name: top_frames(Path(folder) / f"{name}.collapsed") for name, _ in spies},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument("--delay", type=int, default=5)
    parser.add_argument("--profile", metavar="DIR", help="py-spy the worker and the web server during (a), and "
                        "log each state request's duration; collapsed stacks and the access log go to DIR")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="bench-var-"))
    database_url = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{var}/bench.sqlite3")
    broker_url = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
    prepare_database(database_url)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(var)),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "PORTAL_VAR_DIR": str(var),
        "SECRET_KEY": "bench-only-secret",
        "PORTAL_URL": f"http://127.0.0.1:{port}",
        "RUN_LEASE_SECONDS": "60",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    purge_broker(settings.CELERY_BROKER_URL, getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}))

    from django.contrib.auth.models import User

    from portal.models import CidrPool, Department, Environment, Product, Run, SandboxAccount
    from portal.services.environments import request_create

    department = Department.objects.create(slug="bench", name="Bench")
    user = User.objects.create_user("bench", password="x", is_staff=True)
    department.members.add(user)
    accounts = []
    for i in range(1, 5):
        account = SandboxAccount.objects.create(department=department, name=f"bench-{i}", account_id=f"00000000009{i}",
                                                kind="local", dns_zone=f"a{i}.bench.test", max_concurrent_runs=1)
        CidrPool.objects.create(account=account, cidr=f"10.{120 + i}.0.0/16", prefix_length=24)
        accounts.append(account)
    product = Product.objects.create(department=department, slug="bench", name="Bench")

    logs = var / "logs"
    if args.profile:
        # %(M)s: the request's duration in milliseconds, as gunicorn measured it.
        env["GUNICORN_CMD_ARGS"] = '--access-logformat "%(m)s %(U)s %(s)s %(M)s"'
    web = gunicorn_process(env, logs, port=port)
    worker = CeleryWorker(env, logs, node_name="bench@%h", concurrency=4)
    web.start()
    worker.start()
    counter = iter(range(1, 10_000))

    def create(account, delay):
        run = request_create(user=user, product=product, pattern_slug="demo-ecs", name=f"b{next(counter)}",
                             parameters={"delay_seconds": delay}, account=account)
        return run

    try:
        # Warm-up: the first run of each pool child pays imports and SQLite/WAL set-up.
        for account in accounts:
            wait_ready(create(account, 0).environment_id)

        # (a) overhead
        spies = start_profilers(args.profile, {"worker": worker.pid, "web": web.pid}) if args.profile else []
        full, raw = [], []
        for _ in range(args.reps):
            started, requested_at = time.monotonic(), time.time()
            run = create(accounts[0], args.delay)
            wait_ready(run.environment_id)
            full.append(time.monotonic() - started)
            seen_ready_at = time.time()
            raw.append(raw_terraform(Environment.objects.get(pk=run.environment_id).code_snapshot))
        profile = stop_profilers(spies, args.profile, logs) if args.profile else None
        last = Run.objects.get(pk=run.pk)
        steps = {c["step"]: round(c["duration"], 3) for c in last.commands}
        first_start = last.commands[0]["started_at"]
        last_end = last.commands[-1]["started_at"] + last.commands[-1]["duration"]
        overhead = {
            "last_full_run_breakdown_s": {
                # The request itself (pre-flight check, rows written, committed, dispatched).
                "request_to_queued": round(last.queued_at.timestamp() - requested_at, 3),
                "queued_to_first_terraform": round(first_start - last.queued_at.timestamp(), 3),
                "terraform_steps": steps,
                "between_steps": round(last_end - first_start - sum(steps.values()), 3),
                "last_terraform_to_finished": round(last.finished_at.timestamp() - last_end, 3),
                # The bench polls the environment's status every 20 ms.
                "finished_to_seen_ready": round(seen_ready_at - last.finished_at.timestamp(), 3),
            },
            "last_raw_run_steps_s": RAW_STEPS[-1],
            "profile": profile,
            "delay_seconds": args.delay,
            "reps": args.reps,
            "full_stack_s": [round(v, 3) for v in full],
            "raw_terraform_s": [round(v, 3) for v in raw],
            "ratio_median": round(statistics.median(full) / statistics.median(raw), 3),
            "goal": 1.03,  # issue 14 (issue 4 asked for 1.05)
        }

        # (b) parallelism, `reps` rounds: one create alone, then 4 at once in 4 accounts; then the
        # machine's own floor - the same 4 workspaces with raw Terraform, 1 alone and 4 at once.
        from concurrent.futures import ThreadPoolExecutor

        singles, fours, raw_singles, raw_fours, portal_cpu = [], [], [], [], []
        portal_groups = [os.getpgid(worker.pid), os.getpgid(web.pid)]
        for _ in range(args.reps):
            started = time.monotonic()
            wait_ready(create(accounts[0], args.delay).environment_id)
            singles.append(time.monotonic() - started)
            cpu_before = group_cpu_seconds(portal_groups)
            started = time.monotonic()
            started_four = time.time()
            runs = [create(account, args.delay) for account in accounts]
            for run in runs:
                wait_ready(run.environment_id)
            fours.append(time.monotonic() - started)
            portal_cpu.append((group_cpu_seconds(portal_groups) - cpu_before) / len(runs))
            snapshots = [Environment.objects.get(pk=run.environment_id).code_snapshot for run in runs]
            raw_singles.append(raw_terraform(snapshots[0]))
            started = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(raw_terraform, snapshots))
            raw_fours.append(time.monotonic() - started)
        breakdown = []
        for run in runs:
            run = Run.objects.get(pk=run.pk)
            breakdown.append({
                "queued_to_first_terraform": round(run.commands[0]["started_at"] - started_four, 3),
                **{c["step"]: round(c["duration"], 3) for c in run.commands},
            })
        single, four = statistics.median(singles), statistics.median(fours)
        raw_single, raw_four = statistics.median(raw_singles), statistics.median(raw_fours)
        parallelism = {
            "reps": args.reps,
            "single_s": [round(v, 3) for v in singles],
            "four_accounts_s": [round(v, 3) for v in fours],
            "raw_terraform_single_s": [round(v, 3) for v in raw_singles],
            "raw_terraform_four_at_once_s": [round(v, 3) for v in raw_fours],
            "ratio_median": round(four / single, 3),
            "raw_terraform_ratio_median": round(raw_four / raw_single, 3),
            "last_four_runs_breakdown_s": breakdown,
            # CPU the worker and web processes spent per create while 4 ran at once (the
            # request itself runs in this process and is not counted; nor is the database).
            "portal_cpu_s_per_create": [round(v, 3) for v in portal_cpu],
            "goal": 1.3,
            "goal_issue_14": "ratio_median within 2% of raw_terraform_ratio_median",
            "within_2_percent_of_raw": four / single <= 1.02 * raw_four / raw_single,
            "seed_design_ratio": 4.0,
            "worker_concurrency": 4,
        }

        # (c) dispatch latency
        samples = []
        for i in range(args.latency_samples):
            run = create(accounts[i % 4], 0)
            wait_ready(run.environment_id)
            run = Run.objects.get(pk=run.pk)
            samples.append((run.commands[0]["started_at"] - run.queued_at.timestamp()) * 1000)
        latency = {
            "broker": broker_url.split("://")[0],
            "samples": len(samples),
            "p50_ms": round(percentile(samples, 50), 1),
            "p95_ms": round(percentile(samples, 95), 1),
            "max_ms": round(max(samples), 1),
            "goal_p50_ms": 30,  # issue 14 (issue 4 asked for 100)
        }
        print(json.dumps({
            "database": database_url.split("://")[0],
            "cpus": os.cpu_count(),
            "overhead": overhead,
            "parallelism": parallelism,
            "dispatch_latency": latency,
        }, indent=2))
    finally:
        worker.stop()
        web.stop()
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
