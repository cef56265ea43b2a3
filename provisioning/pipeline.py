"""The pipeline: create = render -> init -> plan -> apply -> outputs; destroy = render -> init -> destroy.

Each step only builds its arguments (via `TerraformRunner`) and reads its result; progress
and events go to a `Sink` the caller provides (the portal writes them into the CMDB). The
pipeline decides nothing about rollback or environment status: it returns an `Outcome` and
the portal's services decide.

What the Outcome says about the state is never taken from an exit code alone (DESIGN.md,
durability rules): after every apply or destroy the pipeline looks for the state Terraform
could not write (`errored.tfstate`) and has the sink store it; `state_unknown` says that the
state Terraform ended with did not reach the portal. An apply whose resources all completed
is an applied apply, even if writing the state or releasing the lock failed afterwards.

Must not import Django or anything from `portal/`.
"""

from __future__ import annotations

import json
import re
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from provisioning import statebackend

from provisioning.patterns import EndpointSpec
from provisioning.redact import Redactor
from provisioning.render import RenderError
from provisioning.terraform import (
    StepResult,
    TerraformError,
    TerraformEvent,
    TerraformRunner,
    TerraformSettings,
)

# A file in the workspace root, or in a shared module copied under modules/.
# The pattern's provider lock file is the one dot file.
WORKSPACE_PATH_RE = re.compile(r"^(modules/[A-Za-z0-9_-]+/)?[A-Za-z0-9_][A-Za-z0-9_.-]*$|^\.terraform\.lock\.hcl$")
FQDN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


# Terraform's state file when writing to the backend failed (written in the working dir).
ERRORED_STATE = "errored.tfstate"


class Sink(Protocol):
    """Where a run reports what happens, as it happens. None of these may raise because the
    portal's database is away: the sink keeps what it cannot write yet."""

    def stage(self, stage: str) -> None: ...
    def event(self, event: TerraformEvent) -> None: ...
    def note(self, message: str, level: str = "info") -> None: ...
    def plan_summary(self, summary: dict) -> None: ...
    def progress(self, done: int, planned: int) -> None: ...
    def command(self, result: StepResult) -> None: ...
    def may_apply(self) -> bool:
        """Asked right before apply starts: False if a cancel was requested (or the run is no
        longer this worker's). Answered from the database, waiting for it if it is away."""
        ...
    def recover_state(self, path: Path) -> bool:
        """Store the state file Terraform left at `path`; True once it is safely stored."""
        ...


@dataclass
class Outcome:
    """How a pipeline ended. `status`: succeeded | failed | cancelled.

    `state_unknown`: the state Terraform ended with did not reach the portal (it was killed
    before saving, or its state could not be stored): resources may exist that the stored
    state does not list. `late_cancel`: a cancel arrived after Terraform had finished.
    """

    status: str
    stage: str
    explanation: str = ""
    apply_failed: bool = False
    outputs: dict = field(default_factory=dict)
    endpoints: list[dict] = field(default_factory=list)
    state_unknown: bool = False
    late_cancel: bool = False
    plan_file: bytes | None = None  # plan_change: the saved plan
    resource_changes: list[dict] = field(default_factory=list)  # plan_change: see `resource_changes`

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


