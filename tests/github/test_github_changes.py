"""The GitHub trail of day-two changes (issue 16): one issue per change plan - its plan, its
confirmation, the update that applied it and the commit of the new code.

Like test_github_sync.py: runs move through the real transitions (`portal.services.runs`,
`portal.services.changes.confirm_change`), and each test calls `sync_run` itself, the way the
`portal.mirror_run` task would after each transition (inside the `db` fixture's transaction
the on-commit hooks never fire).
"""

import re
from datetime import timedelta

import pytest

from portal.models import ChangePlan, GitHubMirror, Run, RunKind, RunStatus
from portal.services import changes
from portal.services import github_mirror
from portal.services import runs as transitions
from portal.services.github_mirror import catch_up_stale, sync_run
from provisioning.github import GitHubError
from tests.factories import make_account, make_department, make_environment, make_product, make_run, make_user
from tests.github.conftest import PORTAL_URL
from tests.github import test_github_end_to_end
from tests.github.test_github_sync import CODE, CODE_PATH, REPO, WORKER, calls, enter_stage, start
from tests.stand_ins import TaskSink

pytestmark = pytest.mark.django_db
# The fake GitHub the real worker mirrors to (with its settings), for the end-to-end test.
fake_github_for_worker = test_github_end_to_end.fake_github_for_worker

MARKER = re.compile(r"<!-- portal-mirror run=(\d+) step=(\w+) ")
# The change's rendered code: one file changes, one is new, one is gone.
NEW_CODE = {
    "locals.tf": 'locals {\n  name = "dev"\n  desired_count = 3\n}\n',
    "main.tf": 'resource "terraform_data" "app" {}\n',
    "service.tf": 'resource "terraform_data" "service" {}\n',
}
RESOURCE_CHANGES = [
    {"address": "terraform_data.service", "action": "update", "moved_from": "", "attributes": ["input", "output"],
     "forces_replacement": []},
    {"address": "terraform_data.listener_rule", "action": "replace", "moved_from": "", "attributes": ["input"],
     "forces_replacement": ["input"]},
    {"address": "terraform_data.old_alarm", "action": "delete", "moved_from": ""},
    {"address": 'terraform_data.dns["a|b"]', "action": "move", "moved_from": "terraform_data.dns_record"},
]
CODE_COMMIT_CALLS = [
    f"GET {REPO}",
    f"GET {REPO}/git/ref/heads/main",
    f"GET {REPO}/git/commits/<sha>",
    f"GET {REPO}/contents/{CODE_PATH}",
    f"POST {REPO}/git/trees",
    f"POST {REPO}/git/commits",
    f"PATCH {REPO}/git/refs/heads/main",
]


@pytest.fixture
def owner():
    return make_user("owner")


@pytest.fixture
def environment(owner, fake_github):
    """A ready shop/dev whose create code the repository already holds."""
    department = make_department("payments", name="Payments", members=[owner])
    account = make_account(department, account_id="000000000777", name="payments-sandbox", dns_zone="sandbox.example.test")
    product = make_product(department, slug="shop", name="Shop")
    fake_github.push_commit({f"{CODE_PATH}/{name}": content for name, content in CODE.items()}, "Create shop/dev (demo-ecs 1.1.0)")
    return make_environment(
        product, account=account, name="dev", status="ready", cidr="10.60.0.0/24",
        parameters={"delay_seconds": 1, "desired_count": 1}, code_snapshot=CODE, requested_by=owner,
    )


def plan_change(environment, owner, parameters, *, version_before=None, code=NEW_CODE) -> ChangePlan:
    """What `changes.request_change` writes: the plan-only run and its change plan."""
    run = transitions.queue_run(environment, RunKind.PLAN, requested_by=owner)
    return ChangePlan.objects.create(
        environment=environment, plan_run=run, requested_by=owner, parameters={**environment.parameters, **parameters},
        pattern_version=environment.pattern_version, pattern_version_before=version_before or environment.pattern_version,
        code_snapshot=code,
    )


def finish_plan(plan, resource_changes=RESOURCE_CHANGES):
    start(plan.plan_run, "render", "init", "plan")
    transitions.succeed_plan(Run.objects.get(pk=plan.plan_run_id), WORKER, plan_file=b"saved plan", state_serial=None,
                             resource_changes=resource_changes)


def confirm(plan, owner) -> Run:
    return changes.confirm_change(user=owner, plan=ChangePlan.objects.get(pk=plan.pk))


