"""Tests for provisioning.terraform: argv building, the explicit environment, plan summaries,
and the process rules (streaming, cancel, grace period, timeout, no orphans, init lock)
against the real embedded Terraform with `terraform_data` resources only."""

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

import provisioning
from provisioning import procfs
from provisioning.locks import exclusive_lock
from provisioning.redact import REDACTED, Redactor
from provisioning.terraform import (
    TFEXEC_CONTROL_ARG,
    TerraformError,
    TerraformEvent,
    TerraformRunner,
    TerraformSettings,
    plan_summary,
)

TFEXEC = str(Path(provisioning.__file__).parent / "tfexec.py")
EMBEDDED = [sys.executable, "-I", TFEXEC, TFEXEC_CONTROL_ARG]

# A provisioner prints its process group so a test can prove the whole group is gone. (The
# format hides "PGID=" from Terraform's "Executing: ..." line, which echoes the command.)
PRINT_PGID = "printf 'PG%s=%s\\n' ID $(cut -d' ' -f5 /proc/$$/stat)"


# ------------------------------------------------------------------------------- helpers


def write_workspace(path: Path, main_tf: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "main.tf").write_text(main_tf)
    return path


class Recorder:
    """Collects events with the time they arrived; can cancel when a line matches."""

    def __init__(self, cancel: threading.Event | None = None, cancel_on: str | None = None):
        self.events: list[tuple[float, TerraformEvent]] = []
        self.cancel = cancel
        self.cancel_on = cancel_on
        self.cancelled_at: float | None = None

    def __call__(self, event: TerraformEvent) -> None:
        now = time.monotonic()
        self.events.append((now, event))
        if self.cancel_on and self.cancel_on in event.line and self.cancelled_at is None:
            self.cancelled_at = now
            self.cancel.set()

    def first(self, type_: str, contains: str = "") -> float:
        return next(t for t, e in self.events if e.type == type_ and contains in e.message)

    def lines(self) -> str:
        return "\n".join(e.line for _, e in self.events)

    def pgid(self) -> int:
        for _, event in self.events:
            if "PGID=" in event.message:
                return int(event.message.rsplit("PGID=", 1)[1].split()[0])
        raise AssertionError("no PGID printed")


def make_runner(workdir: Path, env=None, settings=None, **kwargs) -> TerraformRunner:
    kwargs.setdefault("redactor", Redactor())
    return TerraformRunner(settings or TerraformSettings(), workdir, env or {}, **kwargs)


live_group_members = procfs.group_members


def processes_running(marker: str) -> list[int]:
    """Pids of live processes whose command line contains `marker`."""
    return [p.pid for p in procfs.live_processes() if marker in p.cmdline()]


def assert_nothing_left(result, pgid: int, marker: str) -> None:
    assert result.pid == pgid  # the provisioner ran in the step's own group
    assert live_group_members(pgid) == []
    assert processes_running(marker) == []


def state_resources(workdir: Path) -> dict[str, str]:
    """{address: instance status} from the local state file ("" = healthy, "tainted")."""
    state = json.loads((workdir / "terraform.tfstate").read_text())
    return {
        f"{r['type']}.{r['name']}": instance.get("status", "")
        for r in state["resources"]
        for instance in r["instances"]
    }


SLEEPER_TF = """
resource "terraform_data" "first" {{
  input = "before"
}}
resource "terraform_data" "sleeper" {{
  depends_on = [terraform_data.first]
  provisioner "local-exec" {{
    command = "{command}"
  }}
}}
"""


def sleeper_workspace(path: Path, command: str) -> TerraformRunner:
    """An initialised and planned workspace whose apply runs `command` after `first`."""
    write_workspace(path, SLEEPER_TF.format(command=command))
    runner = make_runner(path)
    assert runner.init(60).ok
    assert runner.plan(60).ok
    return runner


# ------------------------------------------------------------------------ without Terraform


