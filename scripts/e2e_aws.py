#!/usr/bin/env python
"""Live smoke test in a REAL sandbox AWS account: create and delete an `ecs-service`
environment through the whole portal (service -> Celery -> Terraform -> AWS -> CMDB).

Never run in CI (it refuses when CI is set): it needs real credentials, network access to the
Terraform registry for the AWS provider, and it creates billable resources for a few minutes.
`make e2e-aws` runs it. Set:

  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY [/ AWS_SESSION_TOKEN]   the portal's own credentials
                                        (or run it on a host with a role)
  E2E_ACCOUNT_ID        the sandbox account id (12 digits)
  E2E_ROLE_ARN          the role the portal assumes there (trust: sts:AssumeRole + sts:SetSourceIdentity)
  E2E_EXTERNAL_ID       its external id (optional)
  E2E_REGION            e.g. eu-west-1
  E2E_DNS_ZONE          a Route 53 zone of that account, e.g. sandbox.example.com
  E2E_SHARED_INFRASTRUCTURE  JSON: {"ecs_cluster_arn", "alb_listener_arn", "alb_dns_name",
                        "alb_zone_id", "alb_security_group_id", "vpc_id", "private_subnet_ids": [...]}
  E2E_TIMEOUT_MINUTES   default 40

It prints every run event, checks the FQDN is recorded and resolvable in the zone, deletes the
environment, reports orphans, and exits non-zero if anything did not end as expected.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REQUIRED = ["E2E_ACCOUNT_ID", "E2E_ROLE_ARN", "E2E_REGION", "E2E_DNS_ZONE", "E2E_SHARED_INFRASTRUCTURE"]


def main() -> int:
    if os.environ.get("CI"):
        print("e2e-aws never runs in CI: it needs a real sandbox account.", file=sys.stderr)
        return 2
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        print("Set " + ", ".join(missing) + " (see the docstring of scripts/e2e_aws.py).", file=sys.stderr)
        return 2
    shared = json.loads(os.environ["E2E_SHARED_INFRASTRUCTURE"])
    timeout = 60 * float(os.environ.get("E2E_TIMEOUT_MINUTES", "40"))

    from tests.processes import CeleryWorker, free_port, gunicorn_process

    var = Path(tempfile.mkdtemp(prefix="e2e-aws-"))
    port = free_port()
    env = {
        name: os.environ[name]
        for name in ("PATH", "HOME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        if name in os.environ
    }
    env.update({
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PYTHONPATH": str(ROOT),
        "PORTAL_VAR_DIR": str(var),
        "SECRET_KEY": "e2e-only-secret",
        "PORTAL_URL": f"http://127.0.0.1:{port}",
    })
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User

    from portal.models import Department, Environment, Product, SandboxAccount
    from portal.models.cmdb import ENVIRONMENT_DELETABLE
    from portal.models.runs import UNFINISHED
    from portal.selectors import run_events_after
    from portal.services import environments

    department = Department.objects.create(slug="e2e", name="E2E")
    user = User.objects.create_user("e2e", is_staff=True)
    department.members.add(user)
    account = SandboxAccount(
        department=department, name="e2e", account_id=os.environ["E2E_ACCOUNT_ID"], kind="aws",
        region=os.environ["E2E_REGION"], role_arn=os.environ["E2E_ROLE_ARN"],
        external_id=os.environ.get("E2E_EXTERNAL_ID", ""), dns_zone=os.environ["E2E_DNS_ZONE"],
        shared_infrastructure=shared,
    )
    account.full_clean()
    account.save()
    product = Product.objects.create(department=department, slug="e2e", name="E2E")

    web = gunicorn_process(env, var / "logs", port=port)
    worker = CeleryWorker(env, var / "logs", node_name="e2e@%h", concurrency=1)
    web.start()
    worker.start()

    def follow(run, wanted):
        seen = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            environment = Environment.objects.get(pk=run.environment_id)
            for r in environment.runs.filter(pk__gte=run.pk).order_by("pk"):
                for event in run_events_after(r.pk, seen.get(r.pk, 0)):
                    seen[r.pk] = event.seq
                    print(f"[run {r.pk}] {event.message}", flush=True)
            if not environment.runs.filter(status__in=UNFINISHED).exists() and environment.status != "provisioning":
                return environment.status == wanted, environment
            time.sleep(2)
        return False, Environment.objects.get(pk=run.environment_id)

    ok = False
    try:
        name = f"e2e-{int(time.time()) % 100000}"
        run = environments.request_create(user=user, product=product, pattern_slug="ecs-service", name=name)
        created, environment = follow(run, "ready")
        print(f"create: {environment.status} {environment.status_reason}")
        fqdns = list(environment.endpoints.values_list("fqdn", flat=True))
        print(f"endpoints: {fqdns}")
        if environment.status in ENVIRONMENT_DELETABLE:
            run = environments.request_delete(user=user, environment=environment)
            deleted, environment = follow(run, "deleted")
            print(f"delete: {environment.status}; orphans: {environment.orphans}")
        else:
            deleted = environment.status == "failed"
        ok = created and bool(fqdns) and deleted and not environment.orphans
    finally:
        worker.stop()
        web.stop()
        shutil.rmtree(var, ignore_errors=True)
    print("e2e-aws:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
