"""Reuse of Terraform's backend metadata between fresh working directories
(provisioning/backend_metadata.py), with the real embedded Terraform and a small http state
backend: the second init takes Terraform's "already initialised" path and still works end to
end, nothing secret is ever kept, and metadata Terraform refuses costs one more init only."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from provisioning import backend_metadata
from provisioning.redact import Redactor
from provisioning.terraform import TerraformRunner, TerraformSettings
from tests.http_state_backend import StateBackendHandler

BACKEND_TF = 'terraform {\n  backend "http" {}\n}\n'
MAIN_TF = 'resource "terraform_data" "one" {\n  input = "one"\n}\n'
FIRST_TIME = "backend has not previously been initialized in this working directory"
REUSED = 'using already-initialized, unchanged "http" backend configuration'


class StateServer(StateBackendHandler):
    """Keeps one state document per path; LOCK/UNLOCK always granted."""

    states: dict[str, bytes] = {}

    @property
    def key(self) -> str:
        return self.path.split("?", 1)[0]  # a POST under a lock carries ?ID=<lock id>

    def do_GET(self):
        state = type(self).states.get(self.key)
        self._reply(200, state) if state else self._reply(204)

    def do_POST(self):
        type(self).states[self.key] = self._body()
        self._reply(200)


@pytest.fixture
def state_url():
    StateServer.states = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), StateServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class Lines:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, event):
        self.lines.append(event.line)

    def text(self) -> str:
        return "\n".join(self.lines)


def runner(workdir: Path, cache: Path, address: str, *, backend_tf: str = BACKEND_TF) -> tuple[TerraformRunner, Lines]:
    workdir.mkdir(parents=True)
    (workdir / "portal_backend.tf").write_text(backend_tf)
    (workdir / "main.tf").write_text(MAIN_TF)
    env = {
        "TF_HTTP_ADDRESS": address, "TF_HTTP_LOCK_ADDRESS": address, "TF_HTTP_UNLOCK_ADDRESS": address,
        "TF_HTTP_USERNAME": "run-7", "TF_HTTP_PASSWORD": "s3cret-state-password",
        "TF_LOG": "trace",  # Terraform says on stderr which backend path it took
    }
    lines = Lines()
    settings = TerraformSettings(backend_metadata_dir=cache)
    return TerraformRunner(settings, workdir, env, redactor=Redactor(), on_event=lines), lines


def test_the_second_fresh_working_directory_starts_initialised_and_still_plans_and_applies(tmp_path, state_url):
    cache = tmp_path / "cache"
    first, first_lines = runner(tmp_path / "a", cache, f"{state_url}/state/1")
    assert first.init(120).ok
    assert FIRST_TIME in first_lines.text()
    kept = list(cache.glob("*.json"))
    assert len(kept) == 1
    text = kept[0].read_text()
    assert "s3cret-state-password" not in text and state_url not in text and "run-7" not in text
    assert all(value is None for value in json.loads(text)["backend"]["config"].values())

    second, second_lines = runner(tmp_path / "b", cache, f"{state_url}/state/2")
    result = second.init(120)
    assert result.ok, result.stderr_tail
    assert REUSED in second_lines.text() and FIRST_TIME not in second_lines.text()
    assert "did not accept" not in second_lines.text()
    # The reused working directory talks to its own state address, end to end.
    assert second.plan(120).ok
    assert second.apply(120).ok
    stored = json.loads(StateServer.states["/state/2"])
    assert [r["name"] for r in stored["resources"]] == ["one"]
    assert "/state/1" not in StateServer.states


def test_metadata_terraform_refuses_is_forgotten_and_init_runs_once_more_without_it(tmp_path, state_url):
    cache = tmp_path / "cache"
    first, _ = runner(tmp_path / "a", cache, f"{state_url}/state/1")
    assert first.init(120).ok
    (kept,) = cache.glob("*.json")
    good = kept.read_text()
    document = json.loads(good)
    document["backend"]["config"] = {"not_a_setting_of_this_backend": None}
    kept.write_text(json.dumps(document))

    second, lines = runner(tmp_path / "b", cache, f"{state_url}/state/2")
    result = second.init(120)
    assert result.ok, result.stderr_tail
    assert "Failed to decode current backend config" in lines.text()
    assert "did not accept the backend metadata kept from an earlier run" in lines.text()
    assert kept.read_text() == good  # learned again from the init that worked
    assert second.plan(120).ok


def test_a_backend_block_with_settings_in_it_is_never_kept(tmp_path, state_url):
    cache = tmp_path / "cache"
    address = f"{state_url}/state/1"
    backend_tf = f'terraform {{\n  backend "http" {{\n    address = "{address}"\n  }}\n}}\n'
    first, _ = runner(tmp_path / "a", cache, address, backend_tf=backend_tf)
    assert first.init(120).ok
    assert json.loads((tmp_path / "a" / ".terraform" / "terraform.tfstate").read_text())["backend"]["config"]["address"]
    assert not list(cache.glob("*.json"))


def test_an_init_that_fails_without_reused_metadata_is_not_run_twice(tmp_path, state_url):
    cache = tmp_path / "cache"
    broken, lines = runner(tmp_path / "a", cache, f"{state_url}/state/1")
    (tmp_path / "a" / "main.tf").write_text('module "x" {\n  source = "./missing"\n}\n')
    result = broken.init(120)
    assert not result.ok
    assert "did not accept" not in lines.text()
    assert not list(cache.glob("*.json"))


def test_the_key_names_the_backend_block_and_the_terraform(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "main.tf").write_text(MAIN_TF)
    assert backend_metadata.key_for(workdir, None) is None  # no backend block: nothing to reuse
    (workdir / "portal_backend.tf").write_text(BACKEND_TF)
    embedded = backend_metadata.key_for(workdir, None)
    assert embedded and embedded == backend_metadata.key_for(workdir, None)
    (workdir / "main.tf").write_text(MAIN_TF + "# other resources do not matter\n")
    assert backend_metadata.key_for(workdir, None) == embedded
    binary = tmp_path / "terraform"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    external = backend_metadata.key_for(workdir, str(binary))
    assert external and external != embedded
    binary.write_text("#!/bin/sh\n# another build\n")
    assert backend_metadata.key_for(workdir, str(binary)) != external
    assert backend_metadata.key_for(workdir, str(tmp_path / "no-such-terraform")) is None
    (workdir / "portal_backend.tf").write_text(BACKEND_TF.replace("{}", "{\n}"))
    assert backend_metadata.key_for(workdir, None) != embedded


def test_an_initialised_working_directory_keeps_its_own_metadata(tmp_path):
    cache, workdir = tmp_path / "cache", tmp_path / "w"
    cache.mkdir()
    own = '{"version": 3, "backend": {"type": "http", "config": {"address": null}, "hash": 1}}'
    (cache / "k.json").write_text(own.replace('"hash": 1', '"hash": 2'))
    (workdir / ".terraform").mkdir(parents=True)
    (workdir / ".terraform" / "terraform.tfstate").write_text(own)
    assert not backend_metadata.seed(cache, "k", workdir)
    assert (workdir / ".terraform" / "terraform.tfstate").read_text() == own


def test_an_init_failing_for_another_reason_with_reused_metadata_is_not_run_again(tmp_path, state_url):
    """An unreachable state backend (or a bad module) is not the metadata's fault: no second
    init doubles the wait, and the kept metadata stays."""
    cache = tmp_path / "cache"
    first, _ = runner(tmp_path / "a", cache, f"{state_url}/state/1")
    assert first.init(120).ok
    (kept,) = cache.glob("*.json")
    good = kept.read_text()

    second, lines = runner(tmp_path / "b", cache, f"{state_url}/state/2")
    (tmp_path / "b" / "main.tf").write_text('module "x" {\n  source = "./missing"\n}\n')
    result = second.init(120)
    assert not result.ok
    assert "did not accept" not in lines.text()
    assert sum('"type":"version"' in line for line in lines.lines) == 1  # one init ran, not two
    assert kept.read_text() == good


def test_what_counts_as_terraform_refusing_the_metadata():
    assert backend_metadata.refused("Error: Failed to decode current backend config")
    assert backend_metadata.refused('Error: Backend configuration changed ... "terraform init -reconfigure"')
    assert not backend_metadata.refused("Error: Failed to get existing workspaces: connection refused")
    assert not backend_metadata.refused("Error: Unreadable module directory")
