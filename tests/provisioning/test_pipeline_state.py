"""The pipeline against a state backend that fails in the ways issue 11 found, with real
Terraform: its final state write refused or unreachable. The state Terraform leaves behind
(errored.tfstate) must reach the sink, and an apply whose resources all completed must be an
applied apply - not a failure that starts a rollback of what was just built."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from provisioning.patterns import EndpointSpec
from provisioning.pipeline import ERRORED_STATE, Pipeline
from provisioning.redact import Redactor
from provisioning.terraform import TerraformSettings
from tests.http_state_backend import StateBackendHandler

MAIN_TF = """
terraform {
  backend "http" {}
}

resource "terraform_data" "one" {
  input = "one"
}

resource "terraform_data" "two" {
  input = "two"
}

output "fqdn" {
  value = "app-${terraform_data.two.output}.example.test"
}
"""


class Backend(StateBackendHandler):
    """Terraform's http backend that answers POST with `post_status`; everything else works."""

    post_status = 500
    state: bytes | None = None
    posts = 0

    def do_GET(self):
        self._reply(200, type(self).state) if type(self).state else self._reply(204)

    def do_POST(self):
        self._body()
        type(self).posts += 1
        self._reply(type(self).post_status, b'{"error": "refused in a test"}')


class Sink:
    """Collects what the pipeline reports; `recover_state` keeps the file's content."""

    def __init__(self, accept: bool = True):
        self.accept = accept
        self.recovered: list[dict] = []
        self.notes: list[str] = []

    def stage(self, stage): pass
    def event(self, event): pass
    def plan_summary(self, summary): pass
    def progress(self, done, planned): pass
    def command(self, result): pass
    def may_apply(self): return True

    def note(self, message, level="info"):
        self.notes.append(message)

    def recover_state(self, path: Path) -> bool:
        self.recovered.append(json.loads(path.read_bytes()))
        return self.accept


@pytest.fixture
def backend():
    Backend.state, Backend.posts = None, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/state/1/"
    server.shutdown()


def pipeline(tmp_path: Path, address: str, sink: Sink) -> Pipeline:
    env = {
        "TF_HTTP_ADDRESS": address, "TF_HTTP_LOCK_ADDRESS": address, "TF_HTTP_UNLOCK_ADDRESS": address,
        "TF_HTTP_USERNAME": "run-1", "TF_HTTP_PASSWORD": "pw", "TF_HTTP_RETRY_MAX": "0",
    }
    return Pipeline(
        settings=TerraformSettings(), workdir=tmp_path / "run", files={"main.tf": MAIN_TF}, env=env, sink=sink,
        redactor=Redactor(), cancel=threading.Event(), step_timeout=120, run_id=1,
    )


@pytest.mark.parametrize("post_status", [500, 413], ids=["backend-down", "state-too-large"])
def test_an_apply_whose_state_write_failed_is_applied_and_its_state_recovered(tmp_path, backend, post_status):
    Backend.post_status = post_status
    sink = Sink()
    work = pipeline(tmp_path, backend, sink)
    outcome = work.create((EndpointSpec(output="fqdn", kind="app"),))
    assert Backend.posts >= 1, "Terraform should have tried to write its state"
    assert outcome.ok and not outcome.apply_failed and not outcome.state_unknown, outcome
    # What Terraform built is in the state the sink got, and the outputs come from it.
    (document,) = sink.recovered
    assert sorted(r["name"] for r in document["resources"]) == ["one", "two"]
    assert outcome.endpoints == [{"fqdn": "app-two.example.test", "url": "https://app-two.example.test/", "kind": "app"}]
    assert any("not a failed apply" in note for note in sink.notes)
    # Stored: renamed, so the folder may be swept.
    assert not (tmp_path / "run" / ERRORED_STATE).exists()
    assert (tmp_path / "run" / f"{ERRORED_STATE}.recovered-run-1").exists()