class _Observer:
    """Reads Terraform's -json stream as it passes: resources done / planned, the plan's
    resource list and the applied outputs.

    Reading these from the stream (rather than running `show -json` and `output -json`
    afterwards) keeps a create at exactly the three Terraform processes a person would run:
    init, plan, apply.
    """

    def __init__(self, sink: Sink):
        self.sink = sink
        self.planned = 0
        self.done = 0
        self.errored = 0  # apply_errored: a resource Terraform could not create/change/delete
        self.error_summaries: list[str] = []
        self.error_texts: list[str] = []  # summary and detail of each error diagnostic
        self.planned_changes: list[dict] = []
        self.outputs: dict[str, dict] | None = None

    def start_step(self) -> None:
        """Errors are counted per step: the apply's, not the plan's."""
        self.errored = 0
        self.error_summaries = []
        self.error_texts = []

    def all_changes_completed(self) -> bool:
        """Every planned change completed and none errored: the apply did its work, whatever
        happened to the state write or the unlock after it."""
        return self.errored == 0 and self.planned > 0 and self.done >= self.planned

    def only_state_errors(self) -> bool:
        """The step's error diagnostics are all about saving the state or releasing the lock."""
        return all(_is_state_error(summary) for summary in self.error_summaries)

    def state_write_failed(self) -> bool:
        return any(_is_state_write_error(summary) for summary in self.error_summaries)

    def __call__(self, event: TerraformEvent) -> None:
        data = event.data or {}
        kind = data.get("type")
        if kind == "planned_change":
            self.planned_changes.append(data.get("change") or {})
        elif kind == "change_summary" and (data.get("changes") or {}).get("operation") == "plan":
            changes = data["changes"]
            # `apply -destroy` announces its plan in the stream; a saved plan was counted earlier.
            if not self.planned:
                self.planned = int(changes.get("add", 0)) + int(changes.get("change", 0)) + int(changes.get("remove", 0))
                self.sink.progress(self.done, self.planned)
        elif kind == "apply_complete" and (data.get("hook") or {}).get("action") != "read":
            # A data source read during apply is not one of the plan's changes.
            self.done += 1
            self.sink.progress(self.done, max(self.planned, self.done))
        elif kind == "apply_errored":
            self.errored += 1
        elif kind == "diagnostic" and event.level == "error":
            diagnostic = data.get("diagnostic") or {}
            self.error_summaries.append(str(diagnostic.get("summary", "")))
            self.error_texts.append(f"{diagnostic.get('summary', '')} {diagnostic.get('detail', '')}")
        elif kind == "outputs":
            outputs = data.get("outputs") or {}
            # The plan's `outputs` message carries actions; the apply's carries values.
            if not any("action" in o for o in outputs.values()):
                self.outputs = outputs
        self.sink.event(event)

    def plan_summary(self) -> dict:
        """Counts and resources of the plan, as Terraform's own "Plan:" line counts them."""
        counts = {"add": 0, "change": 0, "destroy": 0, "replace": 0}
        resources = []
        for change in self.planned_changes:
            action = change.get("action", "")
            resource = change.get("resource") or {}
            if action in ("create", "replace"):
                counts["add"] += 1
            if action in ("delete", "replace"):
                counts["destroy"] += 1
            if action == "update":
                counts["change"] += 1
            if action == "replace":
                counts["replace"] += 1
            if action in ("create", "update", "delete", "replace"):
                resources.append(
                    {
                        "address": resource.get("addr", ""),
                        "type": resource.get("resource_type", ""),
                        "name": resource.get("resource_name", ""),
                        "module": resource.get("module") or None,
                        "actions": [action],
                    }
                )
        resources.sort(key=lambda r: r["address"])
        return {**counts, "resources": resources}

    def output_values(self) -> dict | None:
        """Applied output values (sensitive ones are never kept), or None if not seen."""
        if self.outputs is None:
            return None
        return {name: o["value"] for name, o in self.outputs.items() if "value" in o}


