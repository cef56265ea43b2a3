"""portal.services.github_mirror.sync_run against the fake GitHub (PyGithub is the real client).

Runs move through the real transitions of `portal.services.runs`; inside the `db` fixture's
transaction their on-commit hooks never fire, so each test calls `sync_run` itself, the way
the `portal.mirror_run` task would after each transition.
"""

import logging
import re
import threading
import time

import pytest
from django.db import connection

from portal.models import GitHubMirror, Run, RunEvent, RunStatus
from portal.services import github_mirror
from portal.services import runs as transitions
from portal.services.events import append_events
from portal.services.github_mirror import MirrorBusy, sync_run
from provisioning.github import GitHubError, RateLimited
from tests.factories import make_account, make_department, make_environment, make_product, make_user
from tests.github.conftest import PORTAL_URL, TOKEN

pytestmark = pytest.mark.django_db

WORKER = "worker-1:123"
REPO = "/repos/acme/provisioning"
CODE = {
    "locals.tf": 'locals {\n  name = "dev"\n}\n',
    "main.tf": 'resource "terraform_data" "app" {}\n',
    "portal_backend.tf": 'terraform {\n  backend "http" {}\n}\n',
}
CODE_PATH = "environments/000000000777/shop-dev"


@pytest.fixture
def environment():
    department = make_department("payments", name="Payments")
    account = make_account(department, account_id="000000000777", name="payments-sandbox", dns_zone="sandbox.example.test")
    product = make_product(department, slug="shop", name="Shop")
    owner = make_user("owner", departments=[department])
    return make_environment(
        product,
        account=account,
        name="dev",
        status="provisioning",
        cidr="10.60.0.0/24",
        parameters={"delay_seconds": 1, "greeting": "hi `there` @everyone"},
        code_snapshot=CODE,
        requested_by=owner,
    )


def calls(fake, since=0):
    """The fake's requests from index `since`, with commit shas shortened to <sha>."""
    return [re.sub(r"[0-9a-f]{40}", "<sha>", r) for r in fake.requests()[since:]]


def start(run, *stages):
    transitions.dispatch_run(run.pk)
    transitions.claim_run(run.pk, WORKER)
    for stage in stages:
        enter_stage(run, stage)


def enter_stage(run, stage):
    """What the worker's RunRecorder does: the transition, then the stage event."""
    transitions.set_stage(run.pk, stage, WORKER)
    append_events(run.pk, [{"kind": RunEvent.Kind.STAGE, "message": f"Stage: {stage}", "data": {"stage": stage}}])


def queue_create(environment):
    return transitions.queue_run(environment, "create", requested_by=environment.requested_by)


def succeed(run):
    run = Run.objects.get(pk=run.pk)
    fqdn = "app-dev.sandbox.example.test"
    transitions.succeed_create(
        run, WORKER, outputs={"app_fqdn": fqdn}, endpoints=[{"fqdn": fqdn, "url": f"https://{fqdn}/", "kind": "app"}]
    )


# --- the three request shapes -------------------------------------------------------------------