def test_build_argv_for_every_step():
    runner = make_runner(Path("/w"), settings=TerraformSettings(lock_timeout_seconds=90))

    assert runner.build_argv("init") == EMBEDDED + ["init", "-input=false", "-no-color", "-json"]
    assert runner.build_argv("plan", "-out=tfplan") == EMBEDDED + [
        "plan", "-input=false", "-json", "-lock=false", "-out=tfplan"
    ]
    assert runner.build_argv("apply", "tfplan") == EMBEDDED + [
        "apply", "-input=false", "-json", "-auto-approve", "-lock-timeout=90s", "tfplan"
    ]
    assert runner.build_argv("destroy") == EMBEDDED + [
        "apply", "-destroy", "-input=false", "-json", "-auto-approve", "-lock-timeout=90s"
    ]
    assert runner.build_argv("output") == EMBEDDED + ["output", "-no-color", "-json"]
    assert runner.build_argv("show", "tfplan") == EMBEDDED + ["show", "-no-color", "-json", "tfplan"]
    assert runner.build_argv("version", "-json") == EMBEDDED + ["version", "-json"]


def test_an_external_binary_replaces_the_embedded_prefix_and_init_json_can_be_turned_off():
    runner = make_runner(Path("/w"), settings=TerraformSettings(binary="/opt/tofu", init_json=False))

    assert runner.build_argv("init") == ["/opt/tofu", "init", "-input=false", "-no-color"]
    assert TerraformSettings().command_prefix() == EMBEDDED


def test_base_env_is_explicit_and_never_reads_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_LEAK_MARKER", "leaky")
    runner = make_runner(tmp_path, env={"TF_HTTP_USERNAME": "run-1", "TF_HTTP_PASSWORD": "pw-123456"})

    assert runner.base_env() == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path / ".home"),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "TF_CLI_CONFIG_FILE": str(tmp_path / ".home" / "terraform.tfrc.json"),
        "TF_HTTP_USERNAME": "run-1",
        "TF_HTTP_PASSWORD": "pw-123456",
    }
    assert os.environ["PORTAL_LEAK_MARKER"] == "leaky"  # untouched


def test_the_cli_config_names_the_cache_and_mirror_and_holds_no_credentials(tmp_path):
    settings = TerraformSettings(plugin_cache_dir=tmp_path / "cache", provider_mirror_dir=tmp_path / "mirror")
    runner = make_runner(tmp_path / "w", env={"TF_HTTP_PASSWORD": "pw-123456"}, settings=settings)

    path = runner.write_cli_config()

    assert json.loads(path.read_text()) == {
        "plugin_cache_dir": str(tmp_path / "cache"),
        "provider_installation": [{"filesystem_mirror": [{"path": str(tmp_path / "mirror")}]}],
    }
    assert (tmp_path / "cache").is_dir()  # Terraform refuses a cache dir that does not exist


def test_plan_summary_counts_like_terraform_and_lists_resources_in_address_order():
    show = {
        "resource_changes": [
            {"address": "terraform_data.z", "type": "terraform_data", "name": "z", "change": {"actions": ["create"]}},
            {"address": "terraform_data.noop", "type": "terraform_data", "name": "noop", "change": {"actions": ["no-op"]}},
            {"address": "data.aws_vpc.main", "mode": "data", "type": "aws_vpc", "name": "main", "change": {"actions": ["read"]}},
            {
                "address": "module.net.aws_subnet.a[0]",
                "module_address": "module.net",
                "type": "aws_subnet",
                "name": "a",
                "change": {"actions": ["delete", "create"]},
            },
            {"address": "aws_s3_bucket.b", "type": "aws_s3_bucket", "name": "b", "change": {"actions": ["update"]}},
            {"address": "aws_s3_bucket.old", "type": "aws_s3_bucket", "name": "old", "change": {"actions": ["delete"]}},
        ]
    }

    summary = plan_summary(show)

    assert {k: summary[k] for k in ("add", "change", "destroy", "replace")} == {
        "add": 2, "change": 1, "destroy": 2, "replace": 1
    }
    assert [r["address"] for r in summary["resources"]] == [
        "aws_s3_bucket.b", "aws_s3_bucket.old", "module.net.aws_subnet.a[0]", "terraform_data.z"
    ]
    assert summary["resources"][2] == {
        "address": "module.net.aws_subnet.a[0]",
        "type": "aws_subnet",
        "name": "a",
        "module": "module.net",
        "actions": ["delete", "create"],
    }
    assert plan_summary({}) == {"add": 0, "change": 0, "destroy": 0, "replace": 0, "resources": []}


