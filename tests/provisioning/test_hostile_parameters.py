"""Hostile request values against the demo-ecs pattern and real Terraform.

Each case either is refused by `validate_parameters` with a clear per-field message, or is
rendered, applied with the embedded Terraform and read back with `terraform output -json`:
Terraform must return exactly the string that was sent (never evaluated as a template or an
expression), and the state must hold exactly the pattern's seven resources (nothing injected).
"""

import json
import math
import subprocess
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# With `-p no:django` nothing puts the repository root on sys.path (pytest-django does it via
# manage.py); these tests must run without Django.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from provisioning.parameters import ParameterError, validate_parameters  # noqa: E402
from provisioning.patterns import load_pattern  # noqa: E402
from provisioning.render import RenderError, placeholder_context, render_workspace  # noqa: E402

DEMO = ROOT / "patterns" / "demo-ecs"
TFEXEC = ROOT / "provisioning" / "tfexec.py"
DEMO_RESOURCES = [
    "terraform_data.database",
    "terraform_data.dns_record",
    "terraform_data.image_repository",
    "terraform_data.listener_rule",
    "terraform_data.load_balancer",
    "terraform_data.network",
    "terraform_data.service",
]


@dataclass
class Echoed:
    """Terraform must hand these parameters back unchanged (`note` and `tags` outputs)."""

    params: dict
    # What Terraform returns when it is not the input itself (Unicode NFC normalisation).
    expected_note: str | None = None
    expected_tags: dict | None = None


@dataclass
class Refused:
    """validate_parameters must refuse the parameters; `errors[field]` contains `fragment`."""

    params: dict
    field: str
    fragment: str
    others: dict = field(default_factory=dict)


BLOCK_INJECTION = '"}\nresource "terraform_data" "evil" {\n  input = "pwned"\n}\n#'