def test_a_state_that_could_not_be_stored_anywhere_is_unknown_and_kept(tmp_path, backend):
    Backend.post_status = 500
    sink = Sink(accept=False)  # e.g. the database stayed away
    outcome = pipeline(tmp_path, backend, sink).create(())
    assert not outcome.ok and outcome.state_unknown and not outcome.apply_failed
    assert outcome.explanation.startswith("State unknown")
    assert (tmp_path / "run" / ERRORED_STATE).exists(), "the only copy of the state stays on disk"


def test_a_destroy_never_starts_while_the_state_backend_is_unreachable(tmp_path):
    sink = Sink()
    work = pipeline(tmp_path, "http://127.0.0.1:9/state/1/", sink)  # nothing listens on port 9
    work.state_backend_wait = 1.0
    outcome = work.destroy()
    assert outcome.status == "failed" and "nothing was destroyed" in outcome.explanation
    assert work.current == "render", "no Terraform step may start"


# --- a teardown that needs time (issue 15) ------------------------------------------------------

# Its destroy stops once with `first_error` (as AWS does while ENIs drain), then succeeds.
FLAKY_DESTROY_TF = """
terraform {
  backend "http" {}
}

resource "terraform_data" "service" {
  input = "service"
}

resource "terraform_data" "security_group" {
  input = "%(marker)s"
  provisioner "local-exec" {
    when    = destroy
    command = "if [ -e '${self.input}' ]; then exit 0; fi; touch '${self.input}'; echo '%(first_error)s' >&2; exit 1"
  }
}
"""


class StoringBackend(Backend):
    """The http backend that keeps what Terraform writes."""

    def do_POST(self):
        type(self).state = self._body()
        type(self).posts += 1
        self._reply(200)


class CountingSink(Sink):
    def __init__(self):
        super().__init__()
        self.steps: list[str] = []

    def command(self, result):
        self.steps.append(result.step)


@pytest.fixture
def storing_backend():
    StoringBackend.state, StoringBackend.posts = None, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), StoringBackend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/state/1/"
    server.shutdown()


def flaky_pipeline(tmp_path, address, sink, first_error, retries=2):
    work = pipeline(tmp_path, address, sink)
    work.files = {"main.tf": FLAKY_DESTROY_TF % {"marker": tmp_path / "released", "first_error": first_error}}
    work.destroy_retries, work.destroy_retry_seconds = retries, 0.1
    assert work.create(()).ok
    return work


def managed(state: bytes) -> list[str]:
    return [r["name"] for r in json.loads(state)["resources"] if r["mode"] == "managed"]


def test_a_destroy_stopped_by_a_dependency_still_draining_is_tried_again(tmp_path, storing_backend):
    sink = CountingSink()
    error = "api error DependencyViolation: resource sg-0123 has a dependent object"
    work = flaky_pipeline(tmp_path, storing_backend, sink, error)
    sink.steps.clear()

    outcome = work.destroy()

    assert outcome.ok, outcome
    assert sink.steps == ["init", "destroy", "destroy"]
    [note] = [n for n in sink.notes if n.startswith("Destroy attempt")]
    assert note.startswith("Destroy attempt 1 of 3 stopped on DependencyViolation: AWS is still releasing")
    assert managed(StoringBackend.state) == []


def test_a_destroy_that_fails_for_another_reason_is_not_retried(tmp_path, storing_backend):
    sink = CountingSink()
    work = flaky_pipeline(tmp_path, storing_backend, sink, "api error AccessDenied: not allowed")
    sink.steps.clear()

    outcome = work.destroy()

    assert outcome.status == "failed" and sink.steps == ["init", "destroy"]
    assert not [n for n in sink.notes if n.startswith("Destroy attempt")]
    assert managed(StoringBackend.state) == ["security_group"], "what failed stays in the state"


def test_the_retries_end_and_the_failure_is_reported(tmp_path, storing_backend):
    sink = CountingSink()
    work = flaky_pipeline(tmp_path, storing_backend, sink, "DependencyViolation", retries=0)
    sink.steps.clear()
    assert work.destroy().status == "failed" and sink.steps == ["init", "destroy"]