def test_a_create_opens_an_issue_commits_the_code_comments_each_milestone_and_closes(github_settings, fake_github, environment):
    run = queue_create(environment)

    mirror = sync_run(run.pk)

    assert calls(fake_github) == [
        f"GET {REPO}/issues",  # an issue a lost response already created would be adopted
        f"POST {REPO}/issues",
        f"GET {REPO}",
        f"GET {REPO}/git/ref/heads/main",
        f"GET {REPO}/git/commits/<sha>",
        f"GET {REPO}/contents/{CODE_PATH}",
        f"POST {REPO}/git/trees",
        f"POST {REPO}/git/commits",
        f"PATCH {REPO}/git/refs/heads/main",
        f"POST {REPO}/issues/1/comments",  # queued
    ]
    issue = fake_github.issues[1]
    assert issue.title == "Create shop/dev (demo-ecs 1.1.0)" and issue.labels == ["portal", "create"]
    for expected in ("`shop`", "`Shop`", "`payments`", "`demo-ecs` version `1.1.0`", "`000000000777`",
                     "`10.60.0.0/24`", "`owner`", f"[#{run.pk}]({PORTAL_URL}/runs/{run.pk}/)", f"`{CODE_PATH}/`",
                     '"delay_seconds": 1'):
        assert expected in issue.body
    assert "```json" in issue.body  # parameters (with their @mention) stay inside a code block
    assert {p: c for p, c in fake_github.files().items() if p.startswith(CODE_PATH)} == {
        f"{CODE_PATH}/{name}": content for name, content in CODE.items()
    }
    commit = fake_github.history()[0]
    assert commit["message"].startswith("Create shop/dev (demo-ecs 1.1.0)") and "Refs #1" in commit["message"]
    assert (mirror.issue_number, mirror.issue_url) == (1, "https://github.example/acme/provisioning/issues/1")
    assert mirror.commit_sha == commit["sha"] and mirror.commit_url.endswith(commit["sha"])
    assert mirror.milestones == ["code", "queued"] and not mirror.closed and mirror.last_error == ""
    assert commit["sha"][:7] in fake_github.issue_comments(1)[0]

    start(run, "render", "init", "plan", "apply")
    mark = len(fake_github.calls)
    sync_run(run.pk)
    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments"]
    assert fake_github.issue_comments(1)[1].startswith("Apply started at ")

    enter_stage(run, "outputs")
    succeed(run)
    mark = len(fake_github.calls)
    mirror = sync_run(run.pk)
    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments", f"PATCH {REPO}/issues/1"]
    result = fake_github.issue_comments(1)[2]
    assert "**Succeeded**" in result and "`app-dev.sandbox.example.test` https://app-dev.sandbox.example.test/" in result
    assert fake_github.calls[-1].json == {"state": "closed", "state_reason": "completed"}
    assert issue.state == "closed"
    assert mirror.milestones == ["code", "queued", "apply", "result"] and mirror.closed

    mark = len(fake_github.calls)
    sync_run(run.pk)
    assert fake_github.requests()[mark:] == []  # caught up: nothing left to do, nothing called
    assert len(fake_github.issues) == 1 and len(fake_github.comments) == 3
    assert RunEvent.objects.filter(run=run, message__startswith="GitHub issue #1: https://github.example/").count() == 1


def test_a_failed_apply_explains_the_failure_then_the_rollback_and_closes(github_settings, fake_github, environment):
    run = queue_create(environment)
    sync_run(run.pk)
    start(run, "render", "init", "plan", "apply")
    sync_run(run.pk)

    rollback = transitions.fail_create_and_start_rollback(
        Run.objects.get(pk=run.pk), WORKER, explanation="terraform apply failed (exit 1): fail_on=service"
    )
    mark = len(fake_github.calls)
    mirror = sync_run(rollback.pk)  # a rollback run maps to the create run's issue
    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments"]
    failure = fake_github.issue_comments(1)[-1]
    assert "**Failed**" in failure and "fail_on=service" in failure
    assert f"Rollback run [#{rollback.pk}]({PORTAL_URL}/runs/{rollback.pk}/)" in failure
    assert not mirror.closed  # the rollback is still running

    enter_stage(rollback, "destroy")
    assert sync_run(rollback.pk).milestones == ["code", "queued", "apply", "result"]  # no comment for that
    transitions.succeed_destroy(Run.objects.get(pk=rollback.pk), WORKER)
    mark = len(fake_github.calls)
    mirror = sync_run(rollback.pk)

    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments", f"PATCH {REPO}/issues/1"]
    assert "**Rolled back**" in fake_github.issue_comments(1)[-1]
    assert fake_github.calls[-1].json == {"state": "closed", "state_reason": "not_planned"}
    assert mirror.run_id == run.pk and mirror.closed
    assert mirror.milestones == ["code", "queued", "apply", "result", "rollback"]
    assert GitHubMirror.objects.count() == 1 and len(fake_github.issues) == 1