class Pipeline:
    """Runs one create or destroy of a rendered workspace in `workdir`."""

    def __init__(
        self,
        *,
        settings: TerraformSettings,
        workdir: Path,
        files: dict[str, str],
        env: dict[str, str],
        sink: Sink,
        redactor: Redactor,
        cancel: threading.Event,
        step_timeout: float,
        max_state_bytes: int | None = None,
        state_backend_wait: float = 300.0,
        run_id: int = 0,
        destroy_retries: int = 0,
        destroy_retry_seconds: float = 30.0,
    ):
        self.workdir = Path(workdir)
        self.files = files
        self.sink = sink
        self.cancel = cancel
        self.step_timeout = step_timeout
        self.max_state_bytes = max_state_bytes
        self.state_backend_wait = state_backend_wait
        self.env = dict(env)
        self.run_id = run_id
        self.destroy_retries = destroy_retries
        self.destroy_retry_seconds = destroy_retry_seconds
        self.recovered_state: dict | None = None
        self.observer = _Observer(sink)
        self.runner = TerraformRunner(
            settings, self.workdir, env, redactor=redactor, on_event=self.observer, cancel=cancel
        )
        self.current = "render"

    # -- steps ------------------------------------------------------------------------------

    def _stage(self, stage: str) -> None:
        self.current = stage
        self.sink.stage(stage)

    def _write_workspace(self) -> None:
        """Materialise the stored snapshot (parsed when it was rendered, before it was stored)."""
        self._stage("render")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            if not WORKSPACE_PATH_RE.match(name):
                raise RenderError(name, "workspace paths are plain names or modules/<module>/<file>")
            path = self.workdir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        self.sink.note(f"Workspace written: {', '.join(sorted(self.files))}")

    def _step(self, stage: str, call) -> StepResult:
        self._stage(stage)
        self.observer.start_step()
        result = call()
        self.sink.command(result)
        return result

    def _settle_state(self, result: StepResult) -> bool:
        """After an apply or destroy: is the state Terraform ended with stored in the portal?

        Terraform writes `errored.tfstate` when the backend refused or could not take its
        final write; the sink stores it as a recovered version, then the file is renamed so
        the folder may be swept. Killed before it could save (a negative exit code), or a
        write that failed with no file left: the state is unknown.
        """
        errored = self.workdir / ERRORED_STATE
        if errored.exists():
            self.sink.note("Terraform could not write its final state to the portal; storing the copy it left (errored.tfstate).", "warning")
            try:
                self.recovered_state = json.loads(errored.read_bytes())
            except ValueError:
                self.recovered_state = None
            if not self.sink.recover_state(errored):
                return False
            errored.rename(errored.with_name(f"{ERRORED_STATE}.recovered-run-{self.run_id}"))
            return True
        if result.returncode is not None and result.returncode < 0:
            return False  # killed by a signal: whatever it did since its last write is not stored
        if self.observer.state_write_failed():
            return False
        return True

    def _state_unknown(self, what: str) -> Outcome:
        folder = self.workdir
        return Outcome(
            "failed",
            self.current,
            f"State unknown: the state Terraform ended {what} with did not reach the portal, so "
            f"resources may exist that the stored state does not list. The run folder {folder} is kept "
            "on the worker and its state is stored as soon as that is possible; until then do not delete.",
            state_unknown=True,
        )

    def _planned_state_too_large(self) -> str | None:
        """A lower bound of the state the plan would produce: its planned values, uncompressed
        (msgpack, smaller than the state's JSON). Over the backend's limit, apply would build
        resources whose state the portal must refuse: say so before applying."""
        if not self.max_state_bytes:
            return None
        try:
            with zipfile.ZipFile(self.workdir / "tfplan") as plan:
                size = sum(info.file_size for info in plan.infolist() if info.filename == "tfplan")
        except (OSError, zipfile.BadZipFile):
            return None
        if size > self.max_state_bytes:
            return (
                f"The planned state is at least {size / 2**20:.1f} MiB, over the state backend's limit of "
                f"{self.max_state_bytes / 2**20:.0f} MiB (STATE_MAX_BYTES); nothing was applied."
            )
        return None

    def _wait_for_state_backend(self) -> str | None:
        """A destroy never starts while the state backend is unreachable for it."""
        reason = statebackend.wait_until_reachable(
            self.env,
            max_wait=self.state_backend_wait,
            cancel=self.cancel,
            on_wait=lambda why: self.sink.note(f"Waiting for the state backend before destroying anything: {why}.", "warning"),
        )
        return reason

    def _stopped(self, result: StepResult, what: str) -> Outcome | None:
        """The Outcome for a step that did not succeed, or None when it did."""
        if result.ok:
            return None
        if result.cancelled:
            return Outcome("cancelled", self.current, f"Cancelled during {what}; Terraform stopped and saved its state.")
        if result.timed_out:
            return Outcome("failed", self.current, f"terraform {what} timed out after {self.step_timeout:.0f}s and was stopped.")
        if not result.ok:
            return Outcome("failed", self.current, f"terraform {what} failed (exit {result.returncode}): {_last_error(result)}")
        return None

    def _init(self) -> Outcome | None:
        installs = installs_providers(self.files)
        return self._stopped(
            self._step("init", lambda: self.runner.init(self.step_timeout, installs_providers=installs)), "init"
        )

    # -- flows ------------------------------------------------------------------------------

    def create(self, endpoints: tuple[EndpointSpec, ...]) -> Outcome:
        """render -> init -> plan (summary stored) -> apply (progress) -> outputs -> endpoints."""
        self._write_workspace()
        if stopped := self._init():
            return stopped
        plan = self._step("plan", lambda: self.runner.plan(self.step_timeout))
        # An interrupted plan may exit 0 with a partial plan: never apply one.
        if plan.cancelled or (plan.ok and self.cancel.is_set()):
            return Outcome("cancelled", "plan", "Cancelled during plan; nothing was applied.")
        if plan.timed_out:
            return Outcome("failed", "plan", f"terraform plan timed out after {self.step_timeout:.0f}s and was stopped; nothing was applied.")
        if stopped := self._stopped(plan, "plan"):
            return stopped
        summary = self.observer.plan_summary()
        self.sink.plan_summary(summary)
        self.observer.planned = planned_completions(summary)
        self.sink.progress(0, self.observer.planned)
        if too_large := self._planned_state_too_large():
            return Outcome("failed", "plan", too_large)
        # Checked against the database right before apply starts (a cancel the watchdog has
        # not relayed yet must still prevent it).
        if self.cancel.is_set() or not self.sink.may_apply():
            return Outcome("cancelled", "plan", "Cancelled before apply; nothing was applied.")
        return self._apply_saved_plan(endpoints)

    def _apply_saved_plan(self, endpoints: tuple[EndpointSpec, ...]) -> Outcome:
        """apply of the workspace's `tfplan` (progress) -> outputs -> endpoints."""
        apply = self._step("apply", lambda: self.runner.apply(self.step_timeout))
        state_stored = self._settle_state(apply)
        completed = apply.ok or (self.observer.all_changes_completed() and self.observer.only_state_errors())
        if not state_stored:
            return self._state_unknown("the apply")
        if not completed:
            if apply.cancelled:
                return Outcome("cancelled", "apply", "Cancelled during apply; Terraform stopped and saved its state.")
            stopped = self._stopped(apply, "apply") or Outcome("failed", "apply", "terraform apply failed.")
            stopped.apply_failed = stopped.status == "failed"
            return stopped
        if not apply.ok:
            self.sink.note(
                "Apply complete; only storing the state or releasing the lock failed afterwards, and the state is "
                "stored now: this is not a failed apply.",
                "warning",
            )
        self._stage("outputs")
        try:
            outputs = self.observer.output_values()
            if (outputs is None or any(spec.output not in outputs for spec in endpoints)) and self.recovered_state:
                outputs = state_output_values(self.recovered_state)
            if outputs is None or any(spec.output not in outputs for spec in endpoints):
                outputs = self.runner.outputs()  # not in the stream (e.g. an older Terraform)
            found = endpoints_from_outputs(outputs, endpoints)
        except (TerraformError, ValueError) as exc:
            return Outcome("failed", "outputs", f"Reading the outputs failed: {exc}", apply_failed=True)
        return Outcome(
            "succeeded", "outputs", "Applied.", outputs=outputs, endpoints=found,
            late_cancel=apply.cancelled or self.cancel.is_set(),
        )

    def plan_change(self) -> Outcome:
        """render (the changed code) -> init -> plan -out -> show: the saved plan and what it
        would do per resource, for a person to review. Applies nothing."""
        self._write_workspace()
        if stopped := self._init():
            return stopped
        plan = self._step("plan", lambda: self.runner.plan(self.step_timeout))
        if plan.cancelled or (plan.ok and self.cancel.is_set()):
            return Outcome("cancelled", "plan", "Cancelled during plan; nothing was changed.")
        if stopped := self._stopped(plan, "plan"):
            return stopped
        try:
            shown = self.runner.show_plan("tfplan", self.step_timeout)
        except TerraformError as exc:
            return Outcome("failed", "plan", f"Reading the saved plan failed: {exc}")
        return Outcome(
            "succeeded", "plan", "Planned.", plan_file=(self.workdir / "tfplan").read_bytes(),
            resource_changes=resource_changes(shown),
        )

    def apply_change(self, plan_file: bytes, planned: int, endpoints: tuple[EndpointSpec, ...]) -> Outcome:
        """render (the changed code) -> init -> apply of exactly the saved plan a person
        confirmed (Terraform refuses it if the state moved since) -> outputs -> endpoints."""
        self._write_workspace()
        (self.workdir / "tfplan").write_bytes(plan_file)
        if stopped := self._init():
            return stopped
        self.observer.planned = planned
        self.sink.progress(0, planned)
        if self.cancel.is_set() or not self.sink.may_apply():
            return Outcome("cancelled", "plan", "Cancelled before apply; nothing was applied.")
        return self._apply_saved_plan(endpoints)

    def check_drift(self, state: bytes) -> Outcome:
        """render (without the portal's backend) -> a private copy of the stored state ->
        init -> plan (refreshing) -> show: what changed outside Terraform that Terraform would
        put back (`drift_findings`). Nothing is locked and nothing is written back; the copy is
        thrown away with the workdir."""
        self._write_workspace()
        (self.workdir / "terraform.tfstate").write_bytes(state)
        if stopped := self._init():
            return stopped
        plan = self._step("plan", lambda: self.runner.plan(self.step_timeout))
        if plan.cancelled:
            return Outcome("cancelled", "plan", "Cancelled during the drift check.")
        if stopped := self._stopped(plan, "plan"):
            return stopped
        try:
            shown = self.runner.show_plan("tfplan", self.step_timeout)
        except TerraformError as exc:
            return Outcome("failed", "plan", f"Reading the drift check's plan failed: {exc}")
        return Outcome("succeeded", "plan", "Checked.", resource_changes=drift_findings(shown))

    def destroy(self) -> Outcome:
        """render -> (state backend reachable?) -> init -> apply -destroy, from the stored
        snapshot and the portal's state."""
        self._write_workspace()
        if reason := self._wait_for_state_backend():
            return Outcome(
                "failed", "render",
                f"The state backend could not be used ({reason}), so nothing was destroyed.",
            )
        if stopped := self._init():
            return stopped
        attempts = 1 + max(0, self.destroy_retries)
        for attempt in range(1, attempts + 1):
            result = self._step("destroy", lambda: self.runner.destroy(self.step_timeout))
            if not self._settle_state(result):
                return self._state_unknown("the destroy")
            if result.ok:
                return Outcome("succeeded", "destroy", "Destroyed.", late_cancel=result.cancelled)
            if result.cancelled:
                return Outcome("cancelled", "destroy", "Cancelled during destroy; Terraform stopped and saved its state.")
            waiting_on = _still_releasing(self.observer.error_texts)
            if attempt == attempts or not waiting_on or result.timed_out:
                break
            # Each attempt destroys what it can and saves the state; the next one starts from it.
            self.sink.note(
                f"Destroy attempt {attempt} of {attempts} stopped on {waiting_on}: AWS is still releasing "
                f"what depends on it (network interfaces draining, a service winding down); trying again in "
                f"{self.destroy_retry_seconds:g} s.",
                "warning",
            )
            if self.cancel.wait(self.destroy_retry_seconds):
                return Outcome("cancelled", "destroy", "Cancelled between destroy attempts; the state is kept.")
        return self._stopped(result, "destroy") or Outcome("failed", "destroy", "terraform destroy failed.")