CASES = [
    # --- quoting and escaping
    pytest.param(Echoed({"note": 'say "hello"'}), id="double quotes"),
    pytest.param(Echoed({"note": "C:\\Windows\\System32\\"}), id="backslashes"),
    pytest.param(Echoed({"note": "ends with a backslash \\"}), id="trailing backslash"),
    pytest.param(Echoed({"note": '\\"'}), id="backslash quote"),
    pytest.param(Echoed({"note": '" + file("/etc/passwd") + "'}), id="string concatenation breakout"),
    pytest.param(Echoed({"note": "\\u0041 \\n \\t \\\\ \\x41"}), id="escape sequences as text"),
    # --- line structure
    pytest.param(Echoed({"note": "line one\nline two\n"}), id="newlines"),
    pytest.param(Echoed({"note": "windows\r\nline\r\n"}), id="crlf"),
    pytest.param(Echoed({"note": "\tindented\twith tabs\t"}), id="tabs"),
    pytest.param(Echoed({"note": "a\u2028b\u2029c"}), id="unicode line and paragraph separators"),
    pytest.param(Echoed({"note": "".join(map(chr, range(1, 32))) + "\x7f\x80\x85\x9b\x9f"}), id="c0 del and c1 controls"),
    # --- templates and expressions
    pytest.param(Echoed({"note": '${file("/etc/passwd")}'}), id="interpolation"),
    pytest.param(Echoed({"note": "$${x}"}), id="escaped interpolation"),
    pytest.param(Echoed({"note": "$$${x}"}), id="dollar before escaped interpolation"),
    pytest.param(Echoed({"note": "%{ for x in [1] }x%{ endfor }"}), id="for directive"),
    pytest.param(Echoed({"note": "%{if true}yes%{endif}"}), id="if directive"),
    pytest.param(Echoed({"note": "%%{x}"}), id="escaped directive"),
    pytest.param(Echoed({"note": "open ${ and %{ never closed"}), id="unclosed template sequences"),
    pytest.param(Echoed({"note": "x ~} ${~ y ~} %{~ z"}), id="strip markers"),
    pytest.param(Echoed({"note": 'upper("x") + var.y ? local.z : null'}), id="bare expression"),
    pytest.param(Echoed({"note": '{"a": [1, 2], "b": null}'}), id="json text"),
    # --- HCL structure
    pytest.param(Echoed({"note": "<<EOF\nhello\nEOF"}), id="heredoc"),
    pytest.param(Echoed({"note": "<<-EOT\n  indented\n  EOT\n"}), id="indented heredoc"),
    pytest.param(Echoed({"note": BLOCK_INJECTION}), id="resource block injection"),
    pytest.param(Echoed({"note": '"\n  evil = "x'}), id="locals attribute injection"),
    pytest.param(Echoed({"note": "# hash comment"}), id="hash comment"),
    pytest.param(Echoed({"note": "// slash comment"}), id="slash comment"),
    pytest.param(Echoed({"note": "/* unterminated block comment"}), id="block comment start"),
    pytest.param(Echoed({"note": "*/ }\n}\n/*"}), id="block comment end"),
    # --- Unicode
    pytest.param(Echoed({"note": "abc\u202edef\u202c"}), id="rtl override"),
    pytest.param(Echoed({"note": "a\u200db 👨\u200d👩\u200d👧"}), id="zero width joiner"),
    pytest.param(Echoed({"note": "🚀🔥 deploy"}), id="emoji"),
    pytest.param(Echoed({"note": "\ufeffbom \u00a0nbsp \u3000ideographic space"}), id="bom and unusual spaces"),
    pytest.param(Echoed({"note": "q\u0323\u0307"}), id="combining chars already nfc"),
    # Terraform (cty) NFC-normalises every string; validate_parameters does it first, so the
    # stored request equals what Terraform returns.
    pytest.param(Echoed({"note": "Cafe\u0301 \u212b"}, expected_note="Caf\u00e9 \u00c5"), id="combining chars normalised"),
    # --- size
    pytest.param(Echoed({"note": '"\\${' * 1024}), id="4096 chars of quotes backslashes and interpolations"),
    pytest.param(Echoed({"note": "${" * 2048}), id="4096 dollar brace pairs"),
    pytest.param(Echoed({"note": "$" * 2048 + "{" * 2048}), id="2048 dollars then 2048 braces"),
    pytest.param(Echoed({"note": "%{" * 2048}), id="4096 percent brace pairs"),
    # --- tags: keys and values
    pytest.param(
        Echoed({"tags": {'"quoted"': "v", "${key}": "%{v}", "new\nline": "back\\slash", "}": "{", "ключ": "значение"}}),
        id="tag keys with quotes and templates",
    ),
    pytest.param(Echoed({"tags": {"a": BLOCK_INJECTION, "b": "${path.module}", "c": ""}}), id="tag values hostile"),
    pytest.param(Echoed({"tags": {"e\u0301": "e\u0301"}}, expected_tags={"\u00e9": "\u00e9"}), id="tag key normalised"),
    # --- refused: app_name must be a DNS label
    pytest.param(Refused({"app_name": 'app"'}, "app_name", "is not in the required form"), id="app name with quote"),
    pytest.param(Refused({"app_name": "${x}"}, "app_name", "is not in the required form"), id="app name interpolation"),
    # Python's `$` also matches before a trailing newline; JSON Schema's does not.
    pytest.param(Refused({"app_name": "app\n"}, "app_name", "is not in the required form"), id="app name trailing newline"),
    pytest.param(Refused({"app_name": "\u0430pp"}, "app_name", "is not in the required form"), id="app name cyrillic homoglyph"),
    pytest.param(Refused({"app_name": "a" * 32}, "app_name", "is not in the required form"), id="app name too long"),
    pytest.param(Refused({"app_name": ""}, "app_name", "is not in the required form"), id="app name empty"),
    pytest.param(Refused({"app_name": ["app"]}, "app_name", "must be a string"), id="app name list"),
    # --- refused: note
    pytest.param(Refused({"note": "x" * 4097}, "note", "must be at most 4096 characters long"), id="note too long"),
    # PostgreSQL cannot store U+0000 in text or jsonb, so the portal refuses it up front
    # (Terraform itself would carry it: see test_it_escapes_nul_when_validation_is_bypassed).
    pytest.param(Refused({"note": "a\x00b"}, "note", "must not contain NUL"), id="note nul"),
    pytest.param(Refused({"note": "lone \ud800 surrogate"}, "note", "valid Unicode"), id="note lone surrogate"),
    pytest.param(Refused({"note": ["${x}"]}, "note", "must be a string"), id="note list"),
    pytest.param(Refused({"note": {"a": "b"}}, "note", "must be a string"), id="note object"),
    # --- refused: tags
    pytest.param(Refused({"tags": {"k": "v" * 257}}, "tags", "at most 256 characters"), id="tag value too long"),
    pytest.param(Refused({"tags": {"k": {"nested": "v"}}}, "tags", "must be a string"), id="tag value object"),
    pytest.param(Refused({"tags": {"": "v"}}, "tags", 'key "": must not be empty'), id="tag key empty"),
    pytest.param(Refused({"tags": {"k\x00": "v"}}, "tags", "must not contain NUL"), id="tag key nul"),
    # --- refused: other fields
    pytest.param(Refused({"${evil}": "x"}, "${evil}", "unknown parameter"), id="unknown parameter"),
    pytest.param(Refused({"fail_on": 'network"; rm -rf /'}, "fail_on", "must be one of"), id="fail on injection"),
    pytest.param(Refused({"delay_seconds": "0; sleep 100"}, "delay_seconds", "must be an integer"), id="delay shell text"),
    pytest.param(Refused({"cpu": math.nan}, "cpu", "must be one of"), id="cpu nan"),
    pytest.param(Refused({"desired_count": math.inf}, "desired_count", "must be at most 4"), id="desired count infinity"),
]


