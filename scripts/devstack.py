#!/usr/bin/env python3
"""Run the whole portal in the foreground: web (gunicorn), Celery worker and Celery beat.

`make run` calls this after migrate + seed_demo. Every output line is prefixed with the
process name. One Ctrl-C (SIGINT) or SIGTERM stops all three: each child runs in its own
process group; its main process gets SIGTERM, and the group is SIGKILLed if it is still
there after STOP_GRACE seconds (a second Ctrl-C kills at once). A child that dies on its own
is restarted, with a loud `!!!` line and a growing pause (1 s, 2 s, ... 30 s): a crashed
worker no longer takes the whole stack down (issue 12). A child that dies more than
MAX_RESTARTS times in CRASH_WINDOW_SECONDS is crash-looping: the others are stopped and this
script exits non-zero, so a broken stack never looks healthy.

Configuration comes from the environment like the portal's own (see `.env.example`); PORT
(default 8000) is the web port on 127.0.0.1 and PORTAL_URL defaults to that address because
workers reach the Terraform state endpoint there. With DEVSTACK_MOTO_PORT (`make run-aws`),
a moto server is started first on that port, and each time it (re)starts - it keeps nothing
across restarts - `manage.py seed_aws_demo` prepares an `aws` account aimed at it. Imports only the standard library until
the banner (which asks Django for the login names).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # run with .venv/bin/python: gunicorn and celery live beside it
HOST = "127.0.0.1"
STOP_GRACE = 10.0
READY_TIMEOUT = 90.0
# A child that dies is restarted (worker, beat and web alike), loudly; one that dies more than
# MAX_RESTARTS times within CRASH_WINDOW_SECONDS is crash-looping, and the stack stops.
MAX_RESTARTS = 5
CRASH_WINDOW_SECONDS = 60.0

# What a child prints once it is serving (the banner waits for these, so it comes last).
READY_MARKERS = {"worker": " ready.", "drift": " ready.", "beat": "beat: Starting..."}
COLORS = {"moto": "\033[32m", "web": "\033[36m", "worker": "\033[33m", "drift": "\033[34m", "beat": "\033[35m", "devstack": "\033[1m"}

_PR_SET_PDEATHSIG = 1
try:  # loaded before any fork: dlopen inside a forked child could deadlock
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None

_print_lock = threading.Lock()
_use_color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def say(name: str, line: str) -> None:
    """Print one line with a fixed-width process prefix; lines of different children never interleave."""
    prefix = f"{name:<8}|"
    if _use_color:
        prefix = f"{COLORS.get(name, '')}{prefix}\033[0m"
    with _print_lock:
        sys.stdout.write(f"{prefix} {line}\n")
        sys.stdout.flush()


def commands(port: int) -> dict[str, list[str]]:
    """The three long-running processes. Extra gunicorn flags: GUNICORN_CMD_ARGS."""
    return {
        "web": [
            str(BIN / "gunicorn"), "portal.wsgi",
            "--bind", f"{HOST}:{port}",
            "--config", str(ROOT / "gunicorn.conf.py"),
            "--graceful-timeout", "5",
            "--access-logfile", "-",
            # gunicorn >= 27 opens a control socket in ~/.gunicorn by default: two stacks
            # (or a test run beside `make run`) would fight over it.
            "--no-control-socket",
        ],
        "worker": [
            str(BIN / "celery"), "-A", "portal", "worker",
            # Runs mostly wait on Terraform and the cloud, so more processes than cores pay off;
            # each account's own limit (max_concurrent_runs) still applies.
            "-l", "info", "--concurrency", os.environ.get("WORKER_CONCURRENCY", "4"), "-n", "portal@%h",
        ],
        # Drift checks have a worker of their own, so they never take a run's process.
        "drift": [
            str(BIN / "celery"), "-A", "portal", "worker", "-Q", "drift", "-l", "info",
            "--concurrency", os.environ.get("DRIFT_WORKER_CONCURRENCY", "1"), "-n", "drift@%h",
        ],
        # The schedule file lives under PORTAL_VAR_DIR (CELERY_BEAT_SCHEDULE_FILENAME).
        "beat": [str(BIN / "celery"), "-A", "portal", "beat", "-l", "info"],
    }


# What the AWS patterns need of moto, which it reads only from its environment (managed IAM
# policies; ACM certificates issued at once); tests/moto_server.PATTERNS_ENV says the same.
MOTO_ENV = {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "MOTO_ACM_VALIDATION_WAIT": "0"}


def moto_command(port: int) -> list[str]:
    return [str(BIN / "moto_server"), "-H", HOST, "-p", str(port)]


def prepare_moto(port: int, env: dict[str, str], stopping: threading.Event) -> bool:
    """Wait until moto answers, then seed the simulated account into it; False if it did not."""
    endpoint = f"http://{HOST}:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while not stopping.is_set():
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/reset", timeout=1).close()  # noqa: S310
            break
        except urllib.error.HTTPError:
            break  # it answers (a GET of the reset URL is a 400)
        except OSError:
            if time.monotonic() > deadline:
                say("devstack", f"!!! moto did not answer on {endpoint} within {READY_TIMEOUT:.0f}s")
                return False
            time.sleep(0.2)
    seed = subprocess.run([str(BIN / "python"), "manage.py", "seed_aws_demo", "--endpoint", endpoint],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    for line in (seed.stdout + seed.stderr).splitlines():
        say("moto", line)
    return seed.returncode == 0


def _die_with_devstack() -> None:
    """In the child before exec: SIGTERM it if this script is SIGKILLed (Linux PDEATHSIG)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One process group whose merged stdout/stderr is relayed line by line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name = name
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own group: the terminal's Ctrl-C reaches us, not them
            preexec_fn=_die_with_devstack,
        )
        self.ready = threading.Event()
        self.relay = threading.Thread(target=self._relay, name=f"relay-{name}", daemon=True)
        self.relay.start()

    def _relay(self) -> None:
        assert self.proc.stdout is not None
        marker = READY_MARKERS.get(self.name)
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            say(self.name, line)
            if marker and marker in line:
                self.ready.set()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_leader(self, sig: int) -> None:
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def wait_for_web(url: str, children: list[Child], stopping: threading.Event) -> None:
    """Print the banner once /healthz answers and the worker and beat said they are ready;
    warn if that does not happen within READY_TIMEOUT."""
    deadline = time.monotonic() + READY_TIMEOUT
    web_up = False
    while time.monotonic() < deadline and not stopping.is_set():
        if not web_up:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                    web_up = response.status == 200
            except (urllib.error.URLError, OSError):
                pass
        waiting = [c.name for c in list(children) if c.name in READY_MARKERS and not c.ready.is_set()]
        if web_up and not waiting:
            banner(url)
            return
        time.sleep(0.25)
    if not stopping.is_set():
        missing = [] if web_up else [f"web ({url}/healthz)"]
        missing += [c.name for c in list(children) if c.name in READY_MARKERS and not c.ready.is_set()]
        say("devstack", f"not ready within {READY_TIMEOUT:.0f}s: {', '.join(missing)}")
        banner(url)