BLOCK_TYPE_RE = re.compile(r'^\s*(?:resource|data|ephemeral)\s+"([^"]+)"', re.MULTILINE)


def installs_providers(files: dict[str, str]) -> bool:
    """Whether `terraform init` would install a provider plugin (and so must take the plugin
    cache lock): any `required_providers` block, or any resource/data source not of
    Terraform's built-in provider (`terraform_data`, `terraform_remote_state`)."""
    for name, text in files.items():
        if not name.endswith(".tf"):
            continue
        if "required_providers" in text:
            return True
        if any(not kind.startswith("terraform_") for kind in BLOCK_TYPE_RE.findall(text)):
            return True
    return False


def endpoints_from_outputs(outputs: dict, specs: tuple[EndpointSpec, ...]) -> list[dict]:
    """Turn the outputs a pattern names as endpoints into `{fqdn, url, kind}` rows."""
    rows = []
    for spec in specs:
        if spec.output not in outputs:
            raise ValueError(f"the pattern names output {spec.output!r} as an endpoint, but Terraform has no such output")
        fqdn = str(outputs[spec.output]).strip().rstrip(".").lower()
        if not FQDN_RE.match(fqdn):
            raise ValueError(f"output {spec.output!r} is not a valid FQDN: {fqdn!r}")
        url = f"https://{fqdn}/"
        if spec.url_output:
            if spec.url_output not in outputs:
                raise ValueError(f"the pattern names output {spec.url_output!r} as a URL, but Terraform has no such output")
            url = str(outputs[spec.url_output])
        rows.append({"fqdn": fqdn, "url": url, "kind": spec.kind})
    return rows


