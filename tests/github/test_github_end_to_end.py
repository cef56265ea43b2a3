"""End to end: a real create and delete run on the real Celery worker (real Terraform), while the
worker's `portal.mirror_run` tasks mirror them to the fake GitHub, through a GitHub outage.

The worker gets the GITHUB_* settings through `portal_env` (the dict its restarts use), and is
restarted without them afterwards so the rest of the session sees the usual worker.
"""

import re

import pytest

from portal.models import GitHubMirror, Run, RunStatus
from portal.services import environments, github_mirror
from tests.factories import make_account, make_department, make_pool, make_product, make_user
from tests.github.conftest import REPOSITORY, TOKEN
from tests.github_fake import FakeGitHub
from tests.waiting import wait_for_environment, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MARKER = re.compile(r"<!-- portal-mirror run=(\d+) step=(\w+) ")


@pytest.fixture
def fake_github_for_worker(web_server, celery_worker, portal_env, settings):
    with FakeGitHub(token=TOKEN, repository=REPOSITORY) as fake:
        github = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_API_URL": fake.url}
        portal_env.update(github)
        celery_worker.restart()
        for name, value in github.items():  # this process enqueues the first sync (queue_run)
            setattr(settings, name, value)
        github_mirror.reset_clients()
        try:
            yield fake
        finally:
            for name in github:
                portal_env.pop(name, None)
            celery_worker.restart()
            github_mirror.reset_clients()


def test_a_real_create_and_delete_are_mirrored_through_a_github_outage(fake_github_for_worker, celery_worker):
    fake = fake_github_for_worker
    department = make_department("payments")
    account = make_account(department, account_id="000000000901", dns_zone="sandbox.example.test")
    make_pool(account, "10.61.0.0/16", prefix_length=24)
    product = make_product(department, slug="shop")
    owner = make_user("owner", departments=[department])
    fake.fail(2, 500, match=r"POST .*/issues$")  # GitHub is down when the request arrives

    create = environments.request_create(
        user=owner, product=product, pattern_slug="demo-ecs", name="dev", parameters={"delay_seconds": 1}
    )
    env = wait_for_environment(create.environment_id, ["ready"])

    assert Run.objects.get(pk=create.pk).status == RunStatus.SUCCEEDED  # the outage changed nothing
    mirror = wait_until(lambda: GitHubMirror.objects.filter(run=create, closed=True).first(), "the create issue to close")
    assert mirror.attempts >= 1 and mirror.last_error == ""
    code_path = "environments/000000000901/shop-dev"
    assert {p.rsplit("/", 1)[1] for p in fake.files() if p.startswith(code_path + "/")} == set(env.code_snapshot)

    destroy = environments.request_delete(user=owner, environment=env)
    wait_for_environment(env.pk, ["deleted"])
    delete_mirror = wait_until(lambda: GitHubMirror.objects.filter(run=destroy, closed=True).first(), "the delete issue to close")

    issues = fake.issues
    assert [(i.title, i.state, i.state_reason) for i in issues.values()] == [
        ("Create shop/dev (demo-ecs 1.1.0)", "closed", "completed"),
        ("Delete shop/dev", "closed", "completed"),
    ]
    assert (mirror.issue_number, delete_mirror.issue_number) == (1, 2)
    create_steps = [MARKER.search(body).group(2) for body in fake.issue_comments(1)]
    delete_steps = [MARKER.search(body).group(2) for body in fake.issue_comments(2)]
    assert create_steps == ["queued", "apply", "result"]  # each once, in order, despite the retries
    assert delete_steps == ["queued", "destroy", "result"]
    assert "`app-dev.sandbox.example.test`" in fake.issue_comments(1)[2]
    assert [c["message"].split("\n")[0] for c in fake.history()] == [
        "Delete shop/dev", "Create shop/dev (demo-ecs 1.1.0)", "Initial commit"
    ]
    assert not [p for p in fake.files() if p.startswith(code_path + "/")]
    assert delete_mirror.commit_sha == fake.history()[0]["sha"]

    log = celery_worker.log_path.read_text()
    assert re.search(r"portal\.mirror_run\[[^\]]+\] retry", log)  # the task did retry
    assert TOKEN not in log
