"""Integration: a real prefork Celery worker (from the `celery_worker` fixture) takes a task
published by this process from the shared broker and answers through the result backend."""

import signal

import pytest

from portal.tasks import health

pytestmark = pytest.mark.slow  # starts gunicorn and a Celery worker


def test_a_real_worker_runs_the_health_task(celery_worker):
    result = health.delay()

    payload = result.get(timeout=30)

    assert payload["status"] == "ok"
    assert payload["worker"] == celery_worker.hostname  # this worker, not an eager call
    celery_worker.wait_for_log(rf"Task portal\.health\[{result.id}\] succeeded", timeout=10)


def test_a_killed_worker_can_be_replaced_by_a_fresh_one(celery_worker):
    old_pid = celery_worker.pid

    celery_worker.kill(signal.SIGKILL)
    assert not celery_worker.alive()
    celery_worker.restart()

    assert celery_worker.pid != old_pid
    assert health.delay().get(timeout=30)["worker"] == celery_worker.hostname
