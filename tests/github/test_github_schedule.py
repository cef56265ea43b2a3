"""schedule_mirror: the transitions ask for a sync on commit; off without configuration, and an
enqueue that fails never reaches the transition that asked for it."""

import logging

import pytest
from kombu.exceptions import OperationalError

from portal.models import GitHubMirror, Run, RunStatus
from portal.services import runs as transitions
from portal.services.github_mirror import schedule_mirror
from portal.services import github_mirror
from tests.factories import make_environment
from tests.github.conftest import TOKEN
from tests.stand_ins import TaskSink

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("runs_sent_to_workers")]

WORKER = "worker-1:123"


@pytest.fixture
def enqueued(monkeypatch):
    """The run ids `portal.mirror_run` was sent for (nothing reaches the broker)."""
    sent = []
    monkeypatch.setattr(github_mirror, "current_app", TaskSink(github_mirror.MIRROR_RUN_TASK, lambda run_id: sent.append(run_id)))
    return sent


def run_a_create_to_the_end(environment, capture):
    with capture(execute=True):
        run = transitions.queue_run(environment, "create")  # dispatched on commit (effects.queue_moved)
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    with capture(execute=True):
        transitions.claim_run(run.pk, WORKER)
        for stage in ("render", "init", "plan", "apply", "outputs"):
            transitions.set_stage(run.pk, stage, WORKER)
        transitions.succeed_create(Run.objects.get(pk=run.pk), WORKER, outputs={}, endpoints=[])
    return run


def test_every_mirrored_transition_enqueues_a_sync_on_commit(
    github_settings, enqueued, runs_sent_to_workers, django_capture_on_commit_callbacks
):
    environment = make_environment(status="provisioning", code_snapshot={"main.tf": "# x\n"})

    run = run_a_create_to_the_end(environment, django_capture_on_commit_callbacks)

    assert runs_sent_to_workers == [run.pk]  # the queue moved on by itself, once
    assert enqueued == [run.pk, run.pk, run.pk]  # queued, apply started, finished


def test_without_configuration_no_task_is_enqueued_and_the_code_stays_in_the_database(
    settings, enqueued, django_capture_on_commit_callbacks
):
    settings.GITHUB_TOKEN = ""
    settings.GITHUB_REPOSITORY = ""
    environment = make_environment(status="provisioning", code_snapshot={"main.tf": "# x\n"})

    run = run_a_create_to_the_end(environment, django_capture_on_commit_callbacks)

    assert enqueued == []
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
    assert GitHubMirror.objects.count() == 0
    assert Run.objects.get(pk=run.pk).environment.code_snapshot == {"main.tf": "# x\n"}


@pytest.mark.parametrize("missing", ["GITHUB_TOKEN", "GITHUB_REPOSITORY"])
def test_half_a_configuration_is_no_configuration(github_settings, enqueued, missing):
    setattr(github_settings, missing, "")

    schedule_mirror(make_environment().pk)

    assert enqueued == []


def test_a_broker_that_refuses_the_message_never_fails_the_transition(
    github_settings, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    def refuse(run_id):
        raise OperationalError(f"[Errno 111] Connection refused (while sending with token {TOKEN})")

    monkeypatch.setattr(github_mirror, "current_app", TaskSink(github_mirror.MIRROR_RUN_TASK, refuse))
    environment = make_environment(status="provisioning", code_snapshot={"main.tf": "# x\n"})

    run = run_a_create_to_the_end(environment, django_capture_on_commit_callbacks)

    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
    mirror = GitHubMirror.objects.get(run=run)
    assert mirror.attempts == 3 and mirror.last_error.startswith("Could not queue the GitHub sync: OperationalError")
    assert TOKEN not in mirror.last_error and TOKEN not in caplog.text
    assert any(r.levelno == logging.WARNING and "Could not queue" in r.getMessage() for r in caplog.records)


def test_the_periodic_catch_up_reschedules_only_mirrors_that_fell_behind(github_settings, enqueued):
    from portal.services.github_mirror import catch_up_stale
    from tests.factories import make_run

    environment = make_environment(status="ready")
    behind = make_run(environment, status=RunStatus.SUCCEEDED)
    GitHubMirror.objects.create(run=behind, repository="acme/provisioning", issue_number=1, closed=False)
    done = make_run(environment, status=RunStatus.SUCCEEDED)
    GitHubMirror.objects.create(run=done, repository="acme/provisioning", issue_number=2, closed=True)
    never = make_run(environment, kind="destroy", status=RunStatus.FAILED)
    make_run(make_environment(status="provisioning"), status=RunStatus.RUNNING)  # still going: its transitions will sync it
    make_run(environment, kind="rollback", status=RunStatus.SUCCEEDED)  # mirrored through its create run

    assert sorted(catch_up_stale()) == sorted([behind.pk, never.pk])
    assert sorted(enqueued) == sorted([behind.pk, never.pk])
