"""Child processes for integration tests: the web server and the Celery worker.

Plain helpers, no fixtures (those live in `tests/conftest.py`). A `ManagedProcess` runs one
command in its own process group with an explicit environment, writes its output to a log
file under `<PORTAL_VAR_DIR>/logs/`, waits until a readiness probe passes, and stops with
SIGTERM to its main process, then SIGKILL to the group. When a process fails to start, the
error message carries the tail of its log.

Must not import Django at module level: `settings_env_names()` is also used by tests that
only read files.
"""

from __future__ import annotations

import ast
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent  # the venv's bin/: celery and gunicorn live beside python
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 80
# Always passed through to children; everything else is set explicitly (see portal_env).
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
# The read-only Terraform provider mirror of this machine, when it has one (TF_PROVIDER_MIRROR;
# the default is where this machine kind ships hashicorp/aws). Children get it as
# TERRAFORM_PROVIDER_MIRROR, so AWS patterns run through the portal; elsewhere those tests skip.
PROVIDER_MIRROR = Path(os.environ.get("TF_PROVIDER_MIRROR", "/opt/tf-plugins"))
HAS_AWS_PROVIDER = (PROVIDER_MIRROR / "registry.terraform.io" / "hashicorp" / "aws").is_dir()
NO_AWS_PROVIDER = f"no AWS provider in a local mirror at {PROVIDER_MIRROR} (set TF_PROVIDER_MIRROR); the provider cannot be downloaded here"

_PR_SET_PDEATHSIG = 1


class ProcessStartError(RuntimeError):
    """A child process died or never became ready; the message includes its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env_names(settings_file: Path = BASE_DIR / "portal" / "settings.py") -> list[str]:
    """Every environment variable `portal/settings.py` reads, found by parsing it.

    Counts `env_*("NAME", ...)` helper calls plus `os.environ[...]`, `os.environ.get(...)`
    and `os.getenv(...)`, so a new setting cannot slip past `.env.example` or the children's
    environment.
    """
    tree = ast.parse(settings_file.read_text(), filename=str(settings_file))
    names: list[str] = []

    def first_str(args: list[ast.expr]) -> str | None:
        if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
            return args[0].value
        return None

    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id.startswith("env_"):
                name = first_str(node.args)
            elif isinstance(func, ast.Attribute) and func.attr in {"get", "getenv"}:
                target = ast.unparse(func.value)
                if target in {"os.environ", "os"}:
                    name = first_str(node.args)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                name = node.slice.value
        if name and name not in names:
            names.append(name)
    return names


def database_url(settings_dict: Mapping) -> str:
    """A DATABASE_URL (as `dj_database_url` parses it) for the database in `settings_dict`.

    Used after the test database exists, so NAME is the test database's name (PostgreSQL)
    or file path (SQLite, which must then be a file, not `:memory:`).
    """
    engine = settings_dict["ENGINE"]
    name = str(settings_dict["NAME"])
    if engine.endswith("sqlite3"):
        if name == ":memory:" or name.startswith("file:memorydb") or "mode=memory" in name:
            raise ValueError("child processes cannot share an in-memory SQLite database")
        return f"sqlite:///{Path(name).resolve()}"
    if engine.endswith("postgresql"):
        user = quote(str(settings_dict.get("USER") or ""), safe="")
        password = quote(str(settings_dict.get("PASSWORD") or ""), safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "localhost"
        if "/" in host:  # a Unix socket directory: dj_database_url wants it percent-encoded
            host = quote(host, safe="")
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        return f"postgres://{credentials}{host}{port}/{quote(name, safe='')}"
    raise ValueError(f"no DATABASE_URL form known for {engine}")


def purge_broker(broker_url: str, transport_options: Mapping) -> str:
    """Drop every message (and stored result) of the test broker; returns what was done.

    Redis: FLUSHDB on the broker's database number. Filesystem transport: delete the files
    in its queue/processed folders. Anything else is refused rather than left dirty.
    """
    if broker_url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(broker_url, socket_connect_timeout=5)
        try:
            client.flushdb()
        finally:
            client.close()
        return f"flushed {broker_url}"
    if broker_url.startswith(("atomicfs://", "filesystem://")):
        # control_folder holds the fanout bindings (worker pidboxes): stale ones from dead
        # workers make every broadcast write files nobody reads. Only cleared when configured
        # explicitly - kombu's default is `control` in the current directory, shared by all.
        folders = {
            transport_options.get("data_folder_in"),
            transport_options.get("data_folder_out"),
            transport_options.get("processed_folder"),
            transport_options.get("control_folder"),
        }
        removed = 0
        for folder in filter(None, folders):
            path = Path(folder)
            if path.is_dir():
                for entry in path.iterdir():
                    if entry.is_file():
                        entry.unlink(missing_ok=True)
                        removed += 1
        return f"removed {removed} queued message file(s)"
    raise ValueError(f"do not know how to purge broker {broker_url!r}")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True if GET url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


try:  # loaded now, not in the forked child: dlopen there could deadlock on a loader lock
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when pytest itself dies (Linux PDEATHSIG).

    Covers a pytest that is SIGKILLed and never runs its teardown. Together with
    start_new_session (so Ctrl-C on pytest does not hit the children directly; fixtures stop
    them in order).
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """One long-running child (plus its own children) in a separate process group.

    `env` is used as given (the caller builds it explicitly). `ready` is called with this
    object until it returns True; `restart()` reuses the same command and `env` dict, so a
    test may change the dict before restarting. The log file is truncated on the first
    start of a session and appended to on restarts, with a header line per start.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        log_dir: Path,
        ready: Callable[[ManagedProcess], bool],
        ready_timeout: float = 60.0,
        cwd: Path = BASE_DIR,
    ):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = env
        self.cwd = cwd
        self.ready = ready
        self.ready_timeout = ready_timeout
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.pid_path = log_dir / f"{name}.pid"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._log_offset = 0

    # -- state -------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """Pid of the main process (also its process group id)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_since_start(self) -> str:
        """Everything the current (latest) start has written so far."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log_since_start().splitlines()
        return "\n".join(text[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """Wait until the log of the current start matches `pattern` (a regex, multiline)."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_since_start())
            if match:
                return match
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no log line matched {pattern!r} within {timeout}s\n"
                                   f"--- last lines of {self.log_path}:\n{self.tail()}")
            time.sleep(0.1)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> ManagedProcess:
        """Start, then block until `ready` passes; on failure stop it and raise with the log tail."""
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._kill_stale_group()
        self.starts += 1
        mode = "ab" if self.starts > 1 else "wb"
        with self.log_path.open(mode) as log:
            self._log_offset = log.tell()
            header = f"=== {self.name} start #{self.starts} at {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n"
            log.write(header.encode())
            log.flush()
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.pid_path.write_text(str(self.proc.pid))
        started = time.monotonic()
        while True:
            if not self.alive():
                code = self.proc.returncode
                self.stop()
                raise ProcessStartError(self._failure(f"exited with code {code} before it was ready"))
            if self.ready(self):
                return self
            if time.monotonic() - started > self.ready_timeout:
                self.stop()
                raise ProcessStartError(self._failure(f"was not ready after {self.ready_timeout:.0f}s"))
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL, *, group: bool = True, wait: float = 10.0) -> int | None:
        """Send `sig` to the whole process group (default) or the main process only.

        SIGKILL to the group is "the machine died": the main process and its pool children
        vanish without cleanup. Waits up to `wait` seconds for the main process to exit and
        returns its exit code (None if it is still running, e.g. after SIGUSR1).
        """
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        try:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to the main process, wait up to `grace`, then SIGKILL to the whole group.

        The main process (gunicorn master, Celery main) stops its own workers in order; a
        SIGTERM sent to Celery's pool processes directly would kill them mid-task.
        """
        if self.proc is None:
            return
        if self.alive():
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        # A pool process or gunicorn worker may outlive its parent for a moment.
        self._signal_group(signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)

    def restart(self) -> ManagedProcess:
        """Stop (if still running) and start a fresh process with the same command and env."""
        self.stop()
        return self.start()

    # -- helpers -----------------------------------------------------------------------
    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_stale_group(self) -> None:
        """A previous pytest that was SIGKILLed may have left this process running; end it."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            cmdline = ""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            environ = []
        ours = f"PORTAL_VAR_DIR={self.env.get('PORTAL_VAR_DIR', '')}".encode()
        if Path(self.argv[0]).name in cmdline and ours in environ:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.pid_path.unlink(missing_ok=True)

    def _failure(self, what: str) -> str:
        return (f"{self.name} {what}.\ncommand: {' '.join(self.argv)}\n"
                f"--- last {LOG_TAIL_LINES} lines of {self.log_path}:\n{self.tail()}")