def test_a_failing_rollback_says_the_environment_needs_attention(github_settings, fake_github, environment):
    run = queue_create(environment)
    start(run, "render", "init", "plan", "apply")
    rollback = transitions.fail_create_and_start_rollback(Run.objects.get(pk=run.pk), WORKER, explanation="boom")
    enter_stage(rollback, "destroy")
    transitions.fail_run(Run.objects.get(pk=rollback.pk), WORKER, explanation="terraform destroy failed (exit 1): network")

    sync_run(run.pk)  # catching up late: everything in one pass, in order

    comments = fake_github.issue_comments(1)
    starts = ("Queued at ", "Apply started at ", "**Failed** at ", "**Rollback failed** at ")
    assert len(comments) == 4 and all(c.startswith(p) for c, p in zip(comments, starts, strict=True))
    assert "boom" in comments[2] and "network" in comments[3] and "needs attention" in comments[3]
    assert fake_github.issues[1].state == "closed"


def test_a_delete_opens_an_issue_commits_the_removal_reports_and_closes(github_settings, fake_github, environment):
    fake_github.push_commit({f"{CODE_PATH}/{name}": content for name, content in CODE.items()}, "Create shop/dev")
    environment.status = "ready"
    environment.save()
    destroy = transitions.queue_run(environment, "destroy", requested_by=environment.requested_by)

    mirror = sync_run(destroy.pk)
    assert calls(fake_github) == [f"GET {REPO}/issues", f"POST {REPO}/issues", f"POST {REPO}/issues/1/comments"]
    assert fake_github.issues[1].title == "Delete shop/dev" and fake_github.issues[1].labels == ["portal", "delete"]
    assert mirror.milestones == ["queued"]

    start(destroy, "render", "init", "destroy")
    mark = len(fake_github.calls)
    sync_run(destroy.pk)
    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments"]
    assert fake_github.issue_comments(1)[-1].startswith("Destroy started at ")

    transitions.succeed_destroy(Run.objects.get(pk=destroy.pk), WORKER)
    mark = len(fake_github.calls)
    mirror = sync_run(destroy.pk)

    assert calls(fake_github, mark) == [
        f"GET {REPO}",
        f"GET {REPO}/git/ref/heads/main",
        f"GET {REPO}/git/commits/<sha>",
        f"GET {REPO}/contents/{CODE_PATH}",
        f"POST {REPO}/git/trees",
        f"POST {REPO}/git/commits",
        f"PATCH {REPO}/git/refs/heads/main",
        f"POST {REPO}/issues/1/comments",
        f"PATCH {REPO}/issues/1",
    ]
    removal = fake_github.history()[0]
    assert removal["message"].startswith("Delete shop/dev") and "Refs #1" in removal["message"]
    assert not [p for p in fake_github.files() if p.startswith(CODE_PATH)]
    assert mirror.commit_sha == removal["sha"] and mirror.closed
    result = fake_github.issue_comments(1)[-1]
    assert "**Destroyed**" in result and removal["sha"][:7] in result
    assert fake_github.calls[-1].json == {"state": "closed", "state_reason": "completed"}


def test_a_failed_delete_keeps_the_code_and_says_the_delete_can_be_retried(github_settings, fake_github, environment):
    fake_github.push_commit({f"{CODE_PATH}/{name}": content for name, content in CODE.items()}, "Create shop/dev")
    environment.status = "ready"
    environment.save()
    destroy = transitions.queue_run(environment, "destroy")
    start(destroy, "render", "init", "destroy")
    transitions.fail_run(Run.objects.get(pk=destroy.pk), WORKER, explanation="terraform destroy failed (exit 1)")

    mirror = sync_run(destroy.pk)

    assert "**Delete failed**" in fake_github.issue_comments(1)[-1]
    assert f"{CODE_PATH}/main.tf" in fake_github.files() and mirror.commit_sha == ""
    assert mirror.closed and fake_github.calls[-1].json["state_reason"] == "not_planned"


# --- outages ----------------------------------------------------------------------------------


