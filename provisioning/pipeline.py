"""The pipeline: create = render -> init -> plan -> apply -> outputs; destroy = render -> init -> destroy.

Each step only builds its arguments (via `TerraformRunner`) and reads its result; progress
and events go to a `Sink` the caller provides (the portal writes them into the CMDB). The
pipeline decides nothing about rollback or environment status: it returns an `Outcome` and
the portal's services decide.

Must not import Django or anything from `portal/`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

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
WORKSPACE_PATH_RE = re.compile(r"^(modules/[A-Za-z0-9_-]+/)?[A-Za-z0-9_][A-Za-z0-9_.-]*$")
FQDN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


class Sink(Protocol):
    """Where a run reports what happens, as it happens."""

    def stage(self, stage: str) -> None: ...
    def event(self, event: TerraformEvent) -> None: ...
    def note(self, message: str, level: str = "info") -> None: ...
    def plan_summary(self, summary: dict) -> None: ...
    def progress(self, done: int, planned: int) -> None: ...
    def command(self, result: StepResult) -> None: ...


@dataclass
class Outcome:
    """How a pipeline ended. `status`: succeeded | failed | cancelled."""

    status: str
    stage: str
    explanation: str = ""
    apply_failed: bool = False
    outputs: dict = field(default_factory=dict)
    endpoints: list[dict] = field(default_factory=list)

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
        self.planned_changes: list[dict] = []
        self.outputs: dict[str, dict] | None = None

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
        elif kind == "apply_complete":
            self.done += 1
            self.sink.progress(self.done, max(self.planned, self.done))
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
    ):
        self.workdir = Path(workdir)
        self.files = files
        self.sink = sink
        self.cancel = cancel
        self.step_timeout = step_timeout
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
        result = call()
        self.sink.command(result)
        return result

    def _stopped(self, result: StepResult, what: str) -> Outcome | None:
        """The Outcome for a step that did not succeed, or None when it did."""
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
        if stopped := self._stopped(plan, "plan"):
            return stopped
        summary = self.observer.plan_summary()
        self.sink.plan_summary(summary)
        # A replacement is two completions (delete + create), counted in add and in destroy.
        self.observer.planned = summary["add"] + summary["change"] + summary["destroy"]
        self.sink.progress(0, self.observer.planned)
        if self.cancel.is_set():
            return Outcome("cancelled", "plan", "Cancelled after plan; nothing was applied.")
        apply = self._step("apply", lambda: self.runner.apply(self.step_timeout))
        if stopped := self._stopped(apply, "apply"):
            stopped.apply_failed = stopped.status == "failed"
            return stopped
        self._stage("outputs")
        try:
            outputs = self.observer.output_values()
            if outputs is None or any(spec.output not in outputs for spec in endpoints):
                outputs = self.runner.outputs()  # not in the stream (e.g. an older Terraform)
            found = endpoints_from_outputs(outputs, endpoints)
        except (TerraformError, ValueError) as exc:
            return Outcome("failed", "outputs", f"Reading the outputs failed: {exc}", apply_failed=True)
        return Outcome("succeeded", "outputs", "Applied.", outputs=outputs, endpoints=found)

    def destroy(self) -> Outcome:
        """render -> init -> apply -destroy, from the stored snapshot and the portal's state."""
        self._write_workspace()
        if stopped := self._init():
            return stopped
        result = self._step("destroy", lambda: self.runner.destroy(self.step_timeout))
        if stopped := self._stopped(result, "destroy"):
            return stopped
        return Outcome("succeeded", "destroy", "Destroyed.")


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