def test_the_init_lock_is_exclusive_and_gives_up_on_timeout_or_cancel(tmp_path):
    lock = tmp_path / "locks" / "init.lock"
    cancel = threading.Event()
    with exclusive_lock(lock, 1) as first:
        assert first
        started = time.monotonic()
        with exclusive_lock(lock, 0.3) as second:
            assert not second
        assert 0.25 <= time.monotonic() - started < 1.5
        threading.Timer(0.2, cancel.set).start()
        started = time.monotonic()
        with exclusive_lock(lock, 30, cancel) as third:
            assert not third
        assert time.monotonic() - started < 1.5
    with exclusive_lock(lock, 1) as again:
        assert again


def test_a_step_is_not_started_when_cancel_is_already_set(tmp_path):
    cancel = threading.Event()
    cancel.set()
    recorder = Recorder()
    runner = make_runner(write_workspace(tmp_path, ""), cancel=cancel, on_event=recorder)

    result = runner.init(60)

    assert result.cancelled and result.returncode is None and not result.ok
    assert recorder.events == []
    assert not (tmp_path / ".terraform").exists()


# --------------------------------------------------------------------------- real Terraform

LIFECYCLE_TF = """
resource "terraform_data" "a" {
  input = "hello"
}
resource "terraform_data" "slow" {
  depends_on = [terraform_data.a]
  provisioner "local-exec" {
    command = "sleep 2"
  }
}
output "greeting" {
  value = terraform_data.a.output
}
"""


def test_init_plan_apply_outputs_destroy_with_events_streamed_as_they_happen(tmp_path):
    recorder = Recorder()
    runner = make_runner(write_workspace(tmp_path, LIFECYCLE_TF), on_event=recorder)

    init = runner.init(60)
    assert init.ok, init.stderr_tail
    # Terraform 1.15 supports `init -json`.
    assert "init_output" in [e.type for _, e in recorder.events]
    assert init.argv[-1] == "-json" and init.cwd == str(tmp_path)

    plan = runner.plan(60)
    assert plan.ok, plan.stderr_tail
    assert (tmp_path / "tfplan").exists()
    summary = plan_summary(runner.show_plan())
    assert summary["add"] == 2 and summary["change"] == summary["destroy"] == summary["replace"] == 0
    assert [r["address"] for r in summary["resources"]] == ["terraform_data.a", "terraform_data.slow"]
    assert summary["resources"][0]["actions"] == ["create"]

    recorder.events.clear()
    apply = runner.apply(60)
    assert apply.ok, apply.stderr_tail
    started = recorder.first("apply_start", "terraform_data.slow")
    completed = recorder.first("apply_complete", "terraform_data.slow")
    # Streaming, not collected at the end: the start arrived while the provisioner slept.
    assert completed - started >= 1.5
    types = [e.type for _, e in recorder.events]
    assert types.index("apply_start") < types.index("apply_complete") < types.index("change_summary")
    assert all(e.data is not None for _, e in recorder.events if e.stream == "stdout")
    assert '"type":"change_summary"' in apply.stdout.replace(" ", "")

    assert runner.outputs() == {"greeting": "hello"}

    destroy = runner.destroy(60)
    assert destroy.ok, destroy.stderr_tail
    assert state_resources(tmp_path) == {}
    assert runner.outputs() == {}