class ServerURL(str):
    """The base URL of a started web server (a plain str), with `.process` for its log etc."""

    process: ManagedProcess

    def __new__(cls, url: str, process: ManagedProcess):
        obj = super().__new__(cls, url.rstrip("/"))
        obj.process = process
        return obj


def gunicorn_process(env: dict[str, str], log_dir: Path, *, port: int, ready_timeout: float = 60.0,
                     name: str = "web") -> ManagedProcess:
    """The portal under gunicorn (gthread), ready when /healthz answers 200."""
    url = f"http://127.0.0.1:{port}"
    argv = [
        BIN_DIR / "gunicorn", "portal.wsgi",
        "--bind", f"127.0.0.1:{port}",
        "--config", str(BASE_DIR / "gunicorn.conf.py"),
        "--graceful-timeout", "3", "--timeout", "120",
        "--access-logfile", "-",
        "--no-control-socket",  # gunicorn >= 27 would share ~/.gunicorn/gunicorn.ctl otherwise
    ]
    return ManagedProcess(name, argv, env=env, log_dir=log_dir, ready_timeout=ready_timeout,
                          ready=lambda p: http_ok(f"{url}/healthz"))


WORKER_READY = re.compile(r"\bready\.\s*$", re.MULTILINE)


class CeleryWorker(ManagedProcess):
    """A prefork Celery worker, ready when it logs '<node name> ready.'.

    `hostname` is the node name tasks report (`self.request.hostname`), e.g. 'test@box'.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, *, node_name: str = "test@%h",
                 concurrency: int = 2, ready_timeout: float = 60.0, name: str = "celery-worker",
                 queues: str | None = None):
        argv = [
            BIN_DIR / "celery", "-A", "portal", "worker",
            "--concurrency", str(concurrency), "-l", "info", "-n", node_name,
            *(["-Q", queues] if queues else []),
        ]
        super().__init__(name, argv, env=env, log_dir=log_dir, ready_timeout=ready_timeout,
                         ready=lambda p: bool(WORKER_READY.search(p.log_since_start())))
        self.hostname = node_name.replace("%h", socket.gethostname())


def beat_process(env: dict[str, str], log_dir: Path, *, schedule_file: Path, ready: Callable[[ManagedProcess], bool],
                 ready_timeout: float = 60.0, name: str = "celery-beat") -> ManagedProcess:
    """Celery beat (its in-process reaper included); `ready` tells when it has started."""
    argv = [BIN_DIR / "celery", "-A", "portal", "beat", "-l", "info", "-s", str(schedule_file)]
    return ManagedProcess(name, argv, env=env, log_dir=log_dir, ready_timeout=ready_timeout, ready=ready)