def test_500s_leave_the_run_alone_and_the_next_pass_catches_up_without_duplicates(github_settings, fake_github, environment):
    run = queue_create(environment)
    start(run, "render", "init", "plan", "apply")
    enter_stage(run, "outputs")
    succeed(run)
    fake_github.fail(1, 500, match=r"POST .*/comments$")

    with pytest.raises(GitHubError):
        sync_run(run.pk)

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.environment.status == "ready"  # untouched
    mirror = GitHubMirror.objects.get(run=run)
    assert mirror.issue_number == 1 and mirror.commit_sha and mirror.milestones == ["code"]
    assert mirror.attempts == 1 and "HTTP 500" in mirror.last_error

    mark = len(fake_github.calls)
    mirror = sync_run(run.pk)

    assert calls(fake_github, mark) == [
        f"GET {REPO}/issues/1/comments",  # the failed pass may have commented after all: look first
        f"POST {REPO}/issues/1/comments",
        f"POST {REPO}/issues/1/comments",
        f"POST {REPO}/issues/1/comments",
        f"PATCH {REPO}/issues/1",
    ]
    assert len(fake_github.issues) == 1 and len(fake_github.comments) == 3 and len(fake_github.history()) == 2
    assert mirror.closed and mirror.last_error == "" and mirror.attempts == 1
    messages = list(RunEvent.objects.filter(run=run, kind="system").values_list("message", flat=True))
    assert any(m.startswith("GitHub mirror failed; it is retried: GitHub answered HTTP 500") for m in messages)
    assert any(m.startswith("GitHub mirror caught up after 1 failed attempt(s)") for m in messages)


def test_no_saved_state_shows_new_progress_next_to_the_error_of_a_failed_pass(github_settings, fake_github, environment):
    # Readers (the UI, the API, a test waiting for `closed`) may look between any two writes:
    # the write that records the first successful call after a failure also clears the error.
    from django.db.models.signals import post_save

    run = queue_create(environment)
    start(run, "render", "init", "plan", "apply")
    enter_stage(run, "outputs")
    succeed(run)
    fake_github.fail(1, 500, match=r"POST .*/issues$")
    with pytest.raises(GitHubError):
        sync_run(run.pk)

    saved = []

    def record(sender, instance, **kwargs):
        saved.append((instance.issue_number, tuple(instance.milestones), instance.closed, instance.last_error))

    post_save.connect(record, sender=GitHubMirror)
    try:
        mirror = sync_run(run.pk)
    finally:
        post_save.disconnect(record, sender=GitHubMirror)

    assert mirror.closed and mirror.last_error == ""
    assert saved and saved[0][0] == 1  # the issue number is the first thing recorded...
    assert all(last_error == "" for *_, last_error in saved)  # ...with the error cleared at once


def test_a_timeout_after_github_created_the_issue_does_not_duplicate_it(github_settings, fake_github, environment):
    run = queue_create(environment)
    fake_github.delay(1.5, match=r"POST .*/issues$")  # created, but the answer comes too late

    with pytest.raises(GitHubError, match="did not answer within 1s"):
        sync_run(run.pk)
    assert len(fake_github.issues) == 1 and GitHubMirror.objects.get(run=run).issue_number is None

    mirror = sync_run(run.pk)

    assert mirror.issue_number == 1 and len(fake_github.issues) == 1  # adopted, not opened again
    assert fake_github.issue_comments(1)[0].startswith("Queued at ")


def test_a_comment_that_went_through_despite_a_502_is_not_posted_twice(github_settings, fake_github, environment):
    run = queue_create(environment)
    fake_github.fail(1, 502, match=r"POST .*/comments$", after_processing=True)

    with pytest.raises(GitHubError):
        sync_run(run.pk)
    assert len(fake_github.comments) == 1 and GitHubMirror.objects.get(run=run).milestones == ["code"]

    mirror = sync_run(run.pk)

    assert len(fake_github.comments) == 1 and mirror.milestones == ["code", "queued"]
    assert mirror.last_error == ""


