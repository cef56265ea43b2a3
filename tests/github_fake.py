"""A local fake of the GitHub REST API, for tests that drive the REAL PyGithub client over HTTP.

`FakeGitHub` is a threaded `http.server` on a free 127.0.0.1 port with in-memory state for one
repository: issues and their comments, and a small git object store (blobs, flat trees,
commits, branch refs) behind the Git Data and contents endpoints the mirror uses. Point
`GITHUB_API_URL` (PyGithub's `base_url`) at `fake.url`.

Everything it answers is recorded in `fake.calls` as `Call(method, path, json, query)`
(`path` without the query string, `json` the parsed request body or None), and
`fake.requests()` gives "METHOD path" lines for exact-sequence assertions.

Faults, each for the next matching request(s):
- `fail(n, status=500, match=None, after_processing=False, message=...)`: answer `status`
  with `{"message": message}`; with `after_processing=True` the request takes effect first
  (a 502 from a proxy after the write went through);
- `delay(seconds, n=1, match=None)`: handle the request, then wait before answering (a client
  timeout after which the write DID happen);
- `rate_limit(seconds, kind="reset"|"retry_after"|"secondary", n=1, match=None)`: 403 with
  `X-RateLimit-Remaining: 0` + `X-RateLimit-Reset`, 429 with `Retry-After`, or a 403 whose
  message names a secondary rate limit.
`match` is a regex searched in "METHOD path".

Requests without `Authorization: token|Bearer <token>` get 401 "Bad credentials".

    with FakeGitHub(token="ghp_...", repository="acme/provisioning") as fake:
        client = GitHubMirrorClient("ghp_...", "acme/provisioning", fake.url)
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
from collections import namedtuple
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

Call = namedtuple("Call", "method path json query")

WEB = "https://github.example"


@dataclass
class _Fault:
    kind: str  # "fail" | "delay" | "rate_limit"
    remaining: int
    match: re.Pattern | None
    status: int = 500
    after_processing: bool = False
    seconds: float = 0.0
    rate_kind: str = "reset"
    message: str = "Server Error"


@dataclass
class Issue:
    number: int
    title: str
    body: str
    labels: list[str]
    state: str = "open"
    state_reason: str | None = None
    comments: list[int] = field(default_factory=list)


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class FakeGitHub:
    """One fake repository behind a real HTTP server (see the module docstring)."""

    def __init__(self, *, token: str, repository: str = "acme/provisioning", branch: str = "main"):
        self.token = token
        self.repository = repository
        self.branch = branch
        self.lock = threading.RLock()
        self.calls: list[Call] = []
        self.auth_headers: list[str] = []
        self.faults: list[_Fault] = []
        self.issues: dict[int, Issue] = {}
        self.comments: dict[int, dict] = {}
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, dict[str, str]] = {}  # sha -> {path: blob sha} (flat)
        self.commits: dict[str, dict] = {}  # sha -> {"tree", "parents", "message"}
        self.refs: dict[str, str] = {}
        self._issue_numbers = itertools.count(1)
        self._comment_ids = itertools.count(1001)
        readme = self._blob(b"# Provisioning\n")
        root = self._tree({"README.md": readme})
        self.refs[f"heads/{branch}"] = self._commit(root, [], "Initial commit")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-github", daemon=True
        )

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeGitHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------
    def fail(
        self, n: int = 1, status: int = 500, *, match: str | None = None, after_processing: bool = False,
        message: str = "Server Error",
    ) -> None:
        with self.lock:
            self.faults.append(
                _Fault("fail", n, _compile(match), status=status, after_processing=after_processing, message=message)
            )

    def delay(self, seconds: float, n: int = 1, *, match: str | None = None) -> None:
        with self.lock:
            self.faults.append(_Fault("delay", n, _compile(match), seconds=seconds))

    def rate_limit(self, seconds: float = 60, *, kind: str = "reset", n: int = 1, match: str | None = None) -> None:
        with self.lock:
            self.faults.append(_Fault("rate_limit", n, _compile(match), seconds=seconds, rate_kind=kind))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    # -- inspection -----------------------------------------------------------------------
    def requests(self) -> list[str]:
        """Every request answered so far as "METHOD path" (no query string)."""
        with self.lock:
            return [f"{c.method} {c.path}" for c in self.calls]

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def files(self, ref: str | None = None) -> dict[str, str]:
        """path -> text of every file on the branch (or commit `ref`)."""
        with self.lock:
            sha = self.commits[ref]["tree"] if ref else self.commits[self.refs[f"heads/{self.branch}"]]["tree"]
            return {path: self.blobs[blob].decode() for path, blob in self.trees[sha].items()}

    def history(self) -> list[dict]:
        """Commits of the branch, newest first: {"sha", "message", "parents"}."""
        with self.lock:
            out, sha = [], self.refs[f"heads/{self.branch}"]
            while sha:
                commit = self.commits[sha]
                out.append({"sha": sha, "message": commit["message"], "parents": commit["parents"]})
                sha = commit["parents"][0] if commit["parents"] else None
            return out

    def issue_comments(self, number: int) -> list[str]:
        with self.lock:
            return [self.comments[cid]["body"] for cid in self.issues[number].comments]

    def push_commit(self, files: dict[str, str], message: str = "Someone else's change") -> str:
        """Simulate another writer moving the branch (for the fast-forward race)."""
        with self.lock:
            head = self.refs[f"heads/{self.branch}"]
            tree = dict(self.trees[self.commits[head]["tree"]])
            for path, text in files.items():
                tree[path] = self._blob(text.encode())
            sha = self._commit(self._tree(tree), [head], message)
            self.refs[f"heads/{self.branch}"] = sha
            return sha

    # -- git object store -----------------------------------------------------------------
    def _blob(self, data: bytes) -> str:
        sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        self.blobs[sha] = data
        return sha

    def _tree(self, entries: dict[str, str]) -> str:
        sha = hashlib.sha1(("tree " + json.dumps(sorted(entries.items()))).encode()).hexdigest()
        self.trees[sha] = dict(entries)
        return sha

    def _commit(self, tree: str, parents: list[str], message: str) -> str:
        sha = hashlib.sha1(json.dumps([tree, parents, message, time.time_ns()]).encode()).hexdigest()
        self.commits[sha] = {"tree": tree, "parents": list(parents), "message": message}
        return sha

    def _is_ancestor(self, ancestor: str, sha: str) -> bool:
        pending = [sha]
        while pending:
            current = pending.pop()
            if current == ancestor:
                return True
            pending.extend(self.commits.get(current, {}).get("parents", []))
        return False

    # -- request handling -----------------------------------------------------------------
    def _take_fault(self, line: str) -> _Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and (fault.match is None or fault.match.search(line)):
                    fault.remaining -= 1
                    return fault
            return None

    def handle(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, dict, object]:
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        payload = json.loads(body) if body else None
        with self.lock:
            self.calls.append(Call(method, path, payload, query))
            self.auth_headers.append(headers.get("Authorization", ""))
        auth = headers.get("Authorization", "")
        if auth not in (f"token {self.token}", f"Bearer {self.token}"):
            return 401, {}, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}

        fault = self._take_fault(f"{method} {path}")
        if fault and fault.kind == "rate_limit":
            return _rate_limited(fault)
        if fault and fault.kind == "fail" and not fault.after_processing:
            return fault.status, {}, {"message": fault.message}
        try:
            with self.lock:
                status, result = self._route(method, path, query, payload)
            extra = {}
        except HTTPError as exc:
            status, result, extra = exc.status, {"message": exc.message}, exc.headers
        if fault and fault.kind == "fail":
            return fault.status, {}, {"message": fault.message}
        if fault and fault.kind == "delay":
            time.sleep(fault.seconds)
        return status, extra, result

    def _route(self, method: str, path: str, query: dict, payload) -> tuple[int, object]:
        prefix = f"/repos/{self.repository}"
        if not (path == prefix or path.startswith(prefix + "/")):
            raise HTTPError(404, "Not Found")
        rest = path[len(prefix):]
        routes = [
            ("GET", r"", self._get_repo),
            ("GET", r"/issues", self._list_issues),
            ("POST", r"/issues", self._create_issue),
            ("GET", r"/issues/(\d+)", self._get_issue),
            ("PATCH", r"/issues/(\d+)", self._edit_issue),
            ("GET", r"/issues/(\d+)/comments", self._list_comments),
            ("POST", r"/issues/(\d+)/comments", self._create_comment),
            ("GET", r"/git/refs?/(heads/.+)", self._get_ref),
            ("PATCH", r"/git/refs?/(heads/.+)", self._update_ref),
            ("GET", r"/git/commits/([0-9a-f]{40})", self._get_commit),
            ("POST", r"/git/commits", self._create_commit),
            ("POST", r"/git/trees", self._create_tree),
            ("GET", r"/contents/(.*)", self._get_contents),
            ("GET", r"/commits", self._list_commits),
        ]
        for verb, pattern, handler in routes:
            found = re.fullmatch(pattern, rest)
            if verb == method and found:
                return handler(*found.groups(), query=query, payload=payload)
        raise HTTPError(404, "Not Found")

    # repository
    def _get_repo(self, *, query, payload):
        owner, name = self.repository.split("/")
        return 200, {
            "id": 1,
            "name": name,
            "full_name": self.repository,
            "owner": {"login": owner, "id": 2, "type": "Organization"},
            "default_branch": self.branch,
            "private": True,
            "url": f"{self.url}/repos/{self.repository}",
            "html_url": f"{WEB}/{self.repository}",
        }

    # issues
    def _issue_json(self, issue: Issue) -> dict:
        return {
            "id": 100000 + issue.number,
            "number": issue.number,
            "title": issue.title,
            "body": issue.body,
            "state": issue.state,
            "state_reason": issue.state_reason,
            "labels": [{"name": name} for name in issue.labels],
            "comments": len(issue.comments),
            "url": f"{self.url}/repos/{self.repository}/issues/{issue.number}",
            "html_url": f"{WEB}/{self.repository}/issues/{issue.number}",
        }

    def _create_issue(self, *, query, payload):
        if not payload or not payload.get("title"):
            raise HTTPError(422, "Validation Failed")
        labels = [label if isinstance(label, str) else label["name"] for label in payload.get("labels") or []]
        number = next(self._issue_numbers)
        self.issues[number] = Issue(number, payload["title"], payload.get("body") or "", labels)
        return 201, self._issue_json(self.issues[number])

    def _list_issues(self, *, query, payload):
        state = query.get("state", "open")
        wanted = set(filter(None, query.get("labels", "").split(",")))
        issues = [
            i for i in self.issues.values()
            if (state == "all" or i.state == state) and wanted <= set(i.labels)
        ]
        issues.sort(key=lambda i: i.number, reverse=query.get("direction", "desc") == "desc")
        return 200, [self._issue_json(i) for i in issues]

    def _issue(self, number: str) -> Issue:
        issue = self.issues.get(int(number))
        if issue is None:
            raise HTTPError(404, "Not Found")
        return issue

    def _get_issue(self, number, *, query, payload):
        return 200, self._issue_json(self._issue(number))

    def _edit_issue(self, number, *, query, payload):
        issue = self._issue(number)
        for key in ("title", "body", "state", "state_reason"):
            if key in payload:
                setattr(issue, key, payload[key])
        return 200, self._issue_json(issue)

    def _comment_json(self, cid: int) -> dict:
        comment = self.comments[cid]
        return {
            "id": cid,
            "body": comment["body"],
            "url": f"{self.url}/repos/{self.repository}/issues/comments/{cid}",
            "html_url": f"{WEB}/{self.repository}/issues/{comment['issue']}#issuecomment-{cid}",
        }

    def _list_comments(self, number, *, query, payload):
        return 200, [self._comment_json(cid) for cid in self._issue(number).comments]

    def _create_comment(self, number, *, query, payload):
        issue = self._issue(number)
        cid = next(self._comment_ids)
        self.comments[cid] = {"body": payload["body"], "issue": issue.number}
        issue.comments.append(cid)
        return 201, self._comment_json(cid)

    # git data
    def _ref_json(self, ref: str) -> dict:
        sha = self.refs[ref]
        return {
            "ref": f"refs/{ref}",
            "url": f"{self.url}/repos/{self.repository}/git/refs/{ref}",
            "object": {"sha": sha, "type": "commit", "url": f"{self.url}/repos/{self.repository}/git/commits/{sha}"},
        }

    def _get_ref(self, ref, *, query, payload):
        if ref not in self.refs:
            raise HTTPError(404, "Not Found")
        return 200, self._ref_json(ref)

    def _update_ref(self, ref, *, query, payload):
        if ref not in self.refs:
            raise HTTPError(422, "Reference does not exist")
        sha = payload["sha"]
        if sha not in self.commits:
            raise HTTPError(422, "Object does not exist")
        if not payload.get("force") and not self._is_ancestor(self.refs[ref], sha):
            raise HTTPError(422, "Update is not a fast forward")
        self.refs[ref] = sha
        return 200, self._ref_json(ref)

    def _commit_json(self, sha: str) -> dict:
        commit = self.commits[sha]
        return {
            "sha": sha,
            "url": f"{self.url}/repos/{self.repository}/git/commits/{sha}",
            "html_url": f"{WEB}/{self.repository}/commit/{sha}",
            "message": commit["message"],
            "tree": {"sha": commit["tree"], "url": f"{self.url}/repos/{self.repository}/git/trees/{commit['tree']}"},
            "parents": [
                {"sha": p, "url": f"{self.url}/repos/{self.repository}/git/commits/{p}",
                 "html_url": f"{WEB}/{self.repository}/commit/{p}"}
                for p in commit["parents"]
            ],
        }

    def _get_commit(self, sha, *, query, payload):
        if sha not in self.commits:
            raise HTTPError(404, "Not Found")
        return 200, self._commit_json(sha)

    def _create_commit(self, *, query, payload):
        if payload["tree"] not in self.trees or any(p not in self.commits for p in payload.get("parents", [])):
            raise HTTPError(422, "Object does not exist")
        sha = self._commit(payload["tree"], payload.get("parents", []), payload["message"])
        return 201, self._commit_json(sha)

    def _create_tree(self, *, query, payload):
        base = payload.get("base_tree")
        if base is not None and base not in self.trees:
            raise HTTPError(422, "base_tree is not a valid tree oid")
        entries = dict(self.trees[base]) if base else {}
        for item in payload["tree"]:
            path = item["path"]
            if "content" in item:
                entries[path] = self._blob(item["content"].encode())
            elif item.get("sha") is None:
                if path not in entries:
                    raise HTTPError(422, f"GitRPC::BadObjectState: {path} does not exist")
                del entries[path]
            else:
                if item["sha"] not in self.blobs:
                    raise HTTPError(422, "sha is not a valid blob")
                entries[path] = item["sha"]
        sha = self._tree(entries)
        return 201, {
            "sha": sha,
            "url": f"{self.url}/repos/{self.repository}/git/trees/{sha}",
            "tree": [{"path": p, "mode": "100644", "type": "blob", "sha": s} for p, s in sorted(entries.items())],
            "truncated": False,
        }

    def _resolve(self, ref: str | None) -> str:
        ref = ref or self.branch
        if ref in self.commits:
            return ref
        if f"heads/{ref}" in self.refs:
            return self.refs[f"heads/{ref}"]
        raise HTTPError(404, "No commit found for the ref")

    def _get_contents(self, path, *, query, payload):
        files = self.trees[self.commits[self._resolve(query.get("ref"))]["tree"]]
        path = path.strip("/")
        if path in files:
            data = self.blobs[files[path]]
            return 200, {**self._content_entry(path, "file", files[path]), "encoding": "base64",
                         "content": base64.b64encode(data).decode()}
        entries, dirs = [], set()
        for file_path, sha in sorted(files.items()):
            if not file_path.startswith(path + "/"):
                continue
            child = file_path[len(path) + 1:]
            if "/" in child:
                dirs.add(child.split("/", 1)[0])
            else:
                entries.append(self._content_entry(file_path, "file", sha))
        entries += [self._content_entry(f"{path}/{d}", "dir", hashlib.sha1(d.encode()).hexdigest()) for d in sorted(dirs)]
        if not entries:
            raise HTTPError(404, "Not Found")
        return 200, entries

    def _content_entry(self, path: str, kind: str, sha: str) -> dict:
        return {
            "type": kind,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "size": len(self.blobs.get(sha, b"")),
            "url": f"{self.url}/repos/{self.repository}/contents/{path}",
            "html_url": f"{WEB}/{self.repository}/blob/{self.branch}/{path}",
        }

    def _list_commits(self, *, query, payload):
        sha = self._resolve(query.get("sha"))
        prefix = query.get("path", "").strip("/")

        def under(commit_sha):
            tree = self.trees[self.commits[commit_sha]["tree"]] if commit_sha else {}
            return {p: s for p, s in tree.items() if not prefix or p == prefix or p.startswith(prefix + "/")}

        out = []
        while sha:
            parents = self.commits[sha]["parents"]
            if not prefix or under(sha) != under(parents[0] if parents else None):
                out.append({
                    "sha": sha,
                    "url": f"{self.url}/repos/{self.repository}/commits/{sha}",
                    "html_url": f"{WEB}/{self.repository}/commit/{sha}",
                    "commit": {"message": self.commits[sha]["message"]},
                })
            sha = parents[0] if parents else None
        return 200, out


def _rate_limited(fault: _Fault) -> tuple[int, dict, dict]:
    if fault.rate_kind == "retry_after":
        return 429, {"Retry-After": str(int(fault.seconds))}, {"message": "Too many requests"}
    if fault.rate_kind == "secondary":
        return 403, {}, {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}
    reset = int(time.time() + fault.seconds)
    return 403, {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}, {
        "message": "API rate limit exceeded for installation ID 1.",
        "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting",
    }


def _compile(match: str | None) -> re.Pattern | None:
    return re.compile(match) if match else None


def _handler_for(fake: FakeGitHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stalls

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, result = fake.handle(self.command, self.path, self.headers, body)
            data = json.dumps(result).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timed out) while we were "slow"

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format, *args):  # noqa: A002 (keep test output quiet)
            pass

    return Handler
