"""The GitHub side of the audit trail: a small wrapper around PyGithub.

`GitHubMirrorClient` opens, comments on and closes issues, and commits (or removes) the rendered
Terraform code of an environment as ONE commit through the Git Data API (ref -> commit -> tree
-> new tree -> new commit -> ref update), instead of the contents API's one commit per file.

Rules this module keeps, whatever PyGithub or the network does:
- the token never appears in an exception, a log line or a returned value: every PyGithub or
  transport error is re-raised as `GitHubError` with a redacted message and no chained cause;
- nothing here sleeps for long: PyGithub's own retry/backoff (which waits for a rate-limit
  reset, up to an hour) is switched off, and a rate-limit answer becomes `RateLimited` with
  the delay GitHub asked for, so the *caller* schedules the retry instead of a blocked worker;
  after that the client refuses further calls until the delay has passed.

Must not import Django or anything from `portal/` (the service layer passes plain values).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import requests
from github import Auth, Github, GithubException, InputGitTreeElement

from provisioning.redact import Redactor

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = 10
# GitHub asks integrators to wait "at least one minute" after a secondary rate limit answer
# that names no delay.
SECONDARY_RATE_LIMIT_SECONDS = 60.0
# A rate-limit reset is an epoch second from GitHub's clock; a little slack keeps a retry
# from arriving just before the window opens because the clocks differ slightly.
RESET_SLACK_SECONDS = 1.0
# Ref updates lost to a concurrent push are retried from the new head this many times.
REF_UPDATE_ATTEMPTS = 3
FILE_MODE = "100644"


class GitHubError(Exception):
    """A GitHub call failed. The message is redacted and safe to store and show.

    `retryable` is False for answers a retry cannot change (bad credentials, no such
    repository, validation errors); the caller records those and stops retrying.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class RateLimited(GitHubError):
    """GitHub said "not now": retry after `retry_after_seconds`, and make no call before."""

    def __init__(self, message: str, retry_after_seconds: float, *, status: int | None = None):
        super().__init__(message, status=status, retryable=True)
        self.retry_after_seconds = retry_after_seconds


def git_blob_sha(content: str) -> str:
    """The blob id git gives `content` (what the contents API reports as `sha`)."""
    data = content.encode("utf-8")
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def rate_limit_delay(status: int, headers: Mapping[str, str], message: str = "", now: float | None = None) -> float | None:
    """Seconds GitHub asks us to wait, or None when the answer is not a rate limit.

    Follows GitHub's documented order: `Retry-After` first; then `X-RateLimit-Remaining: 0`
    with `X-RateLimit-Reset` (epoch seconds); then a 403/429 whose message names a
    (secondary) rate limit but no delay: one minute.
    """
    if status not in (403, 429):
        return None
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    now = time.time() if now is None else now
    retry_after = lowered.get("retry-after")
    if retry_after is not None:
        try:
            return max(1.0, float(retry_after))
        except ValueError:
            pass  # an HTTP date is allowed too; fall through to the other signals
    if str(lowered.get("x-ratelimit-remaining", "")).strip() == "0" and "x-ratelimit-reset" in lowered:
        try:
            return max(1.0, float(lowered["x-ratelimit-reset"]) - now + RESET_SLACK_SECONDS)
        except ValueError:
            return SECONDARY_RATE_LIMIT_SECONDS
    if status == 429 or "rate limit" in (message or "").lower():
        return SECONDARY_RATE_LIMIT_SECONDS
    return None