def test_a_failing_apply_reports_the_error_and_keeps_what_was_created(tmp_path):
    recorder = Recorder()
    write_workspace(tmp_path, SLEEPER_TF.format(command="echo boom-output; exit 1"))
    runner = make_runner(tmp_path, on_event=recorder)
    assert runner.init(60).ok and runner.plan(60).ok

    result = runner.apply(60)

    assert not result.ok and result.returncode == 1
    errors = [e for _, e in recorder.events if e.level == "error"]
    assert any("local-exec provisioner error" in e.message for e in errors)
    assert "boom-output" in recorder.lines()
    # Created before the failure, so it is in state; the failed one is kept as tainted.
    assert state_resources(tmp_path) == {"terraform_data.first": "", "terraform_data.sleeper": "tainted"}


def test_outputs_raise_terraform_error_when_terraform_fails(tmp_path):
    runner = make_runner(write_workspace(tmp_path, 'output "x" {\n  value = \n}\n'))

    with pytest.raises(TerraformError, match="terraform show failed"):
        runner.show_plan("missing-plan")


def test_cancel_interrupts_terraform_saves_state_and_leaves_no_process(tmp_path):
    cancel = threading.Event()
    recorder = Recorder(cancel, cancel_on="PGID=")
    runner = sleeper_workspace(tmp_path, f"{PRINT_PGID}; sleep 30.101")
    runner.cancel, runner.on_event = cancel, recorder

    result = runner.apply(60)

    assert result.cancelled and not result.timed_out and not result.ok
    assert time.monotonic() - recorder.cancelled_at < 10  # well before the 20 s grace period
    assert result.returncode != 0
    assert any("Interrupt received" in e.message for _, e in recorder.events)  # graceful SIGINT
    # State saved on the way out; the interrupted resource is kept, tainted.
    assert state_resources(tmp_path) == {"terraform_data.first": "", "terraform_data.sleeper": "tainted"}
    assert_nothing_left(result, recorder.pgid(), "30.101")
    # Once cancelled, later steps do not start.
    assert runner.destroy(60).returncode is None


def test_a_provisioner_ignoring_sigint_does_not_keep_terraform_or_itself_alive(tmp_path):
    # Terraform 1.15 kills the provisioner's shell itself when interrupted and exits at once;
    # the `sleep` the shell started would survive it, so the runner kills the rest of the group.
    cancel = threading.Event()
    recorder = Recorder(cancel, cancel_on="PGID=")
    runner = sleeper_workspace(tmp_path, f"trap '' INT; {PRINT_PGID}; sleep 30.202")
    runner.cancel, runner.on_event = cancel, recorder

    result = runner.apply(60)

    assert result.cancelled and not result.ok
    assert time.monotonic() - recorder.cancelled_at < 10  # well before the 20 s grace period
    assert_nothing_left(result, recorder.pgid(), "30.202")


def test_a_process_ignoring_sigint_is_killed_after_the_grace_period(tmp_path):
    # Stands in for a Terraform that does not stop on SIGINT (a hung provider, an old
    # binary): only SIGKILL after the grace period ends it.
    stubborn = tmp_path / "stubborn-terraform"
    stubborn.write_text(
        "#!/bin/sh\ntrap '' INT\n"
        "echo PGID=$(cut -d' ' -f5 /proc/$$/stat)\n"
        "sleep 30.606\necho survived\n"
    )
    stubborn.chmod(0o755)
    cancel = threading.Event()
    recorder = Recorder(cancel, cancel_on="PGID=")
    settings = TerraformSettings(binary=str(stubborn), grace_seconds=1)
    runner = make_runner(tmp_path, settings=settings, on_event=recorder, cancel=cancel)

    result = runner.run("apply", ["apply"], timeout=60)

    elapsed = time.monotonic() - recorder.cancelled_at
    assert result.cancelled and result.returncode == -9  # SIGKILL
    assert 0.9 <= elapsed < 4
    assert "survived" not in result.stdout
    assert_nothing_left(result, recorder.pgid(), "30.606")


