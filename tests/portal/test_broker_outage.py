"""A broker outage never turns a committed request into an error (issue 12).

With Redis down, POST create answered 500 although the environment and run were committed,
the CLI exited 1 with a traceback, and the worker logged "run N errored" for runs that
succeeded. Here a Redis of the test's own is stopped (SIGKILL) under a real gunicorn and a
real worker that use it: the API answers 202 with the run queued, the CLI exits 0, and once
Redis is back the reaper's pass dispatches the run, which is built - once, with no error
logged. Beat (whose reaper refills the account slots every pass) uses the same Redis.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import json
import urllib.request

import pytest

from django.utils import timezone

from portal.models import Environment, ReaperPass, Run, RunStatus
from portal.services import tokens
from tests.factories import make_account, make_department, make_pool, make_product, make_user
from tests.processes import BASE_DIR, CeleryWorker, ManagedProcess, beat_process, free_port, gunicorn_process
from tests.waiting import wait_for_environment, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def redis_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def stack(portal_env, process_log_dir, tmp_path):
    """A private Redis, and a gunicorn, a worker and beat that use it as their broker."""
    port = free_port()
    redis = ManagedProcess(
        "outage-redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        env={"PATH": os.environ["PATH"]}, log_dir=process_log_dir, ready=lambda p: redis_up(port),
    )
    redis.start()
    web_port = free_port()
    env = dict(portal_env, CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0", CELERY_RESULT_BACKEND=f"redis://127.0.0.1:{port}/0",
               PORTAL_URL=f"http://127.0.0.1:{web_port}")
    web = gunicorn_process(env, process_log_dir, port=web_port, name="outage-web")
    worker = CeleryWorker(env, process_log_dir, node_name="outage@%h", name="outage-worker")
    web.start()
    worker.start()
    since = timezone.now()
    beat = beat_process(dict(env, REAP_INTERVAL_SECONDS="2"), process_log_dir, schedule_file=tmp_path / "beat-schedule",
                        ready=lambda p: ReaperPass.objects.filter(name="leases", at__gt=since).exists(), name="outage-beat")
    beat.start()
    try:
        yield {"redis": redis, "web": web, "worker": worker, "beat": beat, "env": env, "url": env["PORTAL_URL"]}
    finally:
        beat.stop()
        worker.stop()
        web.stop()
        redis.stop()


@pytest.fixture
def owner():
    department = make_department("payments")
    account = make_account(department, name="acct-outage", dns_zone="outage.example.test", max_concurrent_runs=2)
    make_pool(account, "10.72.0.0/16", prefix_length=24)
    make_product(department, slug="shop")
    return make_user("owner", departments=[department])


def test_a_broker_outage_answers_202_and_the_run_is_built_once_it_is_back(stack, owner):
    _, key = tokens.create_token(user=owner, name="outage")
    stack["redis"].kill(signal.SIGKILL)
    assert not redis_up(urlsplit(stack["env"]["CELERY_BROKER_URL"]).port)

    started = time.monotonic()
    request = urllib.request.Request(
        f"{stack['url']}/api/v1/environments/", method="POST",
        data=json.dumps({"product": "shop", "pattern": "demo-ecs", "name": "through-outage"}).encode(),
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 202, response.read()[:500]
    answered_in = time.monotonic() - started
    run = Run.objects.get(environment__name="through-outage")
    assert run.status == RunStatus.QUEUED, "a run the broker refused waits in the queue"
    assert "broker could not be reached" in run.events.last().message

    cli = subprocess.run(
        [sys.executable, "manage.py", "provision", "--user", "owner", "create", "--product", "shop",
         "--pattern", "demo-ecs", "--name", "cli-through-outage", "--no-wait"],
        cwd=BASE_DIR, env=stack["env"], capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 0 and "Traceback" not in cli.stderr, cli.stdout + cli.stderr
    assert "queued" in cli.stdout

    stack["redis"].start()  # back, empty: the queue lives in the database
    stack["worker"].wait_for_log(r"Connected to redis://", timeout=60)
    for name in ("through-outage", "cli-through-outage"):
        env_id = Environment.objects.get(name=name).pk
        # Beat's reaper refills the slots on its next pass.
        wait_until(lambda env_id=env_id: Environment.objects.get(pk=env_id).status == "ready",
                   timeout=120, interval=0.5, what=f"{name} to be built")
        wait_for_environment(env_id, {"ready"})
    assert Environment.objects.filter(name="through-outage").count() == 1
    # Celery itself logs its lost connection (with a traceback of its own); the portal logs no
    # error at all - in particular no "run N errored" for runs that succeeded.
    log = stack["worker"].log_since_start()
    portal_errors = [line for line in log.splitlines() if " ERROR portal." in line or " errored" in line]
    assert portal_errors == [], portal_errors
    assert answered_in < 30, answered_in