def state_output_values(document: dict) -> dict:
    """Output values of a state document (sensitive ones are never kept)."""
    outputs = document.get("outputs") or {}
    return {name: o["value"] for name, o in outputs.items() if isinstance(o, dict) and "value" in o and not o.get("sensitive")}


def _is_state_write_error(summary: str) -> bool:
    text = summary.lower()
    return "state" in text and any(word in text for word in ("save", "persist", "write", "writing"))


# AWS errors of a teardown that only needs time: a dependency (ENIs of a service or load
# balancer, a rule on a target group) is still being released. Anything else is not retried.
TRANSIENT_DESTROY_ERRORS = (
    "DependencyViolation", "ResourceInUse", "InvalidGroup.InUse", "DeleteConflict",
    "has a dependent object", "is currently in use", "currently in use by",
)


def _still_releasing(error_texts: list[str]) -> str | None:
    """The first transient teardown error named in the step's error diagnostics, else None."""
    for text in error_texts:
        for code in TRANSIENT_DESTROY_ERRORS:
            if code.lower() in text.lower():
                return code
    return None


def _is_state_error(summary: str) -> bool:
    """Diagnostics of the state write or the unlock that follow a completed apply."""
    text = summary.lower()
    return _is_state_write_error(summary) or ("lock" in text and any(w in text for w in ("releas", "unlock")))


