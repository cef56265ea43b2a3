"""Shared pytest fixtures: real child processes that share the test database and broker.

Integration tests that need the portal running beside them ask for:

- `web_server` (session): gunicorn serving the portal on a free 127.0.0.1 port; the value is
  the base URL (a str, with `.process` for the log). It is also PORTAL_URL for children.
- `celery_worker` (session): a prefork Celery worker (`-n test@%h`, concurrency 2) on the
  same broker; `.pid`, `.hostname`, `.log_path`, `.kill(sig)`, `.restart()`,
  `.wait_for_log(regex)`. Its queue is purged before it starts.
- `portal_env` (session): the exact environment both children get.

Children connect to the SAME test database, so such tests must use `transactional_db`
(data committed, visible to other processes); asking for `db` with them is refused.

    def test_the_worker_answers(transactional_db, celery_worker):
        from portal.tasks import health
        assert health.delay().get(timeout=30)["worker"] == celery_worker.hostname

With REQUIRE_REAL_SERVICES=1 (CI) the run stops at once unless the database is PostgreSQL
and the broker is Redis, and both answer. Child logs: `<PORTAL_VAR_DIR>/logs/`.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.processes import (
    BASE_DIR,
    HAS_AWS_PROVIDER,
    PROVIDER_MIRROR,
    PASSTHROUGH_ENV,
    CeleryWorker,
    ProcessStartError,
    ServerURL,
    database_url,
    free_port,
    gunicorn_process,
    purge_broker,
    settings_env_names,
)

PROCESS_FIXTURES = {"web_server", "celery_worker"}
_CONFIGURED_DB_NAME = pytest.StashKey[str]()
_VAR_DIR_LOCK = pytest.StashKey[object]()
VAR_DIR_LOCK_WAIT_SECONDS = 30 * 60


# --- session checks and markers -------------------------------------------------------------
def pytest_sessionstart(session: pytest.Session) -> None:
    """REQUIRE_REAL_SERVICES=1: refuse to run on SQLite or the filesystem broker, or when
    PostgreSQL / Redis do not answer (CI must never pass on the embedded fallback).

    Also: a developer's real GITHUB_TOKEN in the shell must never make a test session mirror
    to real GitHub; tests that exercise the mirror set their own fake server."""
    from django.conf import settings

    if settings.configured:  # `-p no:django` runs of the engine's own tests have no settings
        settings.GITHUB_TOKEN = ""
        settings.GITHUB_REPOSITORY = ""
    if os.environ.get("REQUIRE_REAL_SERVICES", "") not in {"1", "true", "yes"}:
        return
    problems = _real_service_problems()
    if problems:
        pytest.exit("REQUIRE_REAL_SERVICES=1 but:\n  - " + "\n  - ".join(problems),
                    returncode=pytest.ExitCode.USAGE_ERROR)


def _real_service_problems() -> list[str]:
    from django.conf import settings

    problems = []
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        problems.append(f"the database engine is {db['ENGINE']}, not PostgreSQL (set DATABASE_URL)")
    else:
        import psycopg

        errors = []
        for dbname in (db["NAME"], "postgres"):  # the test DB is created via either
            try:
                psycopg.connect(host=db.get("HOST") or None, port=db.get("PORT") or None,
                                user=db.get("USER") or None, password=db.get("PASSWORD") or None,
                                dbname=dbname, connect_timeout=5).close()
                break
            except psycopg.Error as exc:
                errors.append(f"{dbname}: {str(exc).strip()}")
        else:
            problems.append("PostgreSQL does not answer: " + "; ".join(errors))
    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        problems.append(f"the Celery broker is {broker!r}, not redis:// (set CELERY_BROKER_URL)")
    else:
        import redis

        try:
            client = redis.Redis.from_url(broker, socket_connect_timeout=5, socket_timeout=5)
            client.ping()
            client.close()
        except redis.RedisError as exc:
            problems.append(f"Redis does not answer at {broker}: {exc}")
    return problems


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Whatever starts real processes is `slow`, and gets the test database (transactional)
    even if it asked for no database: pytest-django creates the test database only when a
    collected test needs it, and the children must never fall back to the configured one."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if PROCESS_FIXTURES & names:
            item.add_marker(pytest.mark.slow)
            if not item.get_closest_marker("django_db") and not {"db", "transactional_db"} & names:
                item.add_marker(pytest.mark.django_db(transaction=True))


def pytest_collection_finish(session: pytest.Session) -> None:
    """One database-using session per PORTAL_VAR_DIR at a time.

    Two sessions on the same var dir would share the SQLite test file (or the PostgreSQL test
    database name), the broker queue and the children's log/pid files: each would delete the
    other's database and steal its tasks. The second session waits here, before any test
    (and its timeout) starts. The lock is an flock, so a killed session never leaves it held.
    """
    if any(_needs_database(item) for item in session.items):
        session.config.stash[_VAR_DIR_LOCK] = _lock_var_dir(session.config)


def _needs_database(item: pytest.Item) -> bool:
    from django.test import TransactionTestCase

    if item.get_closest_marker("django_db"):
        return True
    if {"db", "transactional_db", "live_server", "django_db_setup"} & set(getattr(item, "fixturenames", ())):
        return True
    cls = getattr(item, "cls", None)
    return bool(cls and issubclass(cls, TransactionTestCase))


def _lock_var_dir(config: pytest.Config):
    from django.conf import settings

    var_dir = Path(settings.VAR_DIR).resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    handle = open(var_dir / ".pytest-session.lock", "a+")  # noqa: SIM115 (held for the session)
    deadline = time.monotonic() + VAR_DIR_LOCK_WAIT_SECONDS
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not announced:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                reporter = config.pluginmanager.get_plugin("terminalreporter")
                message = f"waiting for another test session using {var_dir} ({holder}) to finish"
                reporter.write_line(message) if reporter else print(message)
                announced = True
            if time.monotonic() > deadline:
                pytest.exit(f"{var_dir} stayed locked by another test session for "
                            f"{VAR_DIR_LOCK_WAIT_SECONDS}s", returncode=pytest.ExitCode.INTERRUPTED)
            time.sleep(0.5)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n")
    handle.flush()
    return handle


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse `db` (one uncommitted transaction) together with the process fixtures: the web
    server and the worker would not see the test's rows, and theirs would leak into others."""
    names = set(getattr(item, "fixturenames", ()))
    if not PROCESS_FIXTURES & names:
        return
    marker = item.get_closest_marker("django_db")
    marker_transaction = bool(marker and marker.kwargs.get("transaction", marker.args[0] if marker.args else False))
    if ("db" in names and "transactional_db" not in names) or (marker and not marker_transaction):
        pytest.fail(f"{item.nodeid}: use `transactional_db` (or django_db(transaction=True)) with "
                    "web_server / celery_worker, not `db`: other processes cannot see an "
                    "uncommitted test transaction", pytrace=False)