def test_a_timeout_interrupts_the_step_and_leaves_no_process(tmp_path):
    recorder = Recorder()
    runner = sleeper_workspace(tmp_path, f"{PRINT_PGID}; sleep 30.303")
    runner.on_event = recorder

    # Long enough for a fresh interpreter to load Terraform and reach the sleeper on a loaded
    # machine (the PGID line proves it did), far shorter than the 30 s sleep.
    started = time.monotonic()
    result = runner.apply(8)

    assert result.timed_out and not result.cancelled and not result.ok
    assert time.monotonic() - started < 8 + 8
    assert_nothing_left(result, recorder.pgid(), "30.303")


def test_a_background_child_left_by_a_provisioner_is_killed_when_terraform_exits(tmp_path):
    recorder = Recorder()
    runner = sleeper_workspace(tmp_path, f"{PRINT_PGID}; sleep 30.404 >/dev/null 2>&1 &")
    runner.on_event = recorder

    result = runner.apply(60)

    assert result.ok, result.stderr_tail
    assert_nothing_left(result, recorder.pgid(), "30.404")


def test_a_callback_exception_does_not_leave_terraform_running(tmp_path):
    seen = {}

    def explode(event: TerraformEvent) -> None:
        if "PGID=" in event.message:
            seen["pgid"] = int(event.message.rsplit("PGID=", 1)[1])
            raise RuntimeError("sink broke")

    runner = sleeper_workspace(tmp_path, f"{PRINT_PGID}; sleep 30.505")
    runner.on_event = explode

    with pytest.raises(RuntimeError, match="sink broke"):
        runner.apply(60)

    assert live_group_members(seen["pgid"]) == []
    assert processes_running("30.505") == []


ENV_TF = """
variable "db_password" {
  type = string
}
resource "terraform_data" "env" {
  provisioner "local-exec" {
    command = "echo var=${var.db_password}; printf 'pw=%s\\n' \\"$TF_HTTP_PASSWORD\\"; env | sort"
  }
}
"""


def test_terraform_sees_only_the_explicit_environment_and_secrets_are_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_LEAK_MARKER", "leaky-value")
    http_password = 'pa"ss&word<1>'  # JSON-escaped by Terraform: \" \u0026 \u003c
    env = {"TF_HTTP_PASSWORD": http_password, "TF_VAR_db_password": "db-secret-4242", "TF_HTTP_USERNAME": "run-7"}
    recorder = Recorder()
    runner = make_runner(write_workspace(tmp_path, ENV_TF), env=env, on_event=recorder)
    assert runner.init(60).ok

    plan = runner.plan(60)
    apply = runner.apply(60)

    assert plan.ok and apply.ok, apply.stderr_tail
    printed = "\n".join(
        e.message
        for _, e in recorder.events
        if e.type == "provision_progress" and "Executing:" not in e.message
    )
    assert "TF_HTTP_USERNAME=run-7" in printed
    assert f"TF_HTTP_PASSWORD={REDACTED}" in printed
    assert f"pw={REDACTED}" in printed and f"var={REDACTED}" in printed
    assert "PORTAL_LEAK_MARKER" not in printed and "leaky-value" not in apply.stdout
    variables = {line.split("(local-exec): ", 1)[1].split("=", 1)[0] for line in printed.splitlines() if "=" in line}
    assert variables <= {
        "PATH", "HOME", "PWD", "SHLVL", "_", "TF_IN_AUTOMATION", "TF_INPUT", "CHECKPOINT_DISABLE",
        "TF_CLI_CONFIG_FILE", "TF_HTTP_PASSWORD", "TF_HTTP_USERNAME", "TF_VAR_db_password", "var", "pw",
    }
    everything = json.dumps([(e.line, e.data) for _, e in recorder.events]) + apply.stdout + plan.stdout
    for secret in (http_password, "db-secret-4242", json.dumps(http_password)[1:-1], "word\\u003c1"):
        assert secret not in everything
    assert apply.env["TF_HTTP_PASSWORD"] == REDACTED
    assert apply.env["TF_VAR_db_password"] == REDACTED
    assert apply.env["TF_HTTP_USERNAME"] == "run-7"