class GitHubMirrorClient:
    """Issues and commits in one repository, through PyGithub (a real HTTP client).

    `api_url` is the REST root (https://api.github.com, a GitHub Enterprise `/api/v3`, or a
    test server). `retry` is handed to PyGithub unchanged and defaults to None (no internal
    retries: the caller's task retries with backoff). `seconds_between_requests/writes` are
    PyGithub's client-side throttle; GitHub recommends spacing writes to avoid its secondary
    rate limits, so the default keeps a short gap between writes.
    """

    def __init__(
        self,
        token: str,
        repository: str,
        api_url: str = "https://api.github.com",
        timeout: float = DEFAULT_TIMEOUT,
        retry: Any = None,
        *,
        branch: str | None = None,
        seconds_between_requests: float | None = None,
        seconds_between_writes: float | None = 0.5,
    ):
        if not token:
            raise ValueError("a GitHub token is required")
        if repository.count("/") != 1 or not all(repository.split("/")):
            raise ValueError(f"repository must look like owner/name, not {repository!r}")
        self.repository = repository
        self.api_url = api_url.rstrip("/")
        # PyGithub insists on whole seconds (it asserts an int).
        self.timeout = max(1, math.ceil(timeout))
        self.redactor = Redactor([token])
        self._branch = branch
        self._blocked_until = 0.0  # monotonic; set by a rate-limit answer
        self._github = Github(
            auth=Auth.Token(token),
            base_url=self.api_url,
            timeout=self.timeout,
            retry=retry,
            seconds_between_requests=seconds_between_requests,
            seconds_between_writes=seconds_between_writes,
            lazy=True,
        )
        self._repo = self._github.get_repo(repository)  # lazy: no request until needed

    # -- issues ------------------------------------------------------------------------------

    def open_issue(self, title: str, body: str, labels: list[str] | tuple[str, ...] = ()) -> tuple[int, str]:
        """Open an issue; returns (number, html url)."""
        def create():
            issue = self._repo.create_issue(title=title, body=body, labels=list(labels))
            return issue.number, issue.html_url

        return self._call("open an issue", create)

    def find_issue(self, marker: str, *, labels: list[str] | tuple[str, ...] = (), limit: int = 100) -> tuple[int, str] | None:
        """The newest issue (open or closed) whose body contains `marker`, among the `limit`
        most recently created ones carrying `labels`; None if there is none.

        Used before opening an issue, so an issue GitHub created while our request timed out
        (or while the worker died before recording it) is adopted instead of duplicated.
        """

        def search():
            kwargs = {"state": "all", "sort": "created", "direction": "desc"}
            if labels:
                kwargs["labels"] = list(labels)
            for index, issue in enumerate(self._repo.get_issues(**kwargs)):
                if index >= limit:
                    return None
                if marker in (issue.body or ""):
                    return issue.number, issue.html_url
            return None

        return self._call("look for an existing issue", search)

    def comment(self, number: int, body: str) -> int:
        """Comment on issue `number`; returns the comment id."""
        return self._call(f"comment on issue #{number}", lambda: self._repo.get_issue(number).create_comment(body).id)

    def comment_bodies(self, number: int) -> list[str]:
        """Every comment body of issue `number`, oldest first."""
        return self._call(
            f"read the comments of issue #{number}",
            lambda: [c.body or "" for c in self._repo.get_issue(number).get_comments()],
        )

    def close_issue(self, number: int, comment: str | None = None, *, reason: str = "completed") -> None:
        """Close issue `number` (with `reason` "completed" or "not_planned"), after an
        optional final comment. Closing a closed issue is harmless, so this is idempotent."""
        if comment:
            self.comment(number, comment)
        self._call(
            f"close issue #{number}",
            lambda: self._repo.get_issue(number).edit(state="closed", state_reason=reason),
        )

    # -- code ------------------------------------------------------------------------------

    def commit_files(self, path_prefix: str, files: Mapping[str, str], message: str) -> tuple[str, str]:
        """Make the folder `path_prefix` hold exactly `files` (name -> text), in ONE commit on
        the default branch; returns (commit sha, commit html url).

        Files under the prefix that are not in `files` are removed in the same commit. When
        the folder already holds exactly these files (a retry after the commit succeeded but
        was not recorded), no empty commit is made: the last commit touching the folder is
        returned instead.
        """
        prefix = _clean_prefix(path_prefix)
        wanted = {f"{prefix}/{_clean_name(name)}": content for name, content in files.items()}
        if not wanted:
            raise ValueError("nothing to commit: no files")

        def changes(existing: dict[str, str]) -> list[InputGitTreeElement]:
            elements = [
                InputGitTreeElement(path, FILE_MODE, "blob", content=content)
                for path, content in sorted(wanted.items())
                if existing.get(path) != git_blob_sha(content)
            ]
            elements += [
                InputGitTreeElement(path, FILE_MODE, "blob", sha=None) for path in sorted(existing) if path not in wanted
            ]
            return elements

        return self._commit(prefix, changes, message)

    def delete_files(self, path_prefix: str, message: str) -> tuple[str, str]:
        """Remove everything under `path_prefix` in ONE commit; returns (sha, html url).

        When nothing is left to remove (already removed, e.g. a retry), returns the last
        commit that touched the folder, or ("", "") if it never existed.
        """
        prefix = _clean_prefix(path_prefix)

        def changes(existing: dict[str, str]) -> list[InputGitTreeElement]:
            return [InputGitTreeElement(path, FILE_MODE, "blob", sha=None) for path in sorted(existing)]

        return self._commit(prefix, changes, message)

    # -- internals ----------------------------------------------------------------------------

    @property
    def branch(self) -> str:
        """The branch commits go to: the repository's default branch unless one was given."""
        if self._branch is None:
            self._branch = self._call("read the repository", lambda: self._repo.default_branch)
        return self._branch

    def _commit(
        self, prefix: str, changes: Callable[[dict[str, str]], list[InputGitTreeElement]], message: str
    ) -> tuple[str, str]:
        branch = self.branch
        for attempt in range(1, REF_UPDATE_ATTEMPTS + 1):
            ref = self._repo.get_git_ref(f"heads/{branch}")
            head_sha = self._call(f"read branch {branch}", lambda: ref.object.sha)
            head = self._call("read the head commit", lambda: self._repo.get_git_commit(head_sha))
            existing = self._list_files(prefix, head_sha)
            elements = changes(existing)
            if not elements:
                return self._last_commit_touching(prefix, branch)
            tree = self._call("create a tree", lambda: self._repo.create_git_tree(elements, base_tree=head.tree))
            commit = self._call("create a commit", lambda: self._repo.create_git_commit(message, tree, [head]))
            try:
                self._call(f"move branch {branch}", lambda: ref.edit(sha=commit.sha, force=False))
            except GitHubError as exc:
                # 422 "not a fast forward": someone pushed in between; rebuild on the new head.
                if exc.status == 422 and attempt < REF_UPDATE_ATTEMPTS:
                    log.info("branch %s moved while committing to %s; retrying", branch, prefix)
                    continue
                raise
            return commit.sha, commit.html_url
        raise AssertionError("unreachable")  # pragma: no cover

    def _list_files(self, prefix: str, ref: str) -> dict[str, str]:
        """path -> blob sha of every file under `prefix` at commit `ref` (recursive)."""
        found: dict[str, str] = {}
        pending = [prefix]
        while pending:
            folder = pending.pop()
            try:
                entries = self._call(f"list {folder}", lambda f=folder: self._repo.get_contents(f, ref=ref))
            except GitHubError as exc:
                if exc.status == 404:
                    continue
                raise
            if not isinstance(entries, list):
                entries = [entries]
            for entry in entries:
                if entry.type == "dir":
                    pending.append(entry.path)
                else:
                    found[entry.path] = entry.sha
        return found

    def _last_commit_touching(self, prefix: str, branch: str) -> tuple[str, str]:
        def newest():
            for commit in self._repo.get_commits(sha=branch, path=prefix):
                return commit.sha, commit.html_url
            return "", ""

        return self._call(f"find the last commit of {prefix}", newest)

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        """Run one PyGithub operation; translate every failure into a redacted GitHubError."""
        remaining = self._blocked_until - time.monotonic()
        if remaining > 0:
            raise RateLimited(
                f"GitHub rate limit: not calling GitHub for another {remaining:.0f}s (to {action})", remaining
            )
        with self._translate(action):
            return fn()

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        redact = self.redactor.redact
        try:
            yield
        except GitHubError:
            raise
        except GithubException as exc:
            message = _github_message(exc)
            delay = rate_limit_delay(exc.status, exc.headers or {}, message)
            if delay is not None:
                self._blocked_until = time.monotonic() + delay
                error: GitHubError = RateLimited(
                    redact(f"GitHub rate limit while trying to {action} (HTTP {exc.status}): retry in {delay:.0f}s"),
                    delay,
                    status=exc.status,
                )
            else:
                retryable = exc.status >= 500 or exc.status in (408, 409)
                error = GitHubError(
                    redact(f"GitHub answered HTTP {exc.status} when trying to {action}: {message}".rstrip(": ")),
                    status=exc.status,
                    retryable=retryable,
                )
            raise error from None
        except requests.Timeout:
            raise GitHubError(
                f"GitHub did not answer within {self.timeout:g}s when trying to {action}", retryable=True
            ) from None
        except requests.RequestException as exc:
            raise GitHubError(
                redact(f"Could not reach GitHub at {self.api_url} to {action}: {type(exc).__name__}: {exc}"),
                retryable=True,
            ) from None
        except Exception as exc:  # PyGithub parsing surprises, assertion errors: not retryable
            raise GitHubError(
                redact(f"Unexpected error when trying to {action}: {type(exc).__name__}: {exc}"), retryable=False
            ) from None


def _github_message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        parts = [str(data.get("message") or "")]
        errors = data.get("errors")
        if errors:
            parts.append(str(errors))
        return " ".join(p for p in parts if p)[:500]
    if isinstance(data, (str, bytes)):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        return text[:500]
    return exc.message or ""


def _clean_prefix(path_prefix: str) -> str:
    prefix = path_prefix.strip("/")
    parts = prefix.split("/")
    if not prefix or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a safe repository folder: {path_prefix!r}")
    return prefix


def _clean_name(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a safe file name: {name!r}")
    return name