def succeed_update(update):
    fqdn = "app-dev.sandbox.example.test"
    transitions.succeed_update(
        Run.objects.get(pk=update.pk), WORKER, outputs={"app_fqdn": fqdn},
        endpoints=[{"fqdn": fqdn, "url": f"https://{fqdn}/", "kind": "app"}],
    )


def steps_posted(fake, number=1):
    return [MARKER.search(body).group(2) for body in fake.issue_comments(number)]


def code_on_github(fake):
    return {p.removeprefix(CODE_PATH + "/"): c for p, c in fake.files().items() if p.startswith(CODE_PATH + "/")}


# --- a change, start to end -----------------------------------------------------------------------


def test_a_confirmed_change_is_one_issue_with_its_plan_confirmation_result_and_the_new_code(
    github_settings, fake_github, environment, owner
):
    plan = plan_change(environment, owner, {"desired_count": 3})
    mark = len(fake_github.calls)

    mirror = sync_run(plan.plan_run_id)

    assert calls(fake_github, mark) == [f"GET {REPO}/issues", f"POST {REPO}/issues"]  # nothing planned yet
    issue = fake_github.issues[1]
    assert issue.title == "Change shop/dev (desired_count)" and issue.labels == ["portal", "change"]
    for expected in ("`shop/dev`", "`payments-sandbox`", "`demo-ecs` version `1.1.0` (unchanged)", "`owner`",
                     f"[#{plan.plan_run_id}]({PORTAL_URL}/runs/{plan.plan_run_id}/)", f"`{CODE_PATH}/`",
                     "- `desired_count`: `1` -> `3`", '"desired_count": 3'):
        assert expected in issue.body
    assert "delay_seconds`:" not in issue.body  # unchanged parameters are not listed as changed
    assert mirror.run_id == plan.plan_run_id and mirror.milestones == [] and not mirror.closed

    finish_plan(plan)
    mark = len(fake_github.calls)
    mirror = sync_run(plan.plan_run_id)

    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments"]
    planned = fake_github.issue_comments(1)[0]
    assert planned.startswith("**Planned** at ")
    assert "1 to add, 1 to change, 1 to replace, 2 to destroy, 1 to move." in planned
    assert "**Replaced** (destroyed, then created again): `terraform_data.listener_rule`" in planned
    assert "**Destroyed:** `terraform_data.old_alarm`" in planned
    assert "| `terraform_data.service` | update | `input`, `output` |" in planned
    assert "| `terraform_data.listener_rule` | **replace** | `input`; forces replacement: `input` |" in planned
    assert "| `terraform_data.old_alarm` | **destroy** |  |" in planned
    assert '| `terraform_data.dns["a\\|b"]` | move from `terraform_data.dns_record` |  |' in planned  # the pipe escaped
    assert mirror.milestones == ["planned"] and not mirror.closed

    mark = len(fake_github.calls)
    sync_run(plan.plan_run_id)
    assert fake_github.requests()[mark:] == []  # a fresh, unconfirmed plan waits, open

    update = confirm(plan, owner)
    mark = len(fake_github.calls)
    mirror = sync_run(update.pk)  # the update run maps to its plan's issue

    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments"]
    confirmed = fake_github.issue_comments(1)[1]
    assert confirmed.startswith("**Confirmed** by `owner` at ")
    assert f"update run [#{update.pk}]({PORTAL_URL}/runs/{update.pk}/)" in confirmed
    assert mirror.run_id == plan.plan_run_id and GitHubMirror.objects.count() == 1

    start(update, "render", "init", "apply")
    mark = len(fake_github.calls)
    sync_run(update.pk)
    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments"]
    assert fake_github.issue_comments(1)[2].startswith("Apply of the confirmed plan started at ")
    assert code_on_github(fake_github) == CODE  # nothing committed before the update succeeded

    enter_stage(update, "outputs")
    succeed_update(update)
    mark = len(fake_github.calls)
    mirror = sync_run(update.pk)

    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments", *CODE_COMMIT_CALLS, f"PATCH {REPO}/issues/1"]
    result = fake_github.issue_comments(1)[3]
    assert result.startswith("**Applied** at ") and "`app-dev.sandbox.example.test`" in result
    assert code_on_github(fake_github) == NEW_CODE  # the repository holds what runs (portal_backend.tf is gone)
    commit = fake_github.history()[0]
    assert commit["message"].startswith("Change shop/dev (demo-ecs 1.1.0)\n")
    assert f"Run #{update.pk}:" in commit["message"] and "Refs #1" in commit["message"]
    assert mirror.commit_sha == commit["sha"] and mirror.commit_url.endswith(commit["sha"])
    assert fake_github.calls[-1].json == {"state": "closed", "state_reason": "completed"}
    assert mirror.milestones == ["planned", "confirmed", "apply", "result", "code"] and mirror.closed
    assert steps_posted(fake_github) == ["planned", "confirmed", "apply", "result"]
    assert {int(MARKER.search(b).group(1)) for b in fake_github.issue_comments(1)} == {plan.plan_run_id}

    for run_id in (plan.plan_run_id, update.pk):
        mark = len(fake_github.calls)
        sync_run(run_id)
        assert fake_github.requests()[mark:] == []  # caught up from either run: nothing more
    assert len(fake_github.issues) == 1 and len(fake_github.history()) == 3


