"""The GitHub trail of drift (issue 16): one issue per drift episode of an environment - opened
when a check finds it drifted, commented when what drifted changes or a fix is planned,
resolved and closed when a check finds it in sync again or the environment is deleted.

Drift checks are written as rows (what `drift._finish` records), and each test calls
`sync_drift` itself, the way the `portal.mirror_drift` task would after each check (inside
the `db` fixture's transaction the on-commit hooks never fire unless captured).
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from portal.models import ChangePlan, DriftCheck, Environment, GitHubMirror, RunKind, RunStatus
from portal.services import drift, github_drift
from portal.services.github_drift import catch_up_drift, drift_issue, sync_drift
from provisioning.github import GitHubError
from tests.factories import make_account, make_department, make_environment, make_product, make_run, make_user
from tests.github.conftest import PORTAL_URL, TOKEN
from tests.github.test_github_sync import REPO, calls
from tests.stand_ins import TaskSink

pytestmark = pytest.mark.django_db

MARKER = re.compile(r"<!-- portal-drift environment=(\d+) check=(\d+) step=([\w-]+) ")
SG = {"address": "aws_security_group.app", "type": "aws_security_group", "action": "update", "attributes": [
    {"attribute": "ingress", "before": [{"from_port": 443, "cidr_blocks": ["10.0.0.0/8"]}],
     "after": [{"from_port": 443, "cidr_blocks": ["10.0.0.0/8"]}, {"from_port": 22, "cidr_blocks": ["0.0.0.0/0"]}]},
    {"attribute": "description", "before": "app | web", "after": "changed by hand"},
]}
BUCKET = {"address": "aws_s3_bucket.logs", "type": "aws_s3_bucket", "action": "delete", "attributes": []}
DB = {"address": "aws_db_instance.main", "type": "aws_db_instance", "action": "update", "attributes": [
    {"attribute": "password", "before": "s3cret-in-the-state", "after": "another-s3cret"},
]}


@pytest.fixture
def owner():
    return make_user("owner")


@pytest.fixture
def environment(owner):
    """A ready shop/dev, made (as every environment is) with its create run."""
    department = make_department("payments", name="Payments", members=[owner])
    account = make_account(department, account_id="000000000777", name="payments-sandbox", region="eu-central-1")
    product = make_product(department, slug="shop", name="Shop")
    environment = make_environment(product, account=account, name="dev", status="ready", requested_by=owner)
    make_run(environment, kind=RunKind.CREATE, status=RunStatus.SUCCEEDED)
    return environment


def found(environment, status=DriftCheck.Status.DRIFTED, resources=(), *, by=None) -> DriftCheck:
    """A finished check, as `drift._finish` records it (with the environment's badge)."""
    now = timezone.now()
    check = DriftCheck.objects.create(
        environment=environment, status=status, finished_at=now, resources=list(resources), requested_by=by,
        explanation=f"{len(resources)} resource(s) changed outside Terraform" if resources else "In sync.",
    )
    badge = {"drifted": "drifted", "in_sync": "in_sync"}.get(status)
    if badge:
        Environment.objects.filter(pk=environment.pk).update(drift_status=badge, drift_checked_at=now)
    return check


def steps_posted(fake, number=1):
    return [MARKER.search(body).group(3) for body in fake.issue_comments(number)]


def assert_caught_up(fake, environment_id):
    mark = len(fake.calls)
    sync_drift(environment_id)
    assert fake.requests()[mark:] == []


# --- the issue ------------------------------------------------------------------------------------


def test_a_drifted_environment_gets_one_issue_with_a_table_of_what_drifted(github_settings, fake_github, environment, owner):
    check = found(environment, resources=[SG, BUCKET, DB], by=owner)

    state = sync_drift(environment.pk)

    assert calls(fake_github) == [f"GET {REPO}/issues", f"POST {REPO}/issues"]
    issue = fake_github.issues[1]
    assert issue.title == "Drift in shop/dev" and issue.labels == ["portal", "drift"] and issue.state == "open"
    body = issue.body
    for expected in (
        f"[`shop/dev`]({PORTAL_URL}/environments/{environment.pk}/)",
        "`payments-sandbox` (`000000000777`, `eu-central-1`)",
        f"by drift check #{check.pk} (asked for by `owner`)",
        "| Resource | Attribute | In the state -> now |",
        '| `aws_security_group.app` | `description` | `"app \\| web"` -> `"changed by hand"` |',  # the pipe escaped
        "| `aws_s3_bucket.logs` |  | **deleted** outside Terraform |",
        "| `aws_db_instance.main` | `password` | (hidden) -> (hidden) |",
        f"<!-- portal-drift environment={environment.pk} check={check.pk} portal={PORTAL_URL} -->",
    ):
        assert expected in body
    ingress = next(line for line in body.splitlines() if "`ingress`" in line)
    assert "…" in ingress and len(ingress) < 220  # long values are shortened (the whole is on the page)
    assert "s3cret" not in body and TOKEN not in body
    assert state["issue_number"] == 1 and state["check"] == check.pk and state["posted"] == [] and not state["closed"]
    assert state["issue_url"] == "https://github.example/acme/provisioning/issues/1" and state["last_error"] == ""

    assert_caught_up(fake_github, environment.pk)  # a second pass posts nothing
    assert drift_issue(environment.pk) == state


def test_the_trail_lives_next_to_the_create_issue_and_the_create_sync_keeps_it(github_settings, fake_github, environment):
    from portal.services.github_mirror import sync_run

    create = environment.runs.get(kind=RunKind.CREATE)
    found(environment, resources=[SG])
    sync_drift(environment.pk)

    sync_run(create.pk)  # the create's own issue (#2 here) and steps

    mirror = GitHubMirror.objects.get(run=create)
    assert mirror.issue_number == 2 and "result" in mirror.milestones and mirror.closed
    assert drift_issue(environment.pk)["issue_number"] == 1  # kept by the create's writes
    assert len(fake_github.issues) == 2
    assert_caught_up(fake_github, environment.pk)


def test_the_same_drift_found_again_posts_nothing(github_settings, fake_github, environment):
    found(environment, resources=[SG, BUCKET])
    sync_drift(environment.pk)
    moved = {**SG, "attributes": [{**a, "after": "changed again"} for a in SG["attributes"]]}

    for _ in range(3):  # daily checks: the same resources and attributes, even with new values
        found(environment, resources=[BUCKET, moved])
        assert_caught_up(fake_github, environment.pk)

    assert fake_github.issue_comments(1) == [] and len(fake_github.issues) == 1


def test_a_different_drift_is_one_comment(github_settings, fake_github, environment):
    found(environment, resources=[SG, BUCKET])
    sync_drift(environment.pk)
    changed = found(environment, resources=[SG, DB])
    mark = len(fake_github.calls)

    state = sync_drift(environment.pk)

    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments"]
    comment = fake_github.issue_comments(1)[0]
    assert comment.startswith(f"**The drift changed:** drift check #{changed.pk} at ")
    assert "found 2 resource(s) drifted." in comment
    assert "**Newly drifted:** `aws_db_instance.main.password`" in comment
    assert "**No longer drifted:** `aws_s3_bucket.logs`" in comment
    assert "| `aws_db_instance.main` | `password` | (hidden) -> (hidden) |" in comment
    assert steps_posted(fake_github) == [f"changed-{changed.pk}"]
    assert state["posted"] == [f"changed-{changed.pk}"] and state["last"] == changed.pk
    assert_caught_up(fake_github, environment.pk)

    found(environment, resources=[DB, SG])  # that new set again: nothing
    assert_caught_up(fake_github, environment.pk)
    back = found(environment, resources=[SG, BUCKET])  # what the issue first said: it changed again
    sync_drift(environment.pk)
    assert steps_posted(fake_github) == [f"changed-{changed.pk}", f"changed-{back.pk}"]
    assert len(fake_github.issues) == 1


def test_in_sync_again_resolves_and_closes_the_issue_and_the_next_drift_opens_another(
    github_settings, fake_github, environment
):
    found(environment, resources=[SG])
    sync_drift(environment.pk)
    found(environment, DriftCheck.Status.FAILED)  # no finding: nothing changes
    found(environment, DriftCheck.Status.SUPERSEDED)
    assert_caught_up(fake_github, environment.pk)
    in_sync = found(environment, DriftCheck.Status.IN_SYNC)
    mark = len(fake_github.calls)

    state = sync_drift(environment.pk)

    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments", f"PATCH {REPO}/issues/1"]
    resolved = fake_github.issue_comments(1)[0]
    assert resolved.startswith(f"**Resolved:** drift check #{in_sync.pk} at ")
    assert "found `shop/dev` in sync with its Terraform state again." in resolved
    assert fake_github.calls[-1].json == {"state": "closed", "state_reason": "completed"}
    assert fake_github.issues[1].state == "closed"
    assert state["closed"] and state["posted"] == ["resolved", "close"] and state["last"] == in_sync.pk
    for _ in range(2):
        found(environment, DriftCheck.Status.IN_SYNC)
        assert_caught_up(fake_github, environment.pk)

    again = found(environment, resources=[BUCKET])
    state = sync_drift(environment.pk)

    assert len(fake_github.issues) == 2 and fake_github.issues[2].state == "open"
    assert f"check={again.pk} " in fake_github.issues[2].body and "aws_s3_bucket.logs" in fake_github.issues[2].body
    assert state["issue_number"] == 2 and state["check"] == again.pk and state["posted"] == []
    assert fake_github.issue_comments(1) == [resolved]  # the closed one is left alone


def test_a_plan_to_fix_is_commented_with_the_change_plan_and_its_issue(github_settings, fake_github, environment, owner):
    check = found(environment, resources=[SG])
    sync_drift(environment.pk)
    plan_run = make_run(environment, kind=RunKind.PLAN, status=RunStatus.QUEUED)
    plan = ChangePlan.objects.create(
        environment=environment, plan_run=plan_run, requested_by=owner, parameters={}, pattern_version="1.0.0",
        pattern_version_before="1.0.0", code_snapshot={}, fixes_drift=check,
    )
    GitHubMirror.objects.create(run=plan_run, repository="acme/provisioning", issue_number=7,
                                issue_url="https://github.example/acme/provisioning/issues/7")
    mark = len(fake_github.calls)

    sync_drift(environment.pk)

    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments"]
    comment = fake_github.issue_comments(1)[0]
    assert comment.startswith("**Fix planned** by `owner` at ")
    assert f"change plan [#{plan.pk}]({PORTAL_URL}/changes/{plan.pk}/)" in comment
    assert "(issue [#7](https://github.example/acme/provisioning/issues/7))" in comment
    assert f"puts back what drift check #{check.pk} found" in comment
    assert_caught_up(fake_github, environment.pk)

    found(environment, DriftCheck.Status.IN_SYNC)  # the fix was applied and checked
    sync_drift(environment.pk)
    assert steps_posted(fake_github) == [f"fix-{plan.pk}", "resolved"] and fake_github.issues[1].state == "closed"


def test_a_deleted_environment_resolves_and_closes_its_drift_issue(github_settings, fake_github, environment):
    found(environment, resources=[SG])
    sync_drift(environment.pk)
    Environment.objects.filter(pk=environment.pk).update(status="deleted", deleted_at=timezone.now())

    state = sync_drift(environment.pk)

    assert fake_github.issue_comments(1)[0].startswith("**Resolved:** `shop/dev` was deleted at ")
    assert fake_github.calls[-1].json == {"state": "closed", "state_reason": "not_planned"}
    assert state["closed"]
    assert_caught_up(fake_github, environment.pk)


def test_nothing_is_mirrored_without_drift_or_without_configuration(settings, github_settings, fake_github, environment):
    found(environment, DriftCheck.Status.IN_SYNC)
    assert sync_drift(environment.pk) == {} and fake_github.calls == []

    settings.GITHUB_TOKEN = ""
    found(environment, resources=[SG])
    assert sync_drift(environment.pk) is None and fake_github.calls == []


# --- GitHub failing -------------------------------------------------------------------------------


def test_github_down_is_recorded_and_caught_up_later_without_duplicates(github_settings, fake_github, environment):
    check = found(environment, resources=[SG])
    fake_github.fail(2, 503, match=r"issues")

    for attempt in (1, 2):
        with pytest.raises(GitHubError):
            sync_drift(environment.pk)
        state = drift_issue(environment.pk)
        assert state["attempts"] == attempt and "503" in state["last_error"] and TOKEN not in state["last_error"]
        assert state["issue_number"] is None and state["check"] == check.pk  # the episode is fixed before the issue

    # The drift finding itself is untouched by the trail failing.
    assert DriftCheck.objects.get(pk=check.pk).status == "drifted"
    assert Environment.objects.get(pk=environment.pk).drift_status == "drifted"

    state = sync_drift(environment.pk)
    assert state["issue_number"] == 1 and state["last_error"] == "" and state["attempts"] == 2
    assert len(fake_github.issues) == 1


def test_an_issue_opened_although_the_answer_was_lost_is_adopted(github_settings, fake_github, environment):
    found(environment, resources=[SG])
    fake_github.fail(1, 502, match=r"POST .*/issues$", after_processing=True)
    with pytest.raises(GitHubError):
        sync_drift(environment.pk)
    found(environment, resources=[SG, BUCKET])  # a later check meanwhile: the marker stays the first's

    state = sync_drift(environment.pk)

    assert len(fake_github.issues) == 1 and state["issue_number"] == 1
    assert steps_posted(fake_github) == [f"changed-{state['last']}"]


def test_a_comment_that_went_through_despite_an_error_is_not_posted_again(github_settings, fake_github, environment):
    found(environment, resources=[SG])
    sync_drift(environment.pk)
    found(environment, DriftCheck.Status.IN_SYNC)
    fake_github.fail(1, 502, match=r"POST .*/comments$", after_processing=True)
    with pytest.raises(GitHubError):
        sync_drift(environment.pk)
    assert drift_issue(environment.pk)["pending"] == "resolved"

    state = sync_drift(environment.pk)

    assert steps_posted(fake_github) == ["resolved"] and state["closed"] and state["pending"] == ""
    assert fake_github.issues[1].state == "closed"


def test_a_worker_that_died_mid_comment_is_read_back_before_posting(github_settings, fake_github, environment):
    found(environment, resources=[SG])
    sync_drift(environment.pk)
    changed = found(environment, resources=[BUCKET])
    fake_github.fail(1, 502, match=r"POST .*/comments$", after_processing=True)
    with pytest.raises(GitHubError):
        sync_drift(environment.pk)
    # As if the worker had died in the call: no error recorded, only the pending comment.
    mirror = GitHubMirror.objects.get(run__environment=environment, run__kind=RunKind.CREATE)
    github_drift._store(mirror, {**drift_issue(environment.pk), "last_error": ""})
    mark = len(fake_github.calls)

    state = sync_drift(environment.pk)

    assert calls(fake_github, mark) == [f"GET {REPO}/issues/1/comments"]  # read back, found, not posted again
    assert steps_posted(fake_github) == [f"changed-{changed.pk}"]
    assert state["posted"] == [f"changed-{changed.pk}"] and state["seen"] == [["aws_s3_bucket.logs", "delete", ""]]


# --- scheduling -------------------------------------------------------------------------------------


@pytest.fixture
def enqueued(monkeypatch):
    """The environment ids `portal.mirror_drift` was sent for (nothing reaches the broker)."""
    sent = []
    monkeypatch.setattr(github_drift, "current_app", TaskSink(github_drift.MIRROR_DRIFT_TASK, sent.append))
    return sent


def running_check(environment) -> DriftCheck:
    return DriftCheck.objects.create(environment=environment, status=DriftCheck.Status.RUNNING,
                                     started_at=timezone.now(), worker="drift-1:1")


def test_a_finished_check_schedules_the_trail_on_commit(github_settings, enqueued, environment,
                                                        django_capture_on_commit_callbacks):
    check = running_check(environment)

    with django_capture_on_commit_callbacks(execute=True):
        assert drift._finish(check, DriftCheck.Status.DRIFTED, resources=[SG])
        assert enqueued == []  # not before the result is committed

    assert enqueued == [environment.pk]


def test_a_broker_that_refuses_never_reaches_the_drift_check(github_settings, fake_github, environment, monkeypatch,
                                                            caplog, django_capture_on_commit_callbacks):
    found(environment, resources=[SG])
    sync_drift(environment.pk)  # an open trail, on which the refusal is recorded

    class Refusing:
        def send_task(self, name, args=()):
            raise OperationalError(f"broker down (token {TOKEN})")

    monkeypatch.setattr(github_drift, "current_app", Refusing())
    check = running_check(environment)
    with django_capture_on_commit_callbacks(execute=True):
        assert drift._finish(check, DriftCheck.Status.IN_SYNC)

    assert DriftCheck.objects.get(pk=check.pk).status == "in_sync"
    assert Environment.objects.get(pk=environment.pk).drift_status == "in_sync"
    state = drift_issue(environment.pk)
    assert state["attempts"] == 1 and state["last_error"].startswith("Could not queue the GitHub drift sync: OperationalError")
    assert TOKEN not in state["last_error"] and TOKEN not in caplog.text


def test_without_configuration_nothing_is_scheduled(settings, enqueued, environment, django_capture_on_commit_callbacks):
    settings.GITHUB_TOKEN = ""
    check = running_check(environment)
    with django_capture_on_commit_callbacks(execute=True):
        drift._finish(check, DriftCheck.Status.DRIFTED, resources=[SG])
    assert enqueued == [] and catch_up_drift() == []


def test_the_periodic_catch_up_reschedules_only_trails_that_fell_behind(github_settings, fake_github, enqueued, owner):
    def ready(name):
        environment = make_environment(name=name, status="ready")
        make_run(environment, kind=RunKind.CREATE, status=RunStatus.SUCCEEDED)
        return environment

    never, told, fix, resolved, calm = (ready(n) for n in ("never", "told", "fix", "resolved", "calm"))
    for environment in (never, told, fix, resolved):
        check = found(environment, resources=[SG])
    for environment in (told, fix, resolved):
        sync_drift(environment.pk)
    check = fix.drift_checks.get()
    plan_run = make_run(fix, kind=RunKind.PLAN, status=RunStatus.QUEUED)
    ChangePlan.objects.create(environment=fix, plan_run=plan_run, requested_by=owner, parameters={}, pattern_version="1.0.0",
                              pattern_version_before="1.0.0", code_snapshot={}, fixes_drift=check)
    found(resolved, DriftCheck.Status.IN_SYNC)
    found(calm, DriftCheck.Status.IN_SYNC)

    assert catch_up_drift() == sorted([never.pk, fix.pk, resolved.pk])
    assert enqueued == sorted([never.pk, fix.pk, resolved.pk])

    for environment_id in enqueued:
        sync_drift(environment_id)
    assert catch_up_drift() == []


def test_the_task_retries_until_github_answers(github_settings, fake_github, environment):
    from portal.tasks import mirror_drift

    found(environment, resources=[SG])
    fake_github.fail(2, 500, match=r"POST .*/issues$")

    result = mirror_drift.apply(args=[environment.pk])

    assert result.successful()
    state = drift_issue(environment.pk)
    assert state["issue_number"] == 1 and state["attempts"] == 2 and len(fake_github.issues) == 1


def test_old_drift_checks_are_not_news_once_in_sync(github_settings, fake_github, environment):
    """A trail switched on later: only the latest finding counts."""
    old = found(environment, resources=[SG])
    DriftCheck.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=3))
    found(environment, DriftCheck.Status.IN_SYNC)

    assert sync_drift(environment.pk) == {} and fake_github.calls == []