# --- database ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def django_db_modify_db_settings(request, django_db_modify_db_settings_parallel_suffix):
    """SQLite: put the test database in a FILE under PORTAL_VAR_DIR (not in memory) so the web
    server and the worker open the same database as the tests. PostgreSQL needs nothing."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    request.config.stash[_CONFIGURED_DB_NAME] = str(db["NAME"])
    if not db["ENGINE"].endswith("sqlite3"):
        yield
        return
    suffix = getattr(request.config, "workerinput", {}).get("workerid")
    test_file = Path(settings.VAR_DIR).resolve() / (f"test_{suffix}.sqlite3" if suffix else "test.sqlite3")
    test_file.parent.mkdir(parents=True, exist_ok=True)
    db.setdefault("TEST", {})["NAME"] = str(test_file)
    keep = request.config.getvalue("reuse_db")
    if not keep:
        _remove_sqlite(test_file)
    yield
    if not keep:
        _remove_sqlite(test_file)


def _remove_sqlite(path: Path) -> None:
    """The database and its WAL companions: a stale -wal beside a new database corrupts it."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# --- processes --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def process_log_dir() -> Path:
    """Where the children's logs go: `<PORTAL_VAR_DIR>/logs/` (var/test/logs under make test)."""
    from django.conf import settings

    path = Path(settings.VAR_DIR).resolve() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def portal_env(request, django_db_setup) -> dict[str, str]:
    """The environment of every child: built explicitly, nothing inherited but PATH/HOME/locale.

    Same test database (DATABASE_URL built from the live connection after the test DB was
    created), broker, result backend, PORTAL_VAR_DIR and SECRET_KEY as this process; variables
    that settings.py reads are forwarded when set here; PORTAL_URL is the web server's address
    (its port is chosen now). Changing the dict later only affects `celery_worker.restart()`.
    """
    from django.conf import settings
    from django.db import connection

    configured = request.config.stash.get(_CONFIGURED_DB_NAME, None)
    if str(connection.settings_dict["NAME"]) == configured:
        pytest.fail(f"the test database was not created (still {configured!r}); children must "
                    "never run against the configured database", pytrace=False)

    env = {name: os.environ[name] for name in PASSTHROUGH_ENV if name in os.environ}
    env.update({name: os.environ[name] for name in settings_env_names() if name in os.environ})
    env.update({
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "portal.settings"),
        "PYTHONPATH": str(BASE_DIR),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PORTAL_VAR_DIR": str(Path(settings.VAR_DIR).resolve()),
        "SECRET_KEY": settings.SECRET_KEY,
        "PORTAL_URL": f"http://127.0.0.1:{free_port()}",
        "RUN_LEASE_SECONDS": str(settings.RUN_LEASE_SECONDS),
        "PATTERNS_DIR": str(Path(settings.PATTERNS_DIR).resolve()),
        "GITHUB_TOKEN": "",  # never a developer's real token (see pytest_sessionstart)
        "GITHUB_REPOSITORY": "",
        # Never a developer's real AWS keys either: moto's dummy ones (a simulated account's
        # endpoint takes any); no PORTAL_AWS_ENDPOINT_URL, each account names its own.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "",
        "PORTAL_AWS_ENDPOINT_URL": "",
    })
    if HAS_AWS_PROVIDER and "TERRAFORM_PROVIDER_MIRROR" not in os.environ:
        env["TERRAFORM_PROVIDER_MIRROR"] = str(PROVIDER_MIRROR)
    if settings.CELERY_RESULT_BACKEND:
        env["CELERY_RESULT_BACKEND"] = settings.CELERY_RESULT_BACKEND
    return env