def _last_error(result: StepResult) -> str:
    """The most useful line for a person: Terraform's last error diagnostic, else stderr."""
    lines = [line for line in (result.stderr_tail or "").splitlines() if line.strip()]
    for line in reversed(result.stdout.splitlines() if result.stdout else []):
        if '"@level":"error"' in line:
            import json

            try:
                data = json.loads(line)
            except ValueError:
                break
            diagnostic = data.get("diagnostic") or {}
            return (diagnostic.get("summary", "") + ": " + diagnostic.get("detail", "")).strip(": ") or data.get("@message", "")
    return lines[-1] if lines else "see the log"


def resource_changes(shown_plan: dict) -> list[dict]:
    """What a saved plan (`terraform show -json`) does per resource, for review: `address`,
    `action` (create | update | replace | delete | move), `moved_from` and, for an update or
    replace, the top-level attributes that change (`attributes`). Resources it leaves alone
    (and data source reads) are left out; a moved resource that also changes says both."""
    rows = []
    for change in shown_plan.get("resource_changes") or []:
        if change.get("mode") == "data":
            continue
        body = change.get("change") or {}
        actions = body.get("actions") or []
        moved_from = change.get("previous_address")
        if set(actions) == {"create", "delete"}:
            action = "replace"
        elif actions in (["create"], ["update"], ["delete"]):
            action = {"create": "create", "update": "update", "delete": "delete"}[actions[0]]
        elif moved_from:
            action = "move"
        else:
            continue  # no-op / read
        row = {"address": change.get("address", ""), "action": action, "moved_from": moved_from or ""}
        if action in ("update", "replace"):
            before, after = body.get("before") or {}, body.get("after") or {}
            unknown = body.get("after_unknown") or {}
            # `after_unknown` marks values known only after apply with True (lists and maps
            # of flags for nested values, which say nothing changed when all are false).
            keys = set(before) | set(after) | {k for k, v in unknown.items() if v is True}
            row["attributes"] = sorted(k for k in keys if before.get(k) != after.get(k) or unknown.get(k) is True)
            replace_paths = body.get("replace_paths") or []
            row["forces_replacement"] = sorted({str(p[0]) for p in replace_paths if p})
        rows.append(row)
    return rows


