"""A real OpenID provider for the sign-in tests: node-oidc-provider (tests/oidc/provider.mjs).

- `start_provider(...)` installs the provider's npm packages once per lockfile into
  `<PORTAL_VAR_DIR>/oidc-provider/<lock hash>/` (`npm ci`, from the committed
  package-lock.json), then starts it on a free 127.0.0.1 port with its own RSA signing key
  (which the test keeps, to sign tokens of its own) and a users file the test edits.
  Skipped, saying why, where node or npm are missing.
- `oidc_provider` (session): one for the in-process tests, whose redirect URI is the test
  client's `http://testserver/oidc/callback/`.
- `oidc_settings`: the portal configured for it, as the README's variables would.
- `sign_in(client, provider, username)`: the whole code flow as a browser makes it - the
  portal's redirect, the provider's login form, its redirect back, the portal's callback.
- `token_tamperer`: a token endpoint in front of the provider's that can replace the ID token
  the provider issued, so the portal's real validation meets a forged or expired one.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.processes import ManagedProcess, free_port, http_ok

HERE = Path(__file__).resolve().parent
CLIENT_ID = "sandbox-portal"
CLIENT_SECRET = "test-only-client-secret"
KEY_ID = "test-signing-key"
TEST_CLIENT_CALLBACK = "http://testserver/oidc/callback/"
DEPARTMENT_GROUPS = [("sandbox-payments", "payments"), ("sandbox-data", "data")]
STAFF_GROUP = "platform-admins"
NPM_TIMEOUT_SECONDS = 300


def _b64(number: int) -> str:
    return base64.urlsafe_b64encode(number.to_bytes((number.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def new_rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_jwk(key, kid: str) -> dict:
    numbers = key.private_numbers()
    public = numbers.public_numbers
    return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": _b64(public.n), "e": _b64(public.e),
            "d": _b64(numbers.d), "p": _b64(numbers.p), "q": _b64(numbers.q), "dp": _b64(numbers.dmp1),
            "dq": _b64(numbers.dmq1), "qi": _b64(numbers.iqmp)}


def provider_packages(var_dir: Path) -> Path:
    """A folder with provider.mjs beside its installed node_modules (npm ci once per lockfile)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("the OpenID provider tests need node and npm (apt-get install -y nodejs npm)")
    lock = (HERE / "package-lock.json").read_bytes()
    folder = var_dir / "oidc-provider" / hashlib.sha256(lock + (HERE / "package.json").read_bytes()).hexdigest()[:16]
    if not (folder / "node_modules" / "oidc-provider" / "package.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(HERE / name, folder / name)
        result = subprocess.run([npm, "ci", "--prefix", str(folder), "--no-audit", "--no-fund", "--loglevel", "error"],
                                capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS)
        if result.returncode != 0:
            shutil.rmtree(folder / "node_modules", ignore_errors=True)
            pytest.fail(f"npm ci of tests/oidc failed ({result.returncode}):\n{result.stdout}\n{result.stderr}",
                        pytrace=False)
    shutil.copyfile(HERE / "provider.mjs", folder / "provider.mjs")  # always the checkout's version
    return folder


class TestProvider:
    """A running provider: its issuer, signing key, and the users it knows."""

    __test__ = False  # not a test class

    def __init__(self, *, folder: Path, state_dir: Path, redirect_uris: list[str], log_dir: Path, name: str):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = new_rsa_key()
        state_dir.mkdir(parents=True, exist_ok=True)
        self.users_file = state_dir / f"{name}-users.json"
        self.users_file.write_text("{}")
        jwks_file = state_dir / f"{name}-jwks.json"
        jwks_file.write_text(json.dumps({"keys": [private_jwk(self.key, KEY_ID)]}))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(state_dir),
            "OIDC_TEST_PORT": str(self.port),
            "OIDC_TEST_USERS_FILE": str(self.users_file),
            "OIDC_TEST_JWKS_FILE": str(jwks_file),
            "OIDC_TEST_CLIENT_ID": CLIENT_ID,
            "OIDC_TEST_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_TEST_REDIRECT_URIS": ",".join(redirect_uris),
        }
        self.process = ManagedProcess(name, [shutil.which("node"), "provider.mjs"], env=env, log_dir=log_dir,
                                      cwd=folder, ready_timeout=30,
                                      ready=lambda p: http_ok(f"{self.issuer}/.well-known/openid-configuration"))
        self.discovery: dict = {}

    def start(self) -> TestProvider:
        self.process.start()
        self.discovery = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10).json()
        return self

    def set_user(self, username: str, *, groups: list[str], email: str | None = None) -> None:
        """Add or change a user; the provider reads the file again at every lookup."""
        users = json.loads(self.users_file.read_text())
        users[username] = {"groups": list(groups), "email": email or f"{username}@corp.example.test",
                           "name": username.title()}
        self.users_file.write_text(json.dumps(users))

    def settings_env(self) -> dict[str, str]:
        """The portal's configuration for this provider, as README's variables."""
        return {
            "OIDC_RP_CLIENT_ID": CLIENT_ID,
            "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_PROVIDER_NAME": "Test IdP",
            "OIDC_OP_ISSUER": self.discovery["issuer"],
            "OIDC_OP_AUTHORIZATION_ENDPOINT": self.discovery["authorization_endpoint"],
            "OIDC_OP_TOKEN_ENDPOINT": self.discovery["token_endpoint"],
            "OIDC_OP_USER_ENDPOINT": self.discovery["userinfo_endpoint"],
            "OIDC_OP_JWKS_ENDPOINT": self.discovery["jwks_uri"],
            "OIDC_RP_SCOPES": "openid email profile groups",
            "OIDC_DEPARTMENT_GROUPS": ",".join(f"{group}={slug}" for group, slug in DEPARTMENT_GROUPS),
            "OIDC_STAFF_GROUPS": STAFF_GROUP,
        }

    def log_in_at_provider(self, session: requests.Session, authorize_url: str, username: str, stop_at: str) -> str:
        """Follow the authorization request through the login form; the URL (back to the
        portal, starting with `stop_at`) the provider finally redirects to."""
        response = session.get(authorize_url, allow_redirects=False, timeout=10)
        url = authorize_url
        for _ in range(10):
            if response.status_code == 200 and 'name="username"' in response.text:
                action = response.text.split('action="', 1)[1].split('"', 1)[0]
                url = urljoin(url, action)
                response = session.post(url, data={"username": username}, allow_redirects=False, timeout=10)
                continue
            assert response.status_code in (302, 303), f"{response.status_code} from the provider: {response.text[:500]}"
            url = urljoin(url, response.headers["Location"])
            if url.startswith(stop_at):
                return url
            response = session.get(url, allow_redirects=False, timeout=10)
        raise AssertionError("the provider never redirected back to the portal")