def test_a_commit_retried_after_an_outage_is_not_made_twice(github_settings, fake_github, environment):
    run = queue_create(environment)
    fake_github.fail(1, 502, match=r"PATCH .*/git/refs/", after_processing=True)  # the branch DID move

    with pytest.raises(GitHubError):
        sync_run(run.pk)
    mirror = sync_run(run.pk)

    assert [c["message"].split("\n")[0] for c in fake_github.history()] == [
        "Create shop/dev (demo-ecs 1.1.0)", "Initial commit"
    ]
    assert mirror.commit_sha == fake_github.history()[0]["sha"]


def test_a_rate_limit_stops_the_pass_and_no_call_is_made_until_it_resets(github_settings, fake_github, environment):
    first = queue_create(environment)
    fake_github.rate_limit(300, kind="reset", match=r"POST .*/issues$")

    with pytest.raises(RateLimited) as caught:
        sync_run(first.pk)
    assert 295 <= caught.value.retry_after_seconds <= 302
    assert "rate limit" in GitHubMirror.objects.get(run=first).last_error

    other = queue_create(make_environment(code_snapshot=CODE, status="provisioning"))
    mark = len(fake_github.calls)
    with pytest.raises(RateLimited) as again:
        sync_run(other.pk)  # another request in the same process waits for the same reset

    assert fake_github.requests()[mark:] == []
    assert again.value.retry_after_seconds <= caught.value.retry_after_seconds


def test_the_token_never_reaches_the_row_the_logs_or_the_events(github_settings, fake_github, environment, caplog):
    caplog.set_level(logging.DEBUG)
    run = queue_create(environment)
    fake_github.fail(1, 500, message=f"upstream echoed the credential {TOKEN} back")

    with pytest.raises(GitHubError) as caught:
        sync_run(run.pk)
    sync_run(run.pk)

    mirror = GitHubMirror.objects.get(run=run)
    assert TOKEN not in str(caught.value) and "[REDACTED]" in str(caught.value)
    assert mirror.attempts == 1 and mirror.last_error == ""
    failed_event = RunEvent.objects.get(run=run, message__startswith="GitHub mirror failed")
    assert "[REDACTED]" in failed_event.message
    everything = [caplog.text, *RunEvent.objects.values_list("message", flat=True)]
    everything += [c["body"] for c in fake_github.comments.values()]
    everything += [i.body for i in fake_github.issues.values()]
    assert not [text for text in everything if TOKEN in text]


def test_a_stored_error_is_redacted_even_when_it_is_not_a_github_error(github_settings, fake_github, environment, monkeypatch):
    run = queue_create(environment)

    def broken(client, mirror):
        raise RuntimeError(f"bug while holding {TOKEN}")

    monkeypatch.setattr(github_mirror, "_catch_up", broken)
    with pytest.raises(RuntimeError):
        sync_run(run.pk)

    assert GitHubMirror.objects.get(run=run).last_error == "RuntimeError: bug while holding [REDACTED]"


# --- concurrency and switches ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the second pass runs on another thread's connection
def test_two_passes_of_one_request_never_run_at_once(github_settings, fake_github, environment):
    run = queue_create(environment)
    github_settings.GITHUB_TIMEOUT = 10  # the first pass waits out the 3 s window below
    github_mirror.reset_clients()
    fake_github.delay(3, match=r"POST .*/issues$")  # the window for the second pass
    errors = []

    def first_pass():
        try:
            sync_run(run.pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=first_pass)
    thread.start()
    deadline = time.monotonic() + 5
    while not fake_github.issues and time.monotonic() < deadline:  # first pass inside its POST /issues
        time.sleep(0.01)
    with pytest.raises(MirrorBusy):
        sync_run(run.pk)
    thread.join()

    assert errors == [] and len(fake_github.issues) == 1


def test_without_configuration_nothing_is_called_and_nothing_recorded(settings, fake_github, environment):
    settings.GITHUB_TOKEN = ""
    settings.GITHUB_REPOSITORY = "acme/provisioning"
    settings.GITHUB_API_URL = fake_github.url
    run = queue_create(environment)

    assert sync_run(run.pk) is None
    assert fake_github.calls == [] and GitHubMirror.objects.count() == 0
    assert Run.objects.get(pk=run.pk).environment.code_snapshot == CODE  # the code stays in the DB