@pytest.fixture(scope="module")
def demo():
    return load_pattern(DEMO)


def terraform(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the embedded Terraform as the portal does: fresh interpreter, explicit environment."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir.parent),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }
    return subprocess.run(
        [sys.executable, "-I", str(TFEXEC), *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )


def apply_and_read_outputs(workdir: Path, files: dict) -> dict:
    """Write the workspace, init + apply it, return `output -json` values."""
    workdir.mkdir()
    for name, content in files.items():
        (workdir / name).write_text(content, encoding="utf-8")
    for args in (["init", "-input=false", "-no-color"], ["apply", "-auto-approve", "-input=false", "-no-color"]):
        done = terraform(workdir, *args)
        assert done.returncode == 0, f"terraform {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    output = terraform(workdir, "output", "-json")
    assert output.returncode == 0, output.stderr
    return {name: item["value"] for name, item in json.loads(output.stdout).items()}


def state_addresses(workdir: Path) -> list[str]:
    """Every resource (managed or data) in the local state, by address."""
    state = json.loads((workdir / "terraform.tfstate").read_text())
    return sorted(
        f"{'data.' if resource['mode'] == 'data' else ''}{resource['type']}.{resource['name']}"
        + "".join(f"[{instance['index_key']!r}]" for instance in resource["instances"] if "index_key" in instance)
        for resource in state["resources"]
    )


@pytest.mark.parametrize("case", CASES)
def test_it_returns_hostile_values_verbatim_or_refuses_them(tmp_path, demo, case):
    if isinstance(case, Refused):
        with pytest.raises(ParameterError) as caught:
            validate_parameters(demo, case.params)
        assert case.field in caught.value.errors, caught.value.errors
        assert case.fragment in caught.value.errors[case.field]
        return

    params = validate_parameters(demo, case.params)
    files = render_workspace(demo, params, placeholder_context())
    outputs = apply_and_read_outputs(tmp_path / "ws", files)

    expected_note = case.expected_note if case.expected_note is not None else case.params.get("note", "")
    expected_tags = case.expected_tags if case.expected_tags is not None else case.params.get("tags", {})
    assert outputs["note"] == expected_note
    assert outputs["tags"] == expected_tags
    # What the portal stores is what Terraform holds.
    assert params["note"] == expected_note and params["tags"] == expected_tags
    assert unicodedata.is_normalized("NFC", outputs["note"])
    assert state_addresses(tmp_path / "ws") == DEMO_RESOURCES
    assert set(outputs) == {"app_fqdn", "app_url", "note", "tags", "network_cidr", "resource_ids"}


def test_it_has_at_least_thirty_hostile_cases():
    assert len(CASES) >= 30
    assert sum(isinstance(case.values[0], Echoed) for case in CASES) >= 30


def test_it_escapes_nul_when_validation_is_bypassed(tmp_path, demo):
    # Defence in depth: even a value that skipped validation stays a literal.
    params = {**validate_parameters(demo, {}), "note": "a\x00b${x}"}
    outputs = apply_and_read_outputs(tmp_path / "ws", render_workspace(demo, params, placeholder_context()))
    assert outputs["note"] == "a\x00b${x}"
    assert state_addresses(tmp_path / "ws") == DEMO_RESOURCES


def test_it_refuses_to_render_a_lone_surrogate_when_validation_is_bypassed(demo):
    params = {**validate_parameters(demo, {}), "note": "\udcff"}
    with pytest.raises(RenderError, match="surrogate") as caught:
        render_workspace(demo, params, placeholder_context())
    assert caught.value.path == "locals.tf.j2"


def test_it_keeps_hostile_context_values_literal(tmp_path, demo):
    # The context comes from the portal's CMDB, but it is rendered by the same rule.
    context = placeholder_context()
    context["requester"] = BLOCK_INJECTION
    context["environment"]["name"] = "${uuid()}"
    context["account"]["dns_zone"] = "%{if true}zone%{endif}"
    outputs = apply_and_read_outputs(tmp_path / "ws", render_workspace(demo, validate_parameters(demo, {}), context))
    assert outputs["app_fqdn"] == "app-${uuid()}.%{if true}zone%{endif}"
    assert state_addresses(tmp_path / "ws") == DEMO_RESOURCES
