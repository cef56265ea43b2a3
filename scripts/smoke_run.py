#!/usr/bin/env python3
"""Smoke test of `make run` on the embedded default (SQLite + the atomicfs:// broker).

In a temporary PORTAL_VAR_DIR and on a free port: time `make install`, start `make run` in
its own process group, wait until GET /login/ and GET /admin/login/ answer 200 and the
worker logs "ready.", SIGKILL the worker's process group and wait until the devstack has
restarted it (loudly) with the web server still up, then send SIGINT to the group (what Ctrl-C in a terminal does) and
check that every process of this run (found by its PORTAL_VAR_DIR) is gone within
STOP_LIMIT seconds. Prints JSON timings on stdout's last line; exits non-zero on any failure
(the temporary folder with `make-run.log` is then kept for inspection).

Standard library only: it runs before the virtualenv exists. Used by `.ci/run`; runnable by
hand from the repository root: `scripts/smoke_run.py`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from provisioning import procfs  # noqa: E402 (the repository's own /proc scan)

START_LIMIT = 240.0  # migrate + seed + three processes on a slow 2-core CI box
STOP_LIMIT = 15.0
# Variables that would steer `make run` away from the embedded default.
NOT_INHERITED = (
    "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REQUIRE_REAL_SERVICES",
    "PORTAL_URL", "PORTAL_VAR_DIR", "PORT", "DEBUG", "SECRET_KEY", "RUN_WORKDIR_ROOT",
    "TERRAFORM_PLUGIN_CACHE_DIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
)
WORKER_READY = re.compile(r"^worker\s*\|.*\bready\.\s*$", re.MULTILINE)
BEAT_STARTED = re.compile(r"^beat\s*\|.*beat: Starting", re.MULTILINE)


class SmokeFailure(Exception):
    pass


def log(message: str) -> None:
    print(f"[smoke] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status_of(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def processes_of_run(var_dir: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment has this run's PORTAL_VAR_DIR."""
    marker = f"PORTAL_VAR_DIR={var_dir}".encode()
    return [(p.pid, p.cmdline()) for p in procfs.live_processes() if marker in p.environ()]


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


def main() -> int:
    var_dir = tempfile.mkdtemp(prefix="portal-smoke-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    output = Path(var_dir) / "make-run.log"
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(PORTAL_VAR_DIR=var_dir, PORT=str(port), NO_COLOR="1")
    timings: dict[str, float | bool] = {}
    proc: subprocess.Popen | None = None
    ok = False
    try:
        log(f"var dir {var_dir}, web {base}")

        up_to_date = subprocess.run(["make", "-q", "install"], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        log("make install" + (" (already satisfied)" if up_to_date else ""))
        started = time.monotonic()
        install = subprocess.run(["make", "install"], cwd=ROOT, env=env)
        timings["install_s"] = round(time.monotonic() - started, 2)
        timings["install_was_satisfied"] = up_to_date
        if install.returncode != 0:
            raise SmokeFailure(f"make install exited with {install.returncode}")

        log(f"make run (output: {output})")
        with output.open("wb") as sink:
            started = time.monotonic()
            proc = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        pending = {"start_to_login_s": f"{base}/login/", "start_to_admin_s": f"{base}/admin/login/"}
        while True:
            elapsed = time.monotonic() - started
            if proc.poll() is not None:
                raise SmokeFailure(f"make run exited with {proc.returncode} before it was ready")
            for key, url in list(pending.items()):
                if status_of(url) == 200:
                    timings[key] = round(elapsed, 2)
                    log(f"GET {url} = 200 after {elapsed:.1f}s")
                    del pending[key]
            text = output.read_text(errors="replace")
            if "start_to_worker_ready_s" not in timings and WORKER_READY.search(text):
                timings["start_to_worker_ready_s"] = round(elapsed, 2)
                log(f"worker ready after {elapsed:.1f}s")
            if not pending and "start_to_worker_ready_s" in timings and BEAT_STARTED.search(text):
                break
            if elapsed > START_LIMIT:
                missing = list(pending) + [k for k in ("start_to_worker_ready_s",) if k not in timings]
                if not BEAT_STARTED.search(text):
                    missing.append("beat started")
                raise SmokeFailure(f"not ready after {START_LIMIT:.0f}s: {', '.join(missing)}")
            time.sleep(0.25)

        # A crashed worker is restarted, loudly, and the rest of the stack stays up (issue 12).
        # Two Celery workers run: the one for runs and the drift checks' own (`-Q drift`).
        workers = [(pid, cmd) for pid, cmd in processes_of_run(var_dir)
                   if " worker" in cmd and "celery" in cmd and os.getpgid(pid) == pid]
        leaders = [pid for pid, cmd in workers if "-Q drift" not in cmd]
        drift = [pid for pid, cmd in workers if "-Q drift" in cmd]
        if len(leaders) != 1 or len(drift) != 1:
            raise SmokeFailure(f"expected one run worker and one drift worker main process, "
                               f"found {len(leaders)} and {len(drift)}: {workers}")
        log(f"SIGKILL to the worker's group ({leaders[0]}): the devstack must restart it")
        killed = time.monotonic()
        os.killpg(leaders[0], signal.SIGKILL)
        while True:
            text = output.read_text(errors="replace")
            if "worker DIED" in text and len(WORKER_READY.findall(text)) >= 2:
                break
            if proc.poll() is not None:
                raise SmokeFailure(f"make run exited with {proc.returncode} after the worker was killed")
            if time.monotonic() - killed > START_LIMIT:
                raise SmokeFailure("the killed worker was not restarted")
            time.sleep(0.25)
        timings["worker_restart_s"] = round(time.monotonic() - killed, 2)
        if status_of(f"{base}/login/") != 200:
            raise SmokeFailure("the web server did not stay up while the worker was restarted")
        log(f"worker restarted and ready after {timings['worker_restart_s']:.1f}s; web still up")

        before = processes_of_run(var_dir)
        log(f"{len(before)} processes of this run; sending SIGINT to the group (Ctrl-C)")
        stop_started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        while True:
            left = processes_of_run(var_dir)
            if proc.poll() is not None and not left:
                break
            if time.monotonic() - stop_started > STOP_LIMIT:
                listing = "\n".join(f"  {pid} {cmd}" for pid, cmd in left)
                raise SmokeFailure(f"still running {STOP_LIMIT:.0f}s after SIGINT:\n{listing}")
            time.sleep(0.1)
        timings["stop_s"] = round(time.monotonic() - stop_started, 2)
        text = output.read_text(errors="replace")
        if "had to be killed" in text:
            raise SmokeFailure("devstack had to SIGKILL a process: the stop was not clean")
        ok = True
    except SmokeFailure as exc:
        log(f"FAILED: {exc}")
        log(f"--- last lines of {output}:\n{tail(output)}")
    finally:
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid, _ in processes_of_run(var_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if ok:
            shutil.rmtree(var_dir, ignore_errors=True)
        else:
            log(f"kept {var_dir} for inspection")
    print(json.dumps(timings))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