@pytest.fixture(scope="session")
def web_server(portal_env, process_log_dir):
    """gunicorn (gthread) with `portal_env` on PORTAL_URL's port; yields the base URL once
    /healthz answers 200; stopped (group SIGTERM, then SIGKILL) at the end of the session."""
    port = urlsplit(portal_env["PORTAL_URL"]).port
    process = gunicorn_process(portal_env, process_log_dir, port=port)
    try:
        process.start()
    except ProcessStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield ServerURL(portal_env["PORTAL_URL"], process)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def celery_worker(web_server, portal_env, process_log_dir):
    """A prefork worker (`celery -A portal worker --concurrency 2 -n test@%h`) with
    `portal_env`, started on a purged broker and yielded once it logs 'ready.'.

    `.kill(signal.SIGKILL)` kills its whole process group (the worker "dies"); `.restart()`
    starts a fresh one. Stopped at the end of the session.
    """
    yield from running_worker(portal_env, process_log_dir)


@pytest.fixture(scope="session")
def drift_worker(celery_worker, portal_env, process_log_dir):
    """The drift queue's own worker (`-Q drift -c 1`), as `make run` starts it: drift checks
    never take a process of the run worker. Started after `celery_worker` (which purges)."""
    worker = CeleryWorker(portal_env, process_log_dir, node_name="drift@%h", concurrency=1, queues="drift",
                          name="drift-worker")
    try:
        worker.start()
    except ProcessStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield worker
    finally:
        worker.stop()


def running_worker(portal_env, process_log_dir, **options):
    """The body of a worker fixture: a purged broker, a started worker, stopped at the end.
    `options` go to CeleryWorker (the fault suite asks for more processes)."""
    from django.conf import settings

    purge_broker(settings.CELERY_BROKER_URL, settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    worker = CeleryWorker(portal_env, process_log_dir, **options)
    try:
        worker.start()
    except ProcessStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def runs_sent_to_workers(monkeypatch) -> list[int]:
    """The run ids the queue asked a worker to execute, held here instead of the broker: for
    tests that execute the dispatched run themselves (a message left in the broker would be
    picked up by a later test's worker)."""
    from portal.services import dispatch

    from tests.stand_ins import TaskSink

    sent: list[int] = []
    monkeypatch.setattr(dispatch, "current_app", TaskSink(dispatch.EXECUTE_RUN_TASK, lambda *ids: sent.extend(ids)))
    return sent
