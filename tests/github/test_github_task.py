"""The `portal.mirror_run` task's retry wiring, run eagerly (`apply`: each retry runs at once,
the countdown it asked for is recorded): backoff with jitter on errors, GitHub's delay on rate
limits, no retry when a retry cannot help."""

import threading

import pytest
from celery.app.task import Task
from django.db import connection

from portal.models import GitHubMirror
from portal.services import github_mirror
from portal.services import runs as transitions
from portal.tasks import MIRROR_MAX_RETRIES, _mirror_backoff, mirror_run
from tests.factories import make_environment

pytestmark = pytest.mark.django_db


@pytest.fixture
def countdowns(monkeypatch):
    """Countdowns the task asked for, in order (retries still run, eagerly)."""
    asked = []
    original = Task.retry

    def retry(self, *args, **kwargs):
        asked.append(kwargs.get("countdown"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(mirror_run._get_current_object()), "retry", retry)
    return asked


@pytest.fixture
def run(github_settings):
    environment = make_environment(status="provisioning", code_snapshot={"main.tf": "# x\n"})
    return transitions.queue_run(environment, "create")


def test_it_retries_with_growing_jittered_backoff_until_github_answers(run, fake_github, countdowns):
    fake_github.fail(2, 500, match=r"POST .*/issues$")

    result = mirror_run.apply(args=[run.pk])

    assert result.successful()
    assert len(countdowns) == 2 and 2.5 <= countdowns[0] <= 5 and 5 <= countdowns[1] <= 10
    mirror = GitHubMirror.objects.get(run=run)
    assert mirror.issue_number == 1 and mirror.milestones == ["code", "queued"] and mirror.attempts == 2
    assert len(fake_github.issues) == 1 and len(fake_github.comments) == 1


def test_a_rate_limit_is_waited_out_and_github_is_not_called_meanwhile(run, fake_github, countdowns):
    fake_github.rate_limit(600, kind="retry_after")

    result = mirror_run.apply(args=[run.pk])

    assert result.failed()  # every eager retry came back before the reset
    assert len(fake_github.calls) == 1  # only the call that was told to wait
    assert len(countdowns) == MIRROR_MAX_RETRIES + 1
    assert countdowns[0] >= 600 and all(c >= 590 for c in countdowns)


def test_an_answer_a_retry_cannot_change_is_recorded_and_not_retried(run, fake_github, countdowns, github_settings):
    github_settings.GITHUB_TOKEN = "ghp_" + "w" * 36  # GitHub says: bad credentials
    github_mirror.reset_clients()

    result = mirror_run.apply(args=[run.pk])

    assert result.successful() and countdowns == []
    mirror = GitHubMirror.objects.get(run=run)
    assert "HTTP 401" in mirror.last_error and mirror.attempts == 1


def test_a_busy_request_is_retried_soon(run, fake_github, countdowns):
    held, release = threading.Event(), threading.Event()

    def another_pass():  # on its own connection: a PostgreSQL advisory lock is per session
        try:
            with github_mirror._exclusive(run.pk):
                held.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=another_pass)
    holder.start()
    assert held.wait(10)
    try:
        mirror_run.apply(args=[run.pk])
    finally:
        release.set()
        holder.join()

    assert countdowns and 0.5 <= countdowns[0] <= 1.0
    assert fake_github.calls == []


def test_backoff_doubles_and_is_capped():
    for retries in range(12):
        delay = min(600.0, 5.0 * 2**retries)
        assert delay / 2 <= _mirror_backoff(retries) <= delay
