"""provisioning.github.GitHubMirrorClient against the fake GitHub, with PyGithub as the real
HTTP client: one commit per change set, idempotent commits, errors that never carry the token,
and rate limits turned into RateLimited instead of a blocked worker."""

import logging
import time

import pytest

from provisioning.github import GitHubError, GitHubMirrorClient, RateLimited, rate_limit_delay
from tests.github.conftest import REPOSITORY, TOKEN

PREFIX = "environments/000000000042/shop-dev"
FILES = {"main.tf": 'resource "terraform_data" "x" {}\n', "locals.tf": "locals {\n  name = \"dev\"\n}\n"}


@pytest.fixture
def client(fake_github):
    return GitHubMirrorClient(TOKEN, REPOSITORY, fake_github.url, timeout=1, seconds_between_writes=None)


def test_it_commits_every_file_of_an_environment_in_one_commit(client, fake_github):
    sha, url = client.commit_files(PREFIX + "/", FILES, "Create shop/dev")

    assert fake_github.requests() == [
        "GET /repos/acme/provisioning",
        "GET /repos/acme/provisioning/git/ref/heads/main",
        f"GET /repos/acme/provisioning/git/commits/{fake_github.history()[1]['sha']}",
        f"GET /repos/acme/provisioning/contents/{PREFIX}",
        "POST /repos/acme/provisioning/git/trees",
        "POST /repos/acme/provisioning/git/commits",
        "PATCH /repos/acme/provisioning/git/refs/heads/main",
    ]
    assert [c["message"] for c in fake_github.history()] == ["Create shop/dev", "Initial commit"]
    assert sha == fake_github.history()[0]["sha"] and url.endswith(f"/commit/{sha}")
    assert fake_github.files() == {"README.md": "# Provisioning\n", **{f"{PREFIX}/{k}": v for k, v in FILES.items()}}
    assert fake_github.calls[-1].json == {"sha": sha, "force": False}


def test_committing_the_same_files_again_makes_no_empty_commit(client, fake_github):
    first = client.commit_files(PREFIX, FILES, "Create shop/dev")
    fake_github.push_commit({"other/file.txt": "unrelated"})

    again = client.commit_files(PREFIX, FILES, "Create shop/dev")

    assert again == first  # the last commit that touched the folder, not the new head
    assert len(fake_github.history()) == 3
    assert not [r for r in fake_github.requests()[7:] if r.startswith(("POST", "PATCH"))]


def test_a_changed_set_replaces_the_folder_in_one_commit(client, fake_github):
    client.commit_files(PREFIX, {**FILES, "old.tf": "# gone soon\n"}, "v1")

    client.commit_files(PREFIX, {"main.tf": "# changed\n", "locals.tf": FILES["locals.tf"]}, "v2")

    files = fake_github.files()
    assert f"{PREFIX}/old.tf" not in files and files[f"{PREFIX}/main.tf"] == "# changed\n"
    tree = [c for c in fake_github.calls if c.path.endswith("/git/trees")][-1].json["tree"]
    assert sorted((e["path"].rsplit("/", 1)[1], "content" in e) for e in tree) == [("main.tf", True), ("old.tf", False)]


def test_delete_removes_the_folder_in_one_commit_and_is_idempotent(client, fake_github):
    client.commit_files(PREFIX, FILES, "Create shop/dev")
    fake_github.push_commit({"environments/000000000042/shop-prod/main.tf": "# keep me\n"})

    removed = client.delete_files(PREFIX, "Delete shop/dev")
    again = client.delete_files(PREFIX, "Delete shop/dev")

    assert again == removed and fake_github.history()[0]["message"] == "Delete shop/dev"
    assert not [p for p in fake_github.files() if p.startswith(PREFIX + "/")]
    assert "environments/000000000042/shop-prod/main.tf" in fake_github.files()


def test_deleting_a_folder_that_never_existed_returns_no_commit(client, fake_github):
    assert client.delete_files(PREFIX, "Delete shop/dev") == ("", "")
    assert len(fake_github.history()) == 1