def logins() -> list[str]:
    """One line per active user (admins first): name, role and - where seed_demo generated it
    and it still works - the password."""
    try:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.db import connections

        from portal.management.commands.seed_demo import kept_logins

        kept = kept_logins()
        lines = []
        for user in get_user_model().objects.filter(is_active=True).order_by("-is_superuser", "username")[:10]:
            role = "admin" if user.is_superuser else "developer"
            password = kept.get(user.username)
            if password and user.check_password(password):
                lines.append(f"{user.username} / {password}   ({role})")
            else:
                lines.append(f"{user.username}   ({role}; password: yours, or DEMO_*_PASSWORD when it was seeded)")
        connections.close_all()
        return lines
    except Exception as exc:  # the banner must never take the stack down
        return [f"(could not list users: {exc})"]


def banner(url: str) -> None:
    """Printed last, once the web answers and the worker is ready, so it is what the
    terminal shows."""
    users = logins() or ["none yet (run: .venv/bin/python manage.py seed_demo)"]
    lines = [
        "",
        "=" * 72,
        f"Portal:   {url}/          (sign in at {url}/login/)",
        f"Admin:    {url}/admin/",
        f"Sign in:  {users[0]}",
        *(f"          {line}" for line in users[1:]),
        "Stop:     Ctrl-C",
        "=" * 72,
        "",
    ]
    for line in lines:
        say("devstack", line)