SENSITIVE = "(sensitive)"


def drift_findings(shown_plan: dict) -> list[dict]:
    """The drift worth reporting, from a refreshing plan of the environment's own code
    (`terraform show -json`): each resource that Terraform would change to match its code again
    - changed or deleted outside Terraform. Per resource its `address`, `type`, `action` (update
    = changed, delete = gone) and each top-level attribute that differs, `before` as the state
    has it and `after` as the resource is now (from `resource_drift`; for a change Terraform
    plans without having seen drift, the planned change's own before -> after).

    Why not `plan -refresh-only` alone: it also lists computed attributes that nobody set and
    that no apply would touch (an IAM role's `managed_policy_arns` after a policy attachment,
    a value the API normalised), so a freshly built environment would read as drifted. Those
    are refreshed into the report only where Terraform would act on the resource."""
    def attributes(body: dict) -> list[dict]:
        before, after = body.get("before") or {}, body.get("after") or {}
        # Values Terraform marks sensitive (wholly or inside) are never copied out of the plan.
        hidden = {key for marks in (body.get("before_sensitive"), body.get("after_sensitive")) if isinstance(marks, dict)
                  for key, mark in marks.items() if mark not in (False, None, {}, [])}
        return [{"attribute": key,
                 "before": SENSITIVE if key in hidden else before.get(key),
                 "after": SENSITIVE if key in hidden else after.get(key)}
                for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]

    drift = {d.get("address"): d for d in shown_plan.get("resource_drift") or [] if d.get("mode") != "data"}
    rows = []
    for change in shown_plan.get("resource_changes") or []:
        actions = (change.get("change") or {}).get("actions") or []
        if change.get("mode") == "data" or actions in (["no-op"], ["read"], []):
            continue
        address = change.get("address", "")
        seen = drift.get(address)
        if seen is not None:
            gone = (seen.get("change") or {}).get("actions") == ["delete"]
            rows.append({"address": address, "type": change.get("type", ""), "action": "delete" if gone else "update",
                         "attributes": [] if gone else attributes(seen.get("change") or {})})
        else:
            # Terraform wants to change it without having seen it change: the real resource
            # differs from the code (created, if it was gone before the state knew).
            gone = actions == ["create"]
            planned = change.get("change") or {}
            rows.append({"address": address, "type": change.get("type", ""), "action": "delete" if gone else "update",
                         "attributes": [] if gone else [
                             {"attribute": a["attribute"], "before": a["after"], "after": a["before"]}
                             for a in attributes(planned)]})
    return rows


def planned_completions(summary: dict | None) -> int:
    """How many resource completions an apply of a plan with this summary reports: a
    replacement is two (delete + create), counted in add and in destroy."""
    summary = summary or {}
    return summary.get("add", 0) + summary.get("change", 0) + summary.get("destroy", 0)


def change_summary(changes: list[dict]) -> dict:
    """Counts per action; `add` / `change` / `destroy` count as Terraform's own summary does
    (a replacement is one add and one destroy), so progress over an apply adds up."""
    count = {action: sum(1 for c in changes if c["action"] == action) for action in ("create", "update", "replace", "delete")}
    return {
        "add": count["create"] + count["replace"],
        "change": count["update"],
        "destroy": count["delete"] + count["replace"],
        "replace": count["replace"],
        "move": sum(1 for c in changes if c["moved_from"]),
    }
