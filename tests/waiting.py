"""Polling helpers for tests that watch real processes (the worker, gunicorn, Terraform)
change the database: wait for a condition, never for a fixed time."""

import time

from portal.models import Environment, Run
from portal.models.runs import UNFINISHED


def wait_until(predicate, what="condition", timeout=120, interval=0.1):
    """Call `predicate` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {what} after {timeout}s")


def wait_for_environment(env_id, statuses, timeout=120):
    """Poll the row until the environment settles in one of `statuses` with no run unfinished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        env = Environment.objects.get(pk=env_id)
        busy = env.runs.filter(status__in=UNFINISHED).exists()
        if env.status in statuses and not busy:
            return env
        time.sleep(0.2)
    runs = list(Run.objects.filter(environment_id=env_id).values("pk", "kind", "status", "stage", "explanation"))
    raise AssertionError(f"environment {env_id} is {env.status}, not {statuses} after {timeout}s; runs: {runs}")