def test_an_upgrade_names_both_versions(github_settings, fake_github, environment, owner):
    plan = plan_change(environment, owner, {}, version_before="1.0.0")

    sync_run(plan.plan_run_id)

    issue = fake_github.issues[1]
    assert issue.title == "Change shop/dev (demo-ecs 1.0.0 -> 1.1.0)"
    assert "`demo-ecs` version `1.0.0` -> `1.1.0` (upgrade)" in issue.body
    assert "None: the change is the version upgrade." in issue.body


# --- nothing twice ----------------------------------------------------------------------------------


def test_a_repeated_pass_after_lost_answers_posts_nothing_twice(github_settings, fake_github, environment, owner):
    plan = plan_change(environment, owner, {"desired_count": 3})
    finish_plan(plan)
    update = confirm(plan, owner)
    start(update, "render", "init", "apply")
    enter_stage(update, "outputs")
    succeed_update(update)
    # GitHub acts but the answer is lost: the issue, then a comment, then the branch move.
    fake_github.fail(1, 502, match=r"POST .*/issues$", after_processing=True)
    fake_github.fail(1, 502, match=r"POST .*/comments$", after_processing=True)
    fake_github.fail(1, 502, match=r"PATCH .*/git/refs/", after_processing=True)

    for _ in range(3):
        with pytest.raises(GitHubError):
            sync_run(update.pk)
    mirror = sync_run(update.pk)

    assert len(fake_github.issues) == 1 and mirror.issue_number == 1  # adopted by its marker
    # Opened only after the update succeeded: the parameters it replaced are no longer on any row.
    assert fake_github.issues[1].title == "Change shop/dev (demo-ecs 1.1.0)"
    assert "values before the change are no longer recorded" in fake_github.issues[1].body
    assert steps_posted(fake_github) == ["planned", "confirmed", "apply", "result"]  # each once, in order
    assert [c["message"].split("\n")[0] for c in fake_github.history()] == [
        "Change shop/dev (demo-ecs 1.1.0)", "Create shop/dev (demo-ecs 1.1.0)", "Initial commit"
    ]
    assert mirror.commit_sha == fake_github.history()[0]["sha"]
    assert mirror.closed and mirror.last_error == "" and mirror.attempts == 3

    mark = len(fake_github.calls)
    assert sync_run(plan.plan_run_id).closed
    assert fake_github.requests()[mark:] == []


def test_a_pass_killed_between_calls_resumes_where_it_stopped(github_settings, fake_github, environment, owner, monkeypatch):
    plan = plan_change(environment, owner, {"desired_count": 3})
    finish_plan(plan)
    update = confirm(plan, owner)
    start(update, "render", "init", "apply")
    enter_stage(update, "outputs")
    succeed_update(update)
    real_save = github_mirror._save
    saves = []

    def dies_after_the_third_step(mirror, **changes):
        real_save(mirror, **changes)
        saves.append(changes)
        if len(saves) == 3:  # issue, "planned", "confirmed" recorded; the worker dies here
            raise KeyboardInterrupt("worker killed")

    monkeypatch.setattr(github_mirror, "_save", dies_after_the_third_step)
    with pytest.raises(KeyboardInterrupt):
        sync_run(plan.plan_run_id)
    monkeypatch.setattr(github_mirror, "_save", real_save)

    mirror = sync_run(update.pk)

    assert steps_posted(fake_github) == ["planned", "confirmed", "apply", "result"]
    assert len(fake_github.history()) == 3 and mirror.closed


# --- failures and plans never applied ------------------------------------------------------------


