"""A private PostgreSQL cluster for the fault-injection suite, and the helpers that stop and
start it while a test runs.

    python -m tests.faults.cluster -- .venv/bin/pytest tests/faults

creates a cluster with `initdb` in a fresh folder under `var/faults/` (trust authentication,
a free port, listening on 127.0.0.1 only, its Unix socket in that folder, fsync off), starts it
with `pg_ctl`, runs the command with

    DATABASE_URL=postgres://postgres@127.0.0.1:<port>/postgres
    FAULTS_PGDATA=<data folder>   FAULTS_PG_BIN=<bin folder>   FAULTS_PG_USER=<OS user or "">
    FAULTS_PG_PORT=<port>

in its environment, then always stops the cluster, removes the folder and exits with the
command's exit code. Nothing else on the machine (the PostgreSQL on 5432, say) is touched, so a
test may stop "the database" for a minute (`stop_cluster()` / `start_cluster()`).

PostgreSQL refuses to run as root: as root (CI) `initdb` and `pg_ctl` run as the `postgres`
OS user through `runuser -u postgres --`, and the folder is chowned to it.

Must not import Django: it runs before the settings exist.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
FAULTS_DIR = BASE_DIR / "var" / "faults"
PG_OS_USER = "postgres"
START_TIMEOUT = 60


class ClusterError(RuntimeError):
    """initdb / pg_ctl failed; the message has their output (and the server log's tail)."""


# --- finding and running the binaries ----------------------------------------------------


def find_pg_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl (or PATH's)."""
    candidates = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            version = tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)
            candidates.append((version, path))
    if candidates:
        return max(candidates)[1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ClusterError("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on PATH")


def _os_user() -> str:
    """The OS user the server runs as: `postgres` when we are root, else nobody special."""
    return PG_OS_USER if os.geteuid() == 0 else ""


def _run(argv: list[str], *, user: str, timeout: float = 120) -> str:
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the cluster ------------------------------------------------------------------------


class Cluster:
    """One private cluster: `root` holds `data/`, the socket and `postgres.log`."""

    def __init__(self, root: Path, *, pg_bin: Path, user: str, port: int):
        self.root = Path(root)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.pg_bin = Path(pg_bin)
        self.user = user
        self.port = port

    @classmethod
    def from_env(cls, environ=os.environ) -> Cluster:
        """The cluster the launcher started for this process (from FAULTS_* variables)."""
        try:
            data = Path(environ["FAULTS_PGDATA"])
            pg_bin = Path(environ["FAULTS_PG_BIN"])
        except KeyError as exc:
            raise ClusterError(f"{exc.args[0]} is not set: run under `python -m tests.faults.cluster -- ...`") from None
        return cls(data.parent, pg_bin=pg_bin, user=environ.get("FAULTS_PG_USER", ""),
                   port=int(environ.get("FAULTS_PG_PORT", "0")))

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.url,
            "FAULTS_PGDATA": str(self.data),
            "FAULTS_PG_BIN": str(self.pg_bin),
            "FAULTS_PG_USER": self.user,
            "FAULTS_PG_PORT": str(self.port),
        }

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> str:
        return _run([str(self.pg_bin / tool), *args], user=self.user, timeout=timeout)

    def init(self) -> None:
        self.data.mkdir(parents=True)
        if self.user:
            pw = pwd.getpwnam(self.user)
            for path in (self.root, self.data):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o755)
        os.chmod(self.data, 0o700)
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                 "--no-sync", "--no-instructions")
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "200",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] '",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/faults/cluster.py\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        try:
            self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(START_TIMEOUT), "start",
                     timeout=START_TIMEOUT + 30)
        except ClusterError as exc:
            raise ClusterError(f"{exc}\n--- {self.log}:\n{self.log_tail()}") from None

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", timeout=90)

    def running(self) -> bool:
        proc = subprocess.run(
            (["runuser", "-u", self.user, "--"] if self.user else []) + [str(self.pg_bin / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        return proc.returncode == 0

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def create_cluster(parent: Path = FAULTS_DIR) -> Cluster:
    """initdb + start a new cluster in a fresh folder under `parent`."""
    parent.mkdir(parents=True, exist_ok=True)
    if _os_user():
        # The server's user must reach the folder: var/ and var/faults/ are traversable.
        for path in (parent.parent, parent):
            os.chmod(path, os.stat(path).st_mode | 0o755)
    remove_stale_clusters(parent)
    root = Path(tempfile.mkdtemp(prefix="pg-", dir=parent))
    root.rmdir()  # Cluster.init creates it (and data/) with the right owner
    cluster = Cluster(root, pg_bin=find_pg_bin(), user=_os_user(), port=_free_port())
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.remove()
        raise
    return cluster


def remove_stale_clusters(parent: Path = FAULTS_DIR) -> None:
    """Folders of earlier launches that were killed before they cleaned up (no live server)."""
    for root in parent.glob("pg-*"):
        pid_file = root / "data" / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if pid:
            try:
                os.kill(pid, 0)
                continue  # still running: another session's, leave it alone
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(root, ignore_errors=True)


# --- helpers for fixtures (inside the child command) ------------------------------------


def stop_cluster(mode: str = "fast") -> float:
    """Stop the session's private cluster (`pg_ctl stop -m fast`); returns seconds taken."""
    started = time.monotonic()
    Cluster.from_env().stop(mode)
    return time.monotonic() - started


def start_cluster() -> float:
    """Start it again (`pg_ctl start -w`); returns seconds taken."""
    started = time.monotonic()
    Cluster.from_env().start()
    return time.monotonic() - started


def cluster_available() -> bool:
    """True when this process runs under the launcher (FAULTS_PGDATA set)."""
    return bool(os.environ.get("FAULTS_PGDATA"))


# --- the launcher ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command [args...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")

    cluster = create_cluster()
    print(f"faults cluster: PostgreSQL ({cluster.pg_bin}) at {cluster.url}, data in {cluster.data}", file=sys.stderr, flush=True)
    child = None
    forwarded = []

    def forward(signum, _frame):
        forwarded.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        child = subprocess.Popen(command, env={**os.environ, **cluster.env()})
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # the child got the same SIGINT from the terminal
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            if cluster.running():
                cluster.stop("fast")
        except ClusterError as exc:
            print(f"faults cluster: stopping failed ({exc}); killing it", file=sys.stderr)
            try:
                cluster.stop("immediate")
            except ClusterError:
                pass
        cluster.remove()
    if code < 0:  # killed by a signal: the shell's convention
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main())