def wrapper_script(path: Path, log: Path | None = None) -> str:
    """A stand-in "external terraform": a shell script running the embedded one."""
    # Without the control flag: an external binary gets signals, not requests on stdin.
    command = " ".join(f"'{part}'" for part in EMBEDDED[:3])
    if log is None:
        body = f'exec {command} "$@"\n'
    else:
        body = (
            f'echo "start $1 $(date +%s.%N)" >> {log}\n'
            f'{command} "$@"\nrc=$?\n'
            f'echo "end $1 $(date +%s.%N)" >> {log}\nexit $rc\n'
        )
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_an_external_binary_runs_the_steps(tmp_path):
    binary = wrapper_script(tmp_path / "terraform")
    workdir = write_workspace(tmp_path / "w", 'resource "terraform_data" "a" {}\n')
    runner = make_runner(workdir, settings=TerraformSettings(binary=binary))

    init, plan = runner.init(60), runner.plan(60)

    assert init.ok and plan.ok, plan.stderr_tail
    assert plan.argv[0] == binary
    assert plan_summary(runner.show_plan())["add"] == 1


def test_concurrent_inits_sharing_a_plugin_cache_are_serialised(tmp_path):
    log = tmp_path / "init.log"
    settings = TerraformSettings(
        binary=wrapper_script(tmp_path / "terraform", log),
        plugin_cache_dir=tmp_path / "cache",
        lock_dir=tmp_path / "locks",
    )
    runners = [
        make_runner(write_workspace(tmp_path / f"w{i}", 'resource "terraform_data" "a" {}\n'), settings=settings)
        for i in range(2)
    ]
    results = []
    threads = [threading.Thread(target=lambda r=r: results.append(r.init(60))) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 2 and all(r.ok for r in results)
    assert (tmp_path / "locks" / "init.lock").exists()
    stamps = [line.split() for line in log.read_text().splitlines()]
    assert [kind for kind, _, _ in stamps] == ["start", "end", "start", "end"]  # never overlapping
    assert float(stamps[1][2]) <= float(stamps[2][2])


def test_cancel_while_waiting_for_the_init_lock_does_not_start_init(tmp_path):
    cancel = threading.Event()
    settings = TerraformSettings(plugin_cache_dir=tmp_path / "cache")
    runner = make_runner(write_workspace(tmp_path / "w", ""), settings=settings, cancel=cancel)

    with exclusive_lock(tmp_path / "cache" / "init.lock", 1):
        threading.Timer(0.3, cancel.set).start()
        result = runner.init(30)

    assert result.cancelled and result.returncode is None and result.duration < 2


def test_init_without_providers_to_install_takes_no_cache_lock(tmp_path):
    """A workspace of built-in resources installs nothing, so parallel inits need not queue."""
    from provisioning.pipeline import installs_providers
    from provisioning.locks import exclusive_lock

    assert installs_providers({"main.tf": 'resource "terraform_data" "a" {}\n'}) is False
    assert installs_providers({"main.tf": 'resource "aws_s3_bucket" "a" {}\n'}) is True
    assert installs_providers({"versions.tf": "terraform {\n  required_providers {}\n}\n"}) is True

    cache = tmp_path / "cache"
    workdir = tmp_path / "ws"
    workdir.mkdir()
    (workdir / "main.tf").write_text('resource "terraform_data" "a" {}\n')
    runner = TerraformRunner(TerraformSettings(plugin_cache_dir=cache), workdir, {}, redactor=Redactor())
    with exclusive_lock(cache / "init.lock", 1.0) as held:  # another worker is installing providers
        assert held
        assert runner.init(30, installs_providers=False).ok  # not blocked by it
        assert not runner.init(0.5, installs_providers=True).ok  # would wait for the lock