def test_a_failed_update_records_the_failure_and_commits_nothing(github_settings, fake_github, environment, owner):
    plan = plan_change(environment, owner, {"desired_count": 3})
    finish_plan(plan)
    update = confirm(plan, owner)
    sync_run(update.pk)
    start(update, "render", "init", "apply")
    transitions.fail_run(Run.objects.get(pk=update.pk), WORKER, explanation="terraform apply failed (exit 1): fail_on=service")
    history_before = len(fake_github.history())
    mark = len(fake_github.calls)

    mirror = sync_run(update.pk)

    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments"] * 2 + [f"PATCH {REPO}/issues/1"]
    failure = fake_github.issue_comments(1)[-1]
    assert failure.startswith("**Update failed** at ") and "fail_on=service" in failure
    assert "state is kept" in failure and "Plan the change again, or retry." in failure
    assert len(fake_github.history()) == history_before and code_on_github(fake_github) == CODE  # nothing committed
    assert mirror.commit_sha == "" and "code" not in mirror.milestones
    assert mirror.milestones == ["planned", "confirmed", "apply", "result"] and mirror.closed
    assert fake_github.calls[-1].json == {"state": "closed", "state_reason": "not_planned"}


def test_a_failed_plan_is_explained_and_closed(github_settings, fake_github, environment, owner):
    plan = plan_change(environment, owner, {"desired_count": 3})
    start(plan.plan_run, "render", "init", "plan")
    transitions.fail_run(Run.objects.get(pk=plan.plan_run_id), WORKER, explanation="terraform plan failed (exit 1): bad input")

    mirror = sync_run(plan.plan_run_id)

    assert steps_posted(fake_github) == ["planned"]
    failure = fake_github.issue_comments(1)[0]
    assert failure.startswith("**Plan failed** at ") and "bad input" in failure and "Nothing was changed" in failure
    assert mirror.closed and fake_github.calls[-1].json["state_reason"] == "not_planned"
    assert len(fake_github.history()) == 2


def test_an_unconfirmed_plan_stays_open_until_it_is_too_old_then_says_it_was_not_applied(
    github_settings, fake_github, environment, owner
):
    plan = plan_change(environment, owner, {"desired_count": 3})
    finish_plan(plan)
    assert not sync_run(plan.plan_run_id).closed

    planned_at = ChangePlan.objects.get(pk=plan.pk).planned_at
    max_age = timedelta(seconds=github_settings.CHANGE_PLAN_MAX_AGE_SECONDS + 1)
    ChangePlan.objects.filter(pk=plan.pk).update(planned_at=planned_at - max_age)
    mark = len(fake_github.calls)
    mirror = sync_run(plan.plan_run_id)

    assert calls(fake_github, mark) == [f"POST {REPO}/issues/1/comments", f"PATCH {REPO}/issues/1"]
    not_applied = fake_github.issue_comments(1)[-1]
    assert not_applied.startswith("**Not applied:**") and "older than" in not_applied
    assert mirror.milestones == ["planned", "not_applied"] and mirror.closed
    assert fake_github.calls[-1].json["state_reason"] == "not_planned"
    assert len(fake_github.history()) == 2  # the new code was never committed


def test_a_plan_superseded_by_another_says_it_was_not_applied(github_settings, fake_github, environment, owner):
    first = plan_change(environment, owner, {"desired_count": 3})
    finish_plan(first)
    sync_run(first.plan_run_id)
    second = plan_change(environment, owner, {"desired_count": 5})

    sync_run(second.plan_run_id)
    sync_run(first.plan_run_id)  # what catch_up_stale asks for

    assert steps_posted(fake_github, 1) == ["planned", "not_applied"] and fake_github.issues[1].state == "closed"
    assert "another run since it was planned" in fake_github.issue_comments(1)[-1]
    assert fake_github.issues[2].title == "Change shop/dev (desired_count)" and fake_github.issues[2].state == "open"


def test_a_confirm_landing_during_a_pass_is_not_taken_for_a_stale_plan(
    github_settings, fake_github, environment, owner, monkeypatch
):
    plan = plan_change(environment, owner, {"desired_count": 3})
    finish_plan(plan)
    sync_run(plan.plan_run_id)
    real_stale_reason = github_mirror.stale_reason
    confirmed = []

    def confirm_first(change):  # the pass has read the plan unconfirmed; the confirm commits now
        if not confirmed:
            confirmed.append(confirm(plan, owner))
        return real_stale_reason(change)  # "another run since": the update run itself

    monkeypatch.setattr(github_mirror, "stale_reason", confirm_first)
    mirror = sync_run(plan.plan_run_id)

    assert confirmed and steps_posted(fake_github) == ["planned"]  # not "not_applied"
    assert not mirror.closed and fake_github.issues[1].state == "open"
    monkeypatch.setattr(github_mirror, "stale_reason", real_stale_reason)
    assert not sync_run(confirmed[0].pk).closed  # what the confirm's own transition asks for
    assert steps_posted(fake_github) == ["planned", "confirmed"]