def test_a_branch_moved_by_someone_else_is_rebased_not_forced(client, fake_github):
    original = fake_github._update_ref
    pushed = []

    def race(ref, *, query, payload):
        if not pushed:  # another writer lands between our commit and our ref update
            pushed.append(fake_github.push_commit({"other.txt": "x"}))
        return original(ref, query=query, payload=payload)

    fake_github._update_ref = race

    sha, _ = client.commit_files(PREFIX, FILES, "Create shop/dev")

    history = fake_github.history()
    assert history[0]["sha"] == sha and history[1]["sha"] == pushed[0]  # on top of theirs
    assert [c.json["force"] for c in fake_github.calls if c.method == "PATCH"] == [False, False]
    assert "other.txt" in fake_github.files()


def test_a_500_becomes_a_retryable_error_after_exactly_one_request(client, fake_github):
    fake_github.fail(5, 500)

    with pytest.raises(GitHubError) as caught:
        client.open_issue("t", "b")

    assert caught.value.retryable and caught.value.status == 500
    assert len(fake_github.calls) == 1  # PyGithub's own retries are off: the task retries


def test_a_slow_github_is_given_up_on_after_the_timeout(client, fake_github):
    fake_github.delay(3)
    started = time.monotonic()

    with pytest.raises(GitHubError, match="did not answer within 1s") as caught:
        client.open_issue("t", "b")

    assert time.monotonic() - started < 2.9  # the 1 s timeout, not the 3 s delay
    assert caught.value.retryable


def test_bad_credentials_are_not_retryable(fake_github):
    client = GitHubMirrorClient("ghp_" + "x" * 36, REPOSITORY, fake_github.url, timeout=1)

    with pytest.raises(GitHubError) as caught:
        client.open_issue("t", "b")

    assert caught.value.status == 401 and not caught.value.retryable


@pytest.mark.parametrize(
    ("kind", "status"), [("reset", 403), ("retry_after", 429), ("secondary", 403)]
)
def test_a_rate_limit_answer_raises_rate_limited_with_githubs_delay(client, fake_github, kind, status):
    fake_github.rate_limit(120, kind=kind)

    with pytest.raises(RateLimited) as caught:
        client.open_issue("t", "b")

    expected = 60 if kind == "secondary" else 120
    assert caught.value.status == status
    assert expected - 2 <= caught.value.retry_after_seconds <= expected + 2


def test_after_a_rate_limit_no_request_is_made_until_the_delay_has_passed(client, fake_github):
    fake_github.rate_limit(1, kind="retry_after")
    with pytest.raises(RateLimited):
        client.open_issue("t", "b")

    with pytest.raises(RateLimited) as caught:
        client.comment(1, "x")
    assert len(fake_github.calls) == 1 and caught.value.retry_after_seconds <= 1

    time.sleep(1.05)
    assert client.open_issue("t", "b")[0] == 1
    assert len(fake_github.calls) == 2


def test_rate_limit_delay_reads_githubs_headers():
    now = 1_000_000.0
    assert rate_limit_delay(429, {"Retry-After": "30"}, now=now) == 30
    assert rate_limit_delay(403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now) + 90)}, now=now) == 91
    assert rate_limit_delay(403, {}, "You have exceeded a secondary rate limit", now=now) == 60
    assert rate_limit_delay(403, {"X-RateLimit-Remaining": "12"}, "Resource not accessible by integration", now=now) is None
    assert rate_limit_delay(500, {"Retry-After": "5"}, now=now) is None


def test_the_token_never_appears_in_errors_or_logs(client, fake_github, caplog):
    caplog.set_level(logging.DEBUG)
    fake_github.fail(1, 502, message=f"proxy logged credential={TOKEN}")

    with pytest.raises(GitHubError) as caught:
        client.open_issue("t", "b")

    assert TOKEN not in str(caught.value) and "[REDACTED]" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    client.open_issue("t", "b")  # a successful call is logged by PyGithub at DEBUG too
    assert TOKEN not in caplog.text
    assert fake_github.auth_headers[-1] == f"token {TOKEN}"  # the fake really received it


def test_it_refuses_unsafe_paths(client):
    with pytest.raises(ValueError):
        client.commit_files("environments/../secrets", FILES, "x")
    with pytest.raises(ValueError):
        client.commit_files(PREFIX, {"../escape.tf": "x"}, "x")
