#!/usr/bin/env python
"""An `ecs-service` create through the whole portal against raw Terraform, on the same moto
server (issue 15). Prints one JSON document.

For each repetition: a create through the portal (service call -> Celery -> preflight with
AssumeRole -> init/plan/apply with the AWS provider from the mirror -> portal state -> CMDB
-> DNS check), timed from the request to `ready`; then the environment is deleted through
the portal (not timed), and the same rendered workspace - its `portal_provider.tf` aimed at
moto, the local backend instead of the portal's - gets raw `init` + `plan -out` + `apply`,
then `destroy` (not timed). Same moto, same account, same names. Goal ratio <= 1.03.

It starts its own moto server, web server and Celery worker (tests/processes.py) on a
scratch database: BENCH_DATABASE_URL (default SQLite in a temporary folder; a PostgreSQL
database whose name starts with `bench` is dropped and recreated) and BENCH_BROKER_URL
(default Redis db 13, flushed). The AWS provider comes from TF_PROVIDER_MIRROR (as in the
tests). Usage: `.venv/bin/python bench/aws_provisioning.py [--reps 1]`.
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

from tests.moto_server import PATTERNS_ENV, MotoServer  # noqa: E402
from tests.processes import HAS_AWS_PROVIDER, NO_AWS_PROVIDER, PROVIDER_MIRROR, CeleryWorker, free_port, gunicorn_process, purge_broker  # noqa: E402

TFEXEC = ROOT / "provisioning" / "tfexec.py"
SANDBOX = "210987654321"
ZONE = "bench.sandbox.test"


def wait_for(env_id, statuses, timeout=900.0):
    from portal.models import Environment

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, reason = Environment.objects.values_list("status", "status_reason").get(pk=env_id)
        if status in statuses:
            return
        if status not in ("provisioning", "deleting"):
            raise RuntimeError(f"environment {env_id} ended {status}: {reason}")
        time.sleep(0.05)
    raise RuntimeError(f"environment {env_id} not {statuses} after {timeout}s")


def raw_terraform(files: dict[str, str], scratch: Path) -> tuple[float, dict]:
    """init + plan + apply of the portal's workspace with a local backend, then destroy."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-raw-aws-", dir=scratch))
    for name, content in files.items():
        if name != "portal_backend.tf":
            path = workdir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    config = workdir / "terraform.tfrc.json"
    config.write_text(json.dumps({"provider_installation": [{"filesystem_mirror": [{"path": str(PROVIDER_MIRROR)}]}]}))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TF_IN_AUTOMATION": "1", "TF_INPUT": "0",
           "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": str(config),
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

    def terraform(*args):
        subprocess.run([sys.executable, "-I", str(TFEXEC), *args], cwd=workdir, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    steps, started = {}, time.monotonic()
    for args in (["init", "-input=false", "-json"],
                 ["plan", "-input=false", "-json", "-out=tfplan"],
                 ["apply", "-input=false", "-json", "-auto-approve", "tfplan"]):
        step_started = time.monotonic()
        terraform(*args)
        steps[args[0]] = round(time.monotonic() - step_started, 3)
    elapsed = time.monotonic() - started
    terraform("destroy", "-input=false", "-json", "-auto-approve")
    shutil.rmtree(workdir, ignore_errors=True)
    return elapsed, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    if not HAS_AWS_PROVIDER:
        print(json.dumps({"skipped": NO_AWS_PROVIDER}))
        return

    var = Path(tempfile.mkdtemp(prefix="bench-aws-var-"))
    moto = MotoServer(var / "moto_server.log", PATTERNS_ENV)
    endpoint = moto.start()
    database_url = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{var}/bench.sqlite3")
    prepare_database(database_url)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", str(var)),
        "DJANGO_SETTINGS_MODULE": "portal.settings", "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"),
        "PORTAL_VAR_DIR": str(var), "SECRET_KEY": "bench-only-secret", "PORTAL_URL": f"http://127.0.0.1:{port}",
        "RUN_LEASE_SECONDS": "60", "LOG_LEVEL": "WARNING", "TERRAFORM_PROVIDER_MIRROR": str(PROVIDER_MIRROR),
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from portal.models import Department, Environment, Product, Run, SandboxAccount
    from portal.services.environments import request_create, request_delete
    from provisioning.aws.simulated import prepare_account

    call_command("migrate", verbosity=0)
    purge_broker(settings.CELERY_BROKER_URL, getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}))
    department = Department.objects.create(slug="bench", name="Bench")
    user = User.objects.create_user("bench", password="x", is_staff=True)
    department.members.add(user)
    account = SandboxAccount.objects.create(
        department=department, name="moto", account_id=SANDBOX, kind="aws", region="eu-west-1", dns_zone=ZONE,
        role_arn=f"arn:aws:iam::{SANDBOX}:role/portal", external_id="bench", endpoint_url=endpoint,
        shared_infrastructure=prepare_account(endpoint, SANDBOX, "eu-west-1", ZONE)["shared_infrastructure"],
    )
    product = Product.objects.create(department=department, slug="bench", name="Bench")

    logs = var / "logs"
    web = gunicorn_process(env, logs, port=port)
    worker = CeleryWorker(env, logs, node_name="bench@%h", concurrency=2)
    web.start()
    worker.start()
    full, raw, raw_steps = [], [], []
    try:
        def create(name):
            return request_create(user=user, product=product, pattern_slug="ecs-service", name=name,
                                  parameters={"app_name": "api"}, account=account)

        def delete(env_id):
            request_delete(user=user, environment=Environment.objects.get(pk=env_id))
            wait_for(env_id, {"deleted"})

        # Warm-up: the pool child's imports, the provider binary in the page cache.
        warm = create("warm")
        wait_for(warm.environment_id, {"ready"})
        delete(warm.environment_id)
        for rep in range(args.reps):
            started = time.monotonic()
            run = create(f"b{rep}")
            wait_for(run.environment_id, {"ready"})
            full.append(time.monotonic() - started)
            snapshot = Environment.objects.get(pk=run.environment_id).code_snapshot
            delete(run.environment_id)
            elapsed, steps = raw_terraform(snapshot, var)
            raw.append(elapsed)
            raw_steps.append(steps)
        last = Run.objects.get(pk=run.pk)
        print(json.dumps({
            "pattern": "ecs-service",
            "moto": endpoint,
            "resources": last.plan_summary.get("add"),
            "reps": args.reps,
            "full_stack_s": [round(v, 3) for v in full],
            "raw_terraform_s": [round(v, 3) for v in raw],
            "ratio_median": round(statistics.median(full) / statistics.median(raw), 3),
            "goal": 1.03,
            "last_full_run_steps_s": {c["step"]: round(c["duration"], 3) for c in last.commands},
            "last_full_run_queued_to_finished_s": round((last.finished_at - last.queued_at).total_seconds(), 3),
            "last_raw_run_steps_s": raw_steps[-1],
        }, indent=2))
    finally:
        worker.stop()
        web.stop()
        moto.stop()
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
