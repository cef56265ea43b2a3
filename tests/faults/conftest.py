"""Fixtures of the fault-injection suite (see tests/faults/__init__.py).

The suite only runs under `python -m tests.faults.cluster` (`make test-faults`), which gives
it a PostgreSQL cluster of its own to stop: elsewhere (the regular `make test`) its tests are
collected and shown as skipped. It reuses the session fixtures of tests/conftest.py
(`portal_env`, `web_server`) - pytest-django creates the test database on the private cluster
because DATABASE_URL points at it - and replaces `celery_worker` with one of
FAULTS_WORKER_CONCURRENCY (default 4) processes, so scenarios run in parallel across accounts.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest

from tests.faults.cluster import cluster_available
from tests.faults.report import REPORT
from tests.conftest import running_worker

HERE = Path(__file__).resolve().parent
SKIP_REASON = "fault suite: run `make test-faults`"
WORKER_CONCURRENCY = int(os.environ.get("FAULTS_WORKER_CONCURRENCY", "4"))
ACCOUNTS = WORKER_CONCURRENCY


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cluster_available():
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    seed = os.environ.get("FAULTS_SEED")
    REPORT.seed = int(seed) if seed else random.SystemRandom().randrange(10**6)


def _report_path() -> Path | None:
    from django.conf import settings

    return Path(settings.VAR_DIR).resolve() / "faults-report.json"


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    if REPORT.results:
        REPORT.write(_report_path())


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not REPORT.results:
        if cluster_available():
            terminalreporter.write_line(f"fault suite: no scenario recorded (seed {REPORT.seed})")
        return
    terminalreporter.section("fault injection report")
    for line in REPORT.lines(_report_path()):
        terminalreporter.write_line(line)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def local_cloud(portal_env):
    """LOCAL_CLOUD_DIR, emptied at the start: the private cluster is new each session, so
    environment numbers start again at 1 and an old footprint would be mistaken for a new one."""
    from django.conf import settings

    root = Path(settings.LOCAL_CLOUD_DIR).resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def celery_worker(web_server, portal_env, process_log_dir, local_cloud):
    """As tests/conftest.py's, with WORKER_CONCURRENCY processes (one per account)."""
    yield from running_worker(portal_env, process_log_dir, concurrency=WORKER_CONCURRENCY)


@pytest.fixture
def beat(transactional_db, celery_worker):
    """Celery beat's reaper, in a thread of the test (stopped before the database is flushed)."""
    from tests.faults.harness import Beat

    thread = Beat()
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def fault_world(transactional_db, web_server, celery_worker, beat):
    from tests.faults.harness import make_world

    return make_world(ACCOUNTS)


@pytest.fixture
def rng(request):
    """A random.Random seeded from the session seed and the test id (printed in the report)."""
    return random.Random(f"{REPORT.seed}:{request.node.nodeid}")


@pytest.fixture
def started():
    return time.monotonic()