def test_an_update_succeeding_during_a_pass_still_gets_its_code_committed(
    github_settings, fake_github, environment, owner, monkeypatch
):
    plan = plan_change(environment, owner, {"desired_count": 3})
    finish_plan(plan)
    update = confirm(plan, owner)
    start(update, "render", "init", "apply")
    sync_run(update.pk)
    real_change_plan = github_mirror._change_plan
    succeeded = []

    def succeed_first(plan_run):  # the pass has read the environment; the update succeeds now
        if not succeeded:
            succeeded.append(succeed_update(update))
        return real_change_plan(plan_run)

    monkeypatch.setattr(github_mirror, "_change_plan", succeed_first)
    mirror = sync_run(update.pk)

    assert succeeded and code_on_github(fake_github) == NEW_CODE
    assert mirror.commit_sha == fake_github.history()[0]["sha"] and mirror.closed


# --- scheduling ------------------------------------------------------------------------------------


@pytest.fixture
def enqueued(monkeypatch):
    """The run ids `portal.mirror_run` was sent for (nothing reaches the broker)."""
    sent = []
    monkeypatch.setattr(github_mirror, "current_app", TaskSink(github_mirror.MIRROR_RUN_TASK, lambda run_id: sent.append(run_id)))
    return sent


@pytest.mark.usefixtures("runs_sent_to_workers")
def test_plan_and_update_transitions_enqueue_a_sync_on_commit(
    github_settings, enqueued, environment, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        plan = plan_change(environment, owner, {"desired_count": 3})  # dispatched on commit (the queue moves)
    with django_capture_on_commit_callbacks(execute=True):
        transitions.claim_run(plan.plan_run_id, WORKER)
        for stage in ("render", "init", "plan"):
            transitions.set_stage(plan.plan_run_id, stage, WORKER)
        transitions.succeed_plan(Run.objects.get(pk=plan.plan_run_id), WORKER, plan_file=b"saved plan",
                                 state_serial=None, resource_changes=RESOURCE_CHANGES)
    with django_capture_on_commit_callbacks(execute=True):
        update = confirm(plan, owner)
    with django_capture_on_commit_callbacks(execute=True):
        transitions.claim_run(update.pk, WORKER)
        for stage in ("render", "init", "apply", "outputs"):
            transitions.set_stage(update.pk, stage, WORKER)
        succeed_update(update)

    # queued, planned; confirmed (queued), apply started, applied
    assert enqueued == [plan.plan_run_id, plan.plan_run_id, update.pk, update.pk, update.pk]


def test_the_periodic_catch_up_revisits_open_change_issues_after_requests_that_fell_behind(github_settings, enqueued):
    environment = make_environment(status="ready")
    open_plan = make_run(environment, kind=RunKind.PLAN, status=RunStatus.SUCCEEDED)
    GitHubMirror.objects.create(run=open_plan, repository="acme/provisioning", issue_number=1, closed=False)
    closed_plan = make_run(environment, kind=RunKind.PLAN, status=RunStatus.SUCCEEDED)
    GitHubMirror.objects.create(run=closed_plan, repository="acme/provisioning", issue_number=2, closed=True)
    behind = make_run(environment, status=RunStatus.SUCCEEDED)
    GitHubMirror.objects.create(run=behind, repository="acme/provisioning", issue_number=3, closed=False)
    never = make_run(environment, kind=RunKind.PLAN, status=RunStatus.FAILED)
    make_run(environment, kind=RunKind.UPDATE, status=RunStatus.SUCCEEDED)  # mirrored through its plan run
    make_run(make_environment(status="planning"), kind=RunKind.PLAN, status=RunStatus.RUNNING)  # its transitions sync it

    assert catch_up_stale() == [behind.pk, never.pk, open_plan.pk]
    assert enqueued == [behind.pk, never.pk, open_plan.pk]
    assert catch_up_stale(limit=2) == [behind.pk, never.pk]


def test_an_update_run_without_a_change_plan_is_not_mirrored(github_settings, fake_github):
    orphan = make_run(make_environment(status="ready"), kind=RunKind.UPDATE, status=RunStatus.SUCCEEDED)

    assert sync_run(orphan.pk) is None
    assert fake_github.calls == [] and GitHubMirror.objects.count() == 0


def test_late_issues_name_what_changed_and_an_older_change_never_commits_over_a_newer_one(
    github_settings, fake_github, environment, owner
):
    newest_code = {**NEW_CODE, "locals.tf": 'locals {\n  desired_count = 5\n}\n'}
    first = plan_change(environment, owner, {"desired_count": 3})
    finish_plan(first)
    first_update = confirm(first, owner)
    start(first_update, "render", "init", "apply")
    succeed_update(first_update)
    second = plan_change(Run.objects.get(pk=first_update.pk).environment, owner, {"desired_count": 5}, code=newest_code)
    finish_plan(second)
    second_update = confirm(second, owner)
    start(second_update, "render", "init", "apply")
    succeed_update(second_update)

    # GitHub was down until now: both issues are opened after their updates, newest first.
    newer = sync_run(second_update.pk)
    older = sync_run(first_update.pk)

    assert fake_github.issues[1].title == "Change shop/dev (desired_count)"
    assert fake_github.issues[2].title == "Change shop/dev (demo-ecs 1.1.0)"
    assert "- `desired_count`: `3` -> `5`" in fake_github.issues[1].body  # what the earlier change had set
    assert "values before the change are no longer recorded" in fake_github.issues[2].body  # the create's are gone
    assert code_on_github(fake_github) == newest_code  # what runs now, although the older change synced last
    assert newer.commit_sha == fake_github.history()[0]["sha"] and older.commit_sha == ""
    assert "code" in older.milestones and older.closed and newer.closed
    assert len(fake_github.history()) == 3


# --- end to end --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_change_planned_and_confirmed_is_mirrored_by_the_worker(fake_github_for_worker, celery_worker):
    from tests.factories import make_pool
    from tests.waiting import wait_for_environment, wait_until
    from portal.services import environments

    fake = fake_github_for_worker
    department = make_department("payments")
    account = make_account(department, account_id="000000000902", dns_zone="sandbox.example.test")
    make_pool(account, "10.62.0.0/16", prefix_length=24)
    product = make_product(department, slug="shop")
    owner = make_user("owner", departments=[department])
    create = environments.request_create(
        user=owner, product=product, pattern_slug="demo-ecs", name="dev", parameters={"delay_seconds": 1}
    )
    env = wait_for_environment(create.environment_id, ["ready"])
    wait_until(lambda: GitHubMirror.objects.filter(run=create, closed=True).first(), "the create issue to close")

    plan = changes.request_change(user=owner, environment=env, parameters={"desired_count": 3})
    wait_until(lambda: "planned" in (GitHubMirror.objects.filter(run_id=plan.plan_run_id).values_list("milestones", flat=True)
                                     .first() or []), "the planned comment")
    assert Run.objects.get(pk=plan.plan_run_id).status == RunStatus.SUCCEEDED
    update = changes.confirm_change(user=owner, plan=ChangePlan.objects.get(pk=plan.pk))
    env = wait_for_environment(env.pk, ["ready"])
    mirror = wait_until(lambda: GitHubMirror.objects.filter(run_id=plan.plan_run_id, closed=True).first(),
                        "the change issue to close")

    assert Run.objects.get(pk=update.pk).status == RunStatus.SUCCEEDED
    assert [(i.title, i.state, i.state_reason) for i in fake.issues.values()] == [
        ("Create shop/dev (demo-ecs 1.1.0)", "closed", "completed"),
        ("Change shop/dev (desired_count)", "closed", "completed"),
    ]
    assert steps_posted(fake, 2) == ["planned", "confirmed", "apply", "result"]
    assert "| `terraform_data.service` | update |" in fake.issue_comments(2)[0]
    code_path = "environments/000000000902/shop-dev"
    on_github = {p.rsplit("/", 1)[1]: c for p, c in fake.files().items() if p.startswith(code_path + "/")}
    assert on_github == env.code_snapshot == ChangePlan.objects.get(pk=plan.pk).code_snapshot
    assert [c["message"].split("\n")[0] for c in fake.history()] == [
        "Change shop/dev (demo-ecs 1.1.0)", "Create shop/dev (demo-ecs 1.1.0)", "Initial commit"
    ]
    assert mirror.commit_sha == fake.history()[0]["sha"] and GitHubMirror.objects.count() == 2
