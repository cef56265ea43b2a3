"""Helpers of the fault scenarios: the accounts they run in, a beat that reaps as Celery beat
would, waiting for a stage, and the faults themselves (database outage, web server outage)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, connections

from portal.models import Run, RunStatus
from portal.services import environments
from tests.faults.cluster import start_cluster, stop_cluster

log = logging.getLogger(__name__)

PATTERN = "demo-ecs"
POLL = 0.05
_names = iter(range(1, 10**6))
_names_lock = threading.Lock()


@dataclass
class FaultWorld:
    department: object
    product: object
    owner: object
    accounts: list = field(default_factory=list)

    def create(self, account=None, name: str | None = None, **params) -> Run:
        """Request a demo-ecs create in `account` (the first one by default); the queued run."""
        if name is None:
            with _names_lock:
                name = f"f{next(_names)}"
        return environments.request_create(
            user=self.owner, product=self.product, pattern_slug=PATTERN, name=name,
            parameters=params, account=account or self.accounts[0],
        )

    def delete(self, env_id: int) -> Run:
        from portal.models import Environment

        return environments.request_delete(user=self.owner, environment=Environment.objects.get(pk=env_id))

    def cancel(self, run: Run) -> str:
        return environments.request_cancel(user=self.owner, run=Run.objects.select_related("environment__product").get(pk=run.pk))


def make_world(accounts: int) -> FaultWorld:
    from tests.factories import make_account, make_department, make_pool, make_product, make_user

    department = make_department("faults", name="Faults")
    world = FaultWorld(
        department=department,
        product=make_product(department, slug="chaos", name="Chaos"),
        owner=make_user("fault-owner", departments=[department]),
    )
    for index in range(accounts):
        account = make_account(department, name=f"faults-{index}", dns_zone=f"f{index}.faults.test", max_concurrent_runs=1)
        make_pool(account, f"10.{100 + index}.0.0/16", prefix_length=24)
        world.accounts.append(account)
    return world


class Beat(threading.Thread):
    """Calls `reap_expired()` every REAP_INTERVAL_SECONDS, as Celery beat does in production
    (it keeps trying through a database outage and reaps as soon as it can again)."""

    def __init__(self, interval: float | None = None):
        super().__init__(name="faults-beat", daemon=True)
        self.interval = interval or float(getattr(settings, "REAP_INTERVAL_SECONDS", 10.0))
        self.stopped = threading.Event()
        self.reaped: dict[int, str] = {}
        self.errors = 0

    def run(self) -> None:
        from portal.services.reaper import reap_expired

        try:
            while not self.stopped.wait(self.interval):
                try:
                    done = reap_expired()
                    self.reaped.update({k: v for k, v in done.items() if v != "unchanged"})
                except Exception:  # the database may be down: as beat, try again next time
                    self.errors += 1
                    connection.close()
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=60)


# --- waiting ------------------------------------------------------------------------------------


STAGE_POLL = 0.02  # wait_for_stage


def run_row(run_id: int) -> Run:
    return Run.objects.get(pk=run_id)


def wait_for(predicate, what: str, timeout: float = 180, interval: float = POLL):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout}s")
        time.sleep(interval)


def wait_for_stage(run_id: int, stages, *, timeout: float = 180, resources_done: int = 0) -> Run:
    """Poll the Run row every 20 ms until its stage is one of `stages` (and, optionally, at
    least `resources_done` resources are done); fails if the run ends first. Init lasts about
    0.4 s here with four runs at once: at 50 ms a poller thread starved by the others once
    missed it entirely (CI, seed 974271: "ended succeeded before reaching ['init']")."""
    stages = {stages} if isinstance(stages, str) else set(stages)

    def reached():
        run = run_row(run_id)
        if run.status == RunStatus.RUNNING and run.stage in stages and run.resources_done >= resources_done:
            return run
        if not run.is_unfinished:
            raise AssertionError(f"run #{run_id} ended {run.status} ({run.explanation!r}) before reaching {sorted(stages)}")
        return None

    return wait_for(reached, f"run #{run_id} to reach {sorted(stages)}", timeout, interval=STAGE_POLL)


def wait_for_run(env_id: int, kind: str, stages, *, timeout: float = 180) -> Run:
    """The environment's run of `kind` (e.g. its rollback), once it is in one of `stages`."""
    stages = {stages} if isinstance(stages, str) else set(stages)

    def found():
        return Run.objects.filter(environment_id=env_id, kind=kind, status=RunStatus.RUNNING, stage__in=stages).first()

    return wait_for(found, f"a {kind} run of env {env_id} in {sorted(stages)}", timeout)


# --- faults --------------------------------------------------------------------------------------


def database_outage(seconds: float) -> dict:
    """Stop the private PostgreSQL cluster for `seconds`, then start it again.

    This process's own connection is closed on both sides of the outage (the caller must not
    query while it lasts). Always restarts the cluster, even if the wait is interrupted."""
    connections.close_all()
    stopped_in = stop_cluster("fast")
    began = time.monotonic()
    try:
        time.sleep(seconds)
    finally:
        started_in = start_cluster()
        connections.close_all()
    return {"fault": f"database stopped for {seconds:g}s", "stop_took": round(stopped_in, 2),
            "down_for": round(time.monotonic() - began, 2), "start_took": round(started_in, 2)}


def web_server_outage(web_server, seconds: float) -> dict:
    """SIGKILL gunicorn's whole process group, wait `seconds`, start it again."""
    import signal

    web_server.process.kill(signal.SIGKILL)
    began = time.monotonic()
    try:
        time.sleep(seconds)
    finally:
        web_server.process.start()
    return {"fault": f"web server SIGKILLed for {seconds:g}s", "down_for": round(time.monotonic() - began, 2)}


def in_parallel(jobs, workers: int):
    """Run callables on `workers` threads (one per account); each thread closes its own
    database connections. Returns their results in order; re-raises the first error."""

    def wrap(job):
        try:
            return job()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faults") as pool:
        futures = [pool.submit(wrap, job) for job in jobs]
        return [f.result() for f in futures]


class injecting:
    """`with injecting(result):` around the fault: if the scenario cannot get to its fault
    (the run ended early, a wait timed out), that is recorded as a problem of the scenario
    and the test goes on to settle, check and delete, so nothing is left behind."""

    def __init__(self, result):
        self.result = result

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None:
            return False
        if isinstance(exc, Exception):  # not KeyboardInterrupt / pytest-timeout's exit
            self.result.problems.append(f"the fault could not be injected as planned: {type(exc).__name__}: {exc}")
            connections.close_all()
            return True
        return False


def stage_timings(run_id: int) -> dict[str, float]:
    """Seconds each stage of a finished run lasted, from its stage events."""
    from portal.models import RunEvent

    events = list(RunEvent.objects.filter(run_id=run_id, kind=RunEvent.Kind.STAGE).order_by("seq").values_list("message", "created_at"))
    run = run_row(run_id)
    out = {}
    for index, (message, at) in enumerate(events):
        end = events[index + 1][1] if index + 1 < len(events) else run.finished_at
        if end:
            out[message.removeprefix("Stage: ")] = round((end - at).total_seconds(), 2)
    return out


def settle_create(run: Run, timeout: float = 240):
    """Wait for a create to settle and insist it ended `ready` (the starting point of a destroy fault)."""
    from tests.faults.invariants import settle

    env = settle(run.environment_id, timeout)
    assert env.status == "ready", f"the create ended {env.status} ({env.status_reason!r})"
    return env
