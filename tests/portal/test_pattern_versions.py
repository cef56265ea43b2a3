"""The versioned catalog (issue 16): versions from a git repository's tags beside the bundled
ones, environments pinned to theirs, a used version immutable, and an upgrade whose new
version renames a resource with a `moved` block planned as a move - not a destroy.
"""

import subprocess
from pathlib import Path

import pytest
from django.core import checks

from portal.models import ChangePlan, PatternVersion, Run, RunStatus
from portal.models.runs import TERMINAL
from portal.services import catalog, changes, environments
from portal.services.errors import Conflict, InvalidRequest
from tests.factories import make_account, make_department, make_pool, make_product, make_user
from tests.waiting import wait_for_environment, wait_until

PATTERN_YAML = """\
name: Renamer
version: "{version}"
description: A test pattern whose 1.1.0 renames its one resource.
cloud: none
expected_duration_seconds: 5
endpoints: []
parameters:
  type: object
  additionalProperties: false
  properties:
    greeting:
      type: string
      description: What the resource holds.
      default: hello
"""
LOCALS = "locals {\n  greeting = {{ params.greeting }}\n}\n"
MAIN_V1 = 'resource "terraform_data" "web" {\n  input = local.greeting\n}\n\noutput "greeting" {\n  value = terraform_data.web.output\n}\n'
MAIN_V2 = (
    'resource "terraform_data" "frontend" {\n  input = local.greeting\n}\n\n'
    "moved {\n  from = terraform_data.web\n  to   = terraform_data.frontend\n}\n\n"
    'output "greeting" {\n  value = terraform_data.frontend.output\n}\n'
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def publish(repo: Path, version: str, main_tf: str, *, tag: str | None = None, yaml_version: str | None = None) -> None:
    """Commit renamer/ at `version` and tag it renamer/<version>."""
    folder = repo / "renamer"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pattern.yaml").write_text(PATTERN_YAML.format(version=yaml_version or version))
    (folder / "locals.tf.j2").write_text(LOCALS)
    (folder / "main.tf").write_text(main_tf)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-q", "-m", f"renamer {version}")
    git(repo, "tag", tag or f"renamer/{version}")


@pytest.fixture
def pattern_repo(tmp_path, settings):
    repo = tmp_path / "patterns-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    settings.PATTERNS_GIT_URL = str(repo)
    settings.PATTERNS_GIT_CACHE_DIR = tmp_path / "cache"
    settings.PATTERNS_GIT_MISS_SYNC_SECONDS = 0
    catalog._load.cache_clear()
    yield repo
    catalog._load.cache_clear()


def test_tags_are_versions_newest_first_beside_the_bundled_patterns(pattern_repo):
    publish(pattern_repo, "1.0.0", MAIN_V1)
    publish(pattern_repo, "1.10.0", MAIN_V2)
    publish(pattern_repo, "1.9.0", MAIN_V2)
    git(pattern_repo, "tag", "release-2026")  # not a pattern version: ignored
    catalog.sync_git()
    assert [p.version for p in catalog.get_versions("renamer")] == ["1.10.0", "1.9.0", "1.0.0"]
    assert catalog.get_pattern("renamer").version == "1.10.0"
    assert catalog.get_pattern("renamer", "1.0.0").source == "git renamer/1.0.0"
    assert "demo-ecs" in catalog.get_catalog()  # the bundled ones are still there
    assert catalog.upgrade_available("renamer", "1.0.0") == "1.10.0"
    assert catalog.upgrade_available("renamer", "1.10.0") is None
    with pytest.raises(InvalidRequest, match=r"holds no version 2.0.0 of renamer \(it holds 1.10.0, 1.9.0, 1.0.0\)"):
        catalog.get_pattern("renamer", "2.0.0")


def test_a_tag_that_disagrees_with_its_pattern_yaml_is_refused_and_reported(pattern_repo):
    publish(pattern_repo, "1.0.0", MAIN_V1)
    publish(pattern_repo, "1.1.0", MAIN_V2, yaml_version="1.2.0")
    catalog.sync_git()
    assert [p.version for p in catalog.get_versions("renamer")] == ["1.0.0"]
    warnings = [m for m in checks.run_checks() if m.id == "portal.W010"]
    assert len(warnings) == 1 and "the tag says version 1.1.0 but renamer/pattern.yaml says 1.2.0" in warnings[0].msg


def test_a_pushed_tag_is_found_on_the_first_request_that_names_it(pattern_repo):
    publish(pattern_repo, "1.0.0", MAIN_V1)
    catalog.sync_git()
    publish(pattern_repo, "1.1.0", MAIN_V2)  # pushed after the last sync
    assert catalog.get_pattern("renamer", "1.1.0").version == "1.1.0"


@pytest.mark.django_db
def test_a_used_version_is_immutable(pattern_repo):
    publish(pattern_repo, "1.0.0", MAIN_V1)
    catalog.sync_git()
    catalog.pin_version(catalog.get_pattern("renamer", "1.0.0"))
    assert PatternVersion.objects.get(slug="renamer", version="1.0.0").source == "git renamer/1.0.0"
    # Someone moves the tag to other files: the used version now means something else.
    (pattern_repo / "renamer" / "main.tf").write_text(MAIN_V1.replace("local.greeting", '"changed"'))
    git(pattern_repo, "-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-qam", "rewrite")
    git(pattern_repo, "tag", "-f", "renamer/1.0.0")
    catalog.sync_git()
    with pytest.raises(Conflict, match="renamer 1.0.0 is in use and its files have changed since"):
        catalog.pin_version(catalog.get_pattern("renamer", "1.0.0"))
    assert catalog.changed_used_versions() and "renamer 1.0.0" in catalog.changed_used_versions()[0]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_upgrade_that_renames_a_resource_with_moved_plans_a_move_not_a_destroy(pattern_repo, web_server, celery_worker):
    department = make_department("payments")
    account = make_account(department, dns_zone="sandbox.example.test")
    make_pool(account, "10.61.0.0/16", prefix_length=24)
    product = make_product(department, slug="shop")
    owner = make_user("owner", departments=[department])
    publish(pattern_repo, "1.0.0", MAIN_V1)
    catalog.sync_git()

    run = environments.request_create(user=owner, product=product, pattern_slug="renamer", name="dev")
    env = wait_for_environment(run.environment_id, {"ready"})
    assert env.pattern_version == "1.0.0" and env.outputs["greeting"] == "hello"

    publish(pattern_repo, "1.1.0", MAIN_V2)  # the platform team ships 1.1.0
    catalog.sync_git()  # what beat does every PATTERNS_GIT_SYNC_SECONDS
    fleet = {(row["pattern"], row["version"]): row for row in catalog.fleet()}
    assert fleet[("renamer", "1.0.0")]["environments"] == 1
    assert fleet[("renamer", "1.0.0")]["upgrade_available"] == "1.1.0"

    plan = changes.request_change(user=owner, environment=env, pattern_version="1.1.0")
    wait_until(lambda: Run.objects.get(pk=plan.plan_run_id).status in TERMINAL, "the plan run to end")
    plan = ChangePlan.objects.select_related("plan_run").get(pk=plan.pk)
    assert plan.plan_run.status == RunStatus.SUCCEEDED, plan.plan_run.explanation
    assert plan.is_upgrade and plan.pattern_version_before == "1.0.0"
    assert plan.resource_changes == [
        {"address": "terraform_data.frontend", "action": "move", "moved_from": "terraform_data.web"}
    ], plan.resource_changes
    assert plan.summary["destroy"] == 0 and plan.summary["move"] == 1

    changes.confirm_change(user=owner, plan=plan)
    env = wait_for_environment(env.pk, {"ready"})
    assert env.pattern_version == "1.1.0" and env.outputs["greeting"] == "hello"
    assert "moved {" in env.code_snapshot["main.tf"]
    assert catalog.upgrade_available("renamer", env.pattern_version) is None
    assert {(p.slug, p.version) for p in PatternVersion.objects.all()} >= {("renamer", "1.0.0"), ("renamer", "1.1.0")}


@pytest.mark.django_db
def test_the_cli_prints_the_fleet_after_a_sync(pattern_repo, capsys):
    from django.core.management import call_command

    from tests.factories import make_superuser

    make_superuser("root")
    publish(pattern_repo, "1.0.0", MAIN_V1)
    call_command("provision", "versions", "--sync")
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("renamer"))
    assert "1.0.0" in line and "git renamer/1.0.0" in line and "latest" in line
    assert any(line.startswith("demo-ecs") and "bundled" in line for line in out.splitlines())
