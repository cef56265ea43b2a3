"""moto's server as a local AWS for tests: real HTTP, real boto3, no mocks in the process.

    from tests.moto_server import moto_server, aws  # noqa: F401

- `moto_server` (session): `moto_server` (the console script of moto[server]) in a child
  process on a free 127.0.0.1 port, with an explicit environment (no AWS_* of this shell);
  yields its endpoint URL once it answers; stopped at the end of the session. Its output goes
  to a log file whose tail is shown if it fails to start.
- `aws_reset` (function): POSTs `/moto-api/reset` (every account, every service) and turns
  IAM enforcement off, so each test starts from an empty AWS.
- `aws` (function): the same reset, then a `MotoAWS` helper: `.endpoint_url`, `.region`,
  `.session(account_id)` (a boto3 session acting in that account), `.enforce_iam()`.

Plain pytest and boto3, no Django; `create_shared_infrastructure` uses provisioning.aws.simulated
(what `make run-aws` seeds moto with).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.processes import free_port

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
DEFAULT_ACCOUNT = "123456789012"  # moto's account for its dummy credentials
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
START_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0


class MotoServerError(RuntimeError):
    """moto's server did not start; the message carries the tail of its log."""


def _post(url: str, body: bytes = b"") -> bytes:
    # text/plain: with a form content type werkzeug eats the body (reset-auth reads it raw).
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test server
        return response.read()


def _answers(endpoint: str) -> bool:
    """True once the server speaks HTTP (a GET of the reset URL answers 400 "Need to POST")."""
    try:
        urllib.request.urlopen(f"{endpoint}/moto-api/reset", timeout=1).close()  # noqa: S310
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class MotoServer:
    """One `moto_server` child process on 127.0.0.1."""

    def __init__(self, log_path: Path, extra_env: dict[str, str] | None = None):
        self.log_path = log_path
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen | None = None
        self.endpoint_url = ""

    def start(self) -> str:
        # A free port can be taken between choosing and binding it: try a few.
        for _attempt in range(3):
            port = free_port()
            self.endpoint_url = f"http://127.0.0.1:{port}"
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**_server_env(), **self.extra_env},
                    start_new_session=True,
                )
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while time.monotonic() < deadline and self.process.poll() is None:
                if _answers(self.endpoint_url):
                    return self.endpoint_url
                time.sleep(0.1)
            self.stop()
        raise MotoServerError(f"moto_server did not answer on {self.endpoint_url}:\n{self._log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_GRACE_SECONDS)

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _server_env() -> dict[str, str]:
    """PATH/HOME/locale only: moto must not pick up AWS_* or MOTO_* settings of this shell."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR") if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class MotoAWS:
    """A handle on the (reset) moto server for one test."""

    endpoint_url: str
    region: str = "eu-west-1"

    def session(self, account_id: str = DEFAULT_ACCOUNT) -> boto3.Session:
        """A boto3 session acting in `account_id`.

        moto keeps one backend per account; credentials from AssumeRole into a role ARN of
        another account act in that account.
        """
        base = boto3.Session(region_name=self.region, **DUMMY_CREDENTIALS)
        if account_id == DEFAULT_ACCOUNT:
            return base
        sts = base.client("sts", endpoint_url=self.endpoint_url)
        credentials = sts.assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/test-setup", RoleSessionName="test-setup"
        )["Credentials"]
        return boto3.Session(
            region_name=self.region,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    def client(self, service: str, account_id: str = DEFAULT_ACCOUNT):
        return self.session(account_id).client(service, endpoint_url=self.endpoint_url)

    def reset(self) -> None:
        _post(f"{self.endpoint_url}/moto-api/reset")
        self.set_iam_enforcement(False)

    def set_iam_enforcement(self, on: bool) -> None:
        """On: every following request is signature-checked and authorised against IAM policies."""
        _post(f"{self.endpoint_url}/moto-api/reset-auth", b"0" if on else b"inf")

    @contextlib.contextmanager
    def enforce_iam(self) -> Iterator[None]:
        self.set_iam_enforcement(True)
        try:
            yield
        finally:
            self.set_iam_enforcement(False)


# What the AWS patterns need of moto, which it reads only from its environment: AWS managed
# IAM policies loaded (modules/ecs_service attaches AmazonECSTaskExecutionRolePolicy), and
# DNS-validated ACM certificates issued at once (moto's default wait is 60 s).
PATTERNS_ENV = {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "MOTO_ACM_VALIDATION_WAIT": "0"}


@contextlib.contextmanager
def running_moto(log_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """A moto server of the caller's own (its log in `log_dir`); yields its endpoint URL and
    stops it after. A server that does not start fails the test with its log's tail."""
    server = MotoServer(Path(log_dir) / "moto_server.log", extra_env)
    try:
        endpoint = server.start()
    except MotoServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield endpoint
    finally:
        server.stop()


def moto_for_patterns(log_dir: Path):
    """A moto server of the caller's own with PATTERNS_ENV (see running_moto)."""
    return running_moto(log_dir, PATTERNS_ENV)


def create_shared_infrastructure(aws: MotoAWS, zone: str, account: str = DEFAULT_ACCOUNT) -> dict:
    """The zone and what a platform team sets up once per account, in moto, as `make run-aws`
    does it (provisioning.aws.simulated); returns it as an account's `shared_infrastructure`."""
    from provisioning.aws.simulated import prepare_account

    return prepare_account(aws.endpoint_url, account, aws.region, zone)["shared_infrastructure"]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a `moto_server` child process, for the whole session."""
    with tempfile.TemporaryDirectory(prefix="moto-server-") as tmp, running_moto(Path(tmp)) as endpoint:
        yield endpoint


@pytest.fixture
def aws_reset(moto_server: str) -> str:
    """An empty moto (all accounts, all services) with IAM enforcement off; returns the endpoint."""
    MotoAWS(moto_server).reset()
    return moto_server


@pytest.fixture
def aws(moto_server: str) -> MotoAWS:
    """A `MotoAWS` handle on a freshly reset moto server.

    It resets by itself rather than through `aws_reset`, so importing `moto_server, aws` is
    enough (pytest only sees the fixtures a test module imports).
    """
    handle = MotoAWS(moto_server)
    handle.reset()
    return handle