def main() -> int:
    port = int(os.environ.get("PORT") or 8000)
    url = f"http://{HOST}:{port}"
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if not env.get("PORTAL_URL"):
        env["PORTAL_URL"] = url
    elif env["PORTAL_URL"].rstrip("/") != url:
        say("devstack", f"note: PORTAL_URL={env['PORTAL_URL']} differs from the web address {url}; "
                        "workers use PORTAL_URL to reach the Terraform state endpoint")

    stopping = threading.Event()
    signals_seen: list[int] = []

    def on_signal(signum, frame):
        signals_seen.append(signum)
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    children: list[Child] = []
    exit_code = 0
    moto_port = int(os.environ.get("DEVSTACK_MOTO_PORT") or 0)
    try:
        argvs = commands(port)
        if moto_port:
            argvs = {"moto": moto_command(moto_port), **argvs}
            say("devstack", f"starting moto: {' '.join(argvs['moto'])}")
            children.append(Child("moto", argvs["moto"], {**env, **MOTO_ENV}))
            if not prepare_moto(moto_port, env, stopping):
                say("devstack", "!!! the simulated AWS account could not be prepared (see above); stopping")
                return 1
        for name, argv in argvs.items():
            if name == "moto":
                continue
            say("devstack", f"starting {name}: {' '.join(argv)}")
            children.append(Child(name, argv, env))
        threading.Thread(target=wait_for_web, args=(url, children, stopping), daemon=True).start()

        crashes: dict[str, list[float]] = {name: [] for name in argvs}
        while not stopping.is_set():
            for index, child in enumerate(children):
                if child.alive() or stopping.is_set():
                    continue
                now = time.monotonic()
                recent = [t for t in crashes[child.name] if now - t < CRASH_WINDOW_SECONDS] + [now]
                crashes[child.name] = recent
                if len(recent) > MAX_RESTARTS:
                    say("devstack", f"!!! {child.name} died {len(recent)} times in {CRASH_WINDOW_SECONDS:.0f}s "
                                    f"(last exit code {child.proc.returncode}); stopping the others")
                    exit_code = 1
                    stopping.set()
                    break
                delay = min(2 ** (len(recent) - 1), 30)
                say("devstack", f"!!! {child.name} DIED (exit code {child.proc.returncode}); restarting it in {delay}s "
                                f"(restart {len(recent)} of at most {MAX_RESTARTS} in {CRASH_WINDOW_SECONDS:.0f}s). "
                                "Runs it held are reaped and nothing is re-applied; see its log above.")
                if stopping.wait(delay):
                    break
                children[index] = Child(child.name, argvs[child.name], {**env, **MOTO_ENV} if child.name == "moto" else env)
                if child.name == "moto" and not prepare_moto(moto_port, env, stopping):
                    say("devstack", "!!! moto came back but the simulated account could not be prepared again")
            stopping.wait(0.2)
        if signals_seen:
            say("devstack", f"got {signal.Signals(signals_seen[0]).name}; stopping web, worker and beat")
    finally:
        stopping.set()
        exit_code = stop_all(children, signals_seen) or exit_code
    return exit_code


def stop_all(children: list[Child], signals_seen: list[int]) -> int:
    """SIGTERM each child, wait up to STOP_GRACE (a further signal cuts it short), then SIGKILL
    its whole process group.

    SIGTERM goes to the group leader only (gunicorn master, Celery main process): each stops
    its own workers in order - a Celery warm shutdown lets the prefork pool finish its task,
    while a SIGTERM sent to the pool processes directly would kill them mid-task. SIGKILL
    goes to the group so nothing survives its parent.
    """
    for child in children:
        if child.alive():
            child.signal_leader(signal.SIGTERM)
    seen_before = len(signals_seen)
    started = time.monotonic()
    running = [c for c in children if c.alive()]
    while running and time.monotonic() < started + STOP_GRACE:
        if len(signals_seen) > seen_before:  # another Ctrl-C: do not wait
            break
        time.sleep(0.1)
        for child in [c for c in running if not c.alive()]:
            say("devstack", f"{child.name} stopped after {time.monotonic() - started:.1f}s (exit code {child.proc.returncode})")
            running.remove(child)
    killed = False
    for child in children:
        if child.alive():
            say("devstack", f"{child.name} still running; sending SIGKILL")
            child.signal_group(signal.SIGKILL)
            killed = True
        try:
            child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            say("devstack", f"{child.name} (pid {child.proc.pid}) did not exit after SIGKILL")
            killed = True
        # Leftovers of the group (e.g. a pool process whose parent is gone) go too.
        child.signal_group(signal.SIGKILL)
        child.relay.join(timeout=2)
    say("devstack", "stopped" + (" (some processes had to be killed)" if killed else ""))
    return 1 if killed else 0


if __name__ == "__main__":
    sys.exit(main())