@contextmanager
def start_provider(*, redirect_uris: list[str], name: str):
    from django.conf import settings

    var_dir = Path(settings.VAR_DIR).resolve()
    folder = provider_packages(var_dir)
    provider = TestProvider(folder=folder, state_dir=var_dir / "oidc-provider" / "state", redirect_uris=redirect_uris,
                            log_dir=var_dir / "logs", name=name)
    provider.start()
    try:
        yield provider
    finally:
        provider.process.stop()


@pytest.fixture(scope="session")
def oidc_provider():
    with start_provider(redirect_uris=[TEST_CLIENT_CALLBACK], name="oidc-provider") as provider:
        yield provider


def apply_provider_settings(settings, provider: TestProvider, **overrides) -> None:
    """What portal/settings.py makes of `provider.settings_env()`, applied to a running test."""
    env = provider.settings_env()
    settings.OIDC_ENABLED = True
    for name in ("OIDC_RP_CLIENT_ID", "OIDC_RP_CLIENT_SECRET", "OIDC_PROVIDER_NAME", "OIDC_OP_ISSUER",
                 "OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT",
                 "OIDC_OP_JWKS_ENDPOINT", "OIDC_RP_SCOPES"):
        setattr(settings, name, env[name])
    settings.OIDC_DEPARTMENT_GROUPS = list(DEPARTMENT_GROUPS)
    settings.OIDC_STAFF_GROUPS = [STAFF_GROUP]
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "portal.services.oidc.OIDCBackend"]
    for name, value in overrides.items():
        setattr(settings, name, value)


@pytest.fixture
def oidc_settings(settings, oidc_provider):
    apply_provider_settings(settings, oidc_provider)
    return settings


def sign_in(client, provider: TestProvider, username: str, *, next_url: str = ""):
    """The code flow end to end; the portal's answer to the provider's redirect back."""
    start = client.get("/oidc/authenticate/" + (f"?next={next_url}" if next_url else ""))
    assert start.status_code == 302, start
    callback = provider.log_in_at_provider(requests.Session(), start["Location"], username, TEST_CLIENT_CALLBACK)
    parts = urlsplit(callback)
    return client.get(parts.path, QUERY_STRING=parts.query)


class TokenTamperer:
    """A token endpoint that forwards to the provider's and, when `tamper` is set, replaces
    the ID token in the answer with `tamper(id_token)`."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.tamper = None
        self.exchanges = 0
        tamperer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = urllib.request.Request(tamperer.upstream, data=body, method="POST",
                                                 headers={"Content-Type": self.headers.get("Content-Type", "")})
                with urllib.request.urlopen(request, timeout=10) as upstream:
                    answer = json.loads(upstream.read())
                tamperer.exchanges += 1
                if tamperer.tamper and "id_token" in answer:
                    answer["id_token"] = tamperer.tamper(answer["id_token"])
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_tamperer(oidc_settings, oidc_provider):
    with TokenTamperer(oidc_provider.discovery["token_endpoint"]) as tamperer:
        oidc_settings.OIDC_OP_TOKEN_ENDPOINT = tamperer.url
        yield tamperer
