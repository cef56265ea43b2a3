"""Tests for provisioning.patterns: loading and checking patterns (every broken pattern names
its file and field, before any Terraform runs), the catalog, and the demo-ecs pattern's
behaviour under real Terraform (outputs, delay, failure drills). Request parameters are
tests/provisioning/test_parameters.py."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# With `-p no:django` nothing puts the repository root on sys.path (pytest-django does it via
# manage.py); these tests must run without Django.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from provisioning.parameters import ParameterError, validate_parameters  # noqa: E402
from provisioning.patterns import (  # noqa: E402
    EndpointSpec,
    PatternCatalogError,
    PatternError,
    load_catalog,
    load_pattern,
)
from provisioning.render import placeholder_context, render_workspace  # noqa: E402

PATTERNS = ROOT / "patterns"
DEMO = PATTERNS / "demo-ecs"
TFEXEC = ROOT / "provisioning" / "tfexec.py"
DEMO_RESOURCES = ["database", "dns_record", "image_repository", "listener_rule", "load_balancer", "network", "service"]


@pytest.fixture(scope="module")
def demo():
    return load_pattern(DEMO)


def copy_demo(tmp_path: Path, name: str = "demo-ecs") -> Path:
    """A private copy of demo-ecs under <tmp>/patterns/<name>, to break one thing in."""
    target = tmp_path / "patterns" / name
    shutil.copytree(DEMO, target)
    return target


def edit(folder: Path, file_name: str, old: str, new: str) -> None:
    path = folder / file_name
    text = path.read_text()
    assert old in text, f"test setup: {old!r} not in {file_name}"
    path.write_text(text.replace(old, new, 1))


# ------------------------------------------------------------------------- loading


def test_it_loads_the_demo_pattern(demo):
    assert demo.slug == "demo-ecs"
    assert demo.version == "1.1.0"
    assert demo.cloud == "none"
    assert demo.endpoints == (EndpointSpec(
        output="app_fqdn", kind="app", url_output="app_url",
        fqdn="{{ params.app_name }}-{{ environment.name }}.{{ account.dns_zone }}",
    ),)
    assert set(demo.files) == {"main.tf", "outputs.tf", "versions.tf"}
    assert demo.parameters["additionalProperties"] is False
    assert 10 <= demo.expected_duration_seconds <= 60
    assert demo.defaults() == {
        "app_name": "app",
        "container_image": "public.ecr.aws/nginx/nginx:latest",
        "cpu": 256,
        "desired_count": 1,
        "note": "",
        "tags": {},
        "delay_seconds": 0,
        "fail_on": "",
        "fail_on_destroy": "",
        "state_padding_kib": 0,
    }


def test_it_describes_parameter_fields_for_forms(demo):
    fields = {field.name: field for field in demo.parameter_fields()}
    assert list(fields)[:3] == ["app_name", "container_image", "cpu"]
    assert fields["cpu"].enum == [256, 512, 1024]
    assert fields["cpu"].type == "integer"
    assert fields["delay_seconds"].default == 0
    assert fields["delay_seconds"].schema["maximum"] == 600
    assert fields["fail_on"].enum[0] == ""
    assert all(field.description and field.has_default and not field.required for field in fields.values())


def test_it_loads_every_pattern_of_the_real_catalog():
    catalog = load_catalog(PATTERNS)
    assert "demo-ecs" in catalog
    assert "modules" not in catalog
    assert all(slug == pattern.slug for slug, pattern in catalog.items())


def test_it_skips_shared_modules_and_folders_without_pattern_yaml(tmp_path):
    copy_demo(tmp_path)
    (tmp_path / "patterns" / "modules" / "vpc").mkdir(parents=True)
    (tmp_path / "patterns" / "modules" / "vpc" / "main.tf").write_text("locals {\n}\n")
    (tmp_path / "patterns" / "work-in-progress").mkdir()
    (tmp_path / "patterns" / "README.md").write_text("# patterns\n")
    assert list(load_catalog(tmp_path / "patterns")) == ["demo-ecs"]


def test_it_reports_every_broken_pattern_of_a_catalog_at_once(tmp_path):
    copy_demo(tmp_path, "good")
    edit(copy_demo(tmp_path, "bad-cloud"), "pattern.yaml", "cloud: none", "cloud: gcp")
    (copy_demo(tmp_path, "no-template") / "locals.tf.j2").unlink()
    with pytest.raises(PatternCatalogError) as caught:
        load_catalog(tmp_path / "patterns")
    assert [str(error) for error in caught.value.errors] == [
        "patterns/bad-cloud/pattern.yaml: cloud: must be one of aws, none",
        "patterns/no-template/locals.tf.j2: file is missing",
    ]


def test_it_reports_several_mistakes_of_one_pattern_together(tmp_path):
    folder = copy_demo(tmp_path)
    edit(folder, "pattern.yaml", "cloud: none", "cloud: gcp")
    edit(folder, "pattern.yaml", "expected_duration_seconds: 30\n", "")
    with pytest.raises(PatternCatalogError) as caught:
        load_catalog(tmp_path / "patterns")
    assert {(error.field, error.message) for error in caught.value.errors} == {
        ("cloud", "must be one of aws, none"),
        ("expected_duration_seconds", "is required"),
    }


def _rewrite(file_name, text):
    return lambda folder: (folder / file_name).write_text(text)


def _delete(*names):
    def apply(folder):
        for name in names:
            (folder / name).unlink()

    return apply


# The demo pattern's whole `endpoints:` block, as pattern.yaml spells it.
DEMO_ENDPOINTS = (
    "endpoints:\n  - output: app_fqdn\n    kind: app\n    url_output: app_url\n"
    "    # As main.tf builds it (local.app_fqdn): known before the apply, so a taken one is refused.\n"
    '    fqdn: "{{ params.app_name }}-{{ environment.name }}.{{ account.dns_zone }}"\n'
)


def _edit(file_name, old, new):
    return lambda folder: edit(folder, file_name, old, new)


def _require_app_name_without_default(folder):
    # A required parameter without a default cannot be test-rendered unless it gives examples.
    edit(folder, "pattern.yaml", "      default: app\n", "")
    edit(folder, "pattern.yaml", "  additionalProperties: false\n", "  additionalProperties: false\n  required: [app_name]\n")


BROKEN = [
    # break it, file, field, message fragment
    pytest.param(
        _edit("pattern.yaml", "cloud: none", "cloud: [none"),
        "pattern.yaml", "", "invalid YAML",
        id="bad yaml",
    ),
    pytest.param(
        _edit("pattern.yaml", "cloud: none", "cloud: none\ncloud: aws"),
        "pattern.yaml", "", "duplicate key 'cloud'",
        id="duplicate yaml key",
    ),
    pytest.param(
        _rewrite("pattern.yaml", "- name: x\n"),
        "pattern.yaml", "", "must be a YAML mapping",
        id="yaml is a list",
    ),
    pytest.param(
        _delete("pattern.yaml"),
        "pattern.yaml", "", "file is missing",
        id="missing pattern.yaml",
    ),
    pytest.param(
        _edit("pattern.yaml", "expected_duration_seconds: 30\n", ""),
        "pattern.yaml", "expected_duration_seconds", "is required",
        id="missing key",
    ),
    pytest.param(
        _edit("pattern.yaml", "description: >-", "summary: >-"),
        "pattern.yaml", "description", "is required",
        id="missing description",
    ),
    pytest.param(
        _edit("pattern.yaml", "cloud: none", "cloud: none\nexpected_duration: 5"),
        "pattern.yaml", "expected_duration", "unknown key",
        id="unknown key",
    ),
    pytest.param(
        _edit("pattern.yaml", 'version: "1.1.0"', "version: 1.0"),
        "pattern.yaml", "version", "must be a string",
        id="version is a number",
    ),
    pytest.param(
        _edit("pattern.yaml", "cloud: none", "cloud: gcp"),
        "pattern.yaml", "cloud", "must be one of aws, none",
        id="unknown cloud",
    ),
    pytest.param(
        _edit("pattern.yaml", "expected_duration_seconds: 30", "expected_duration_seconds: soon"),
        "pattern.yaml", "expected_duration_seconds", "must be an integer",
        id="duration not an integer",
    ),
    pytest.param(
        _edit("pattern.yaml", DEMO_ENDPOINTS, "endpoints: app_fqdn\n"),
        "pattern.yaml", "endpoints", "must be a list",
        id="endpoints not a list",
    ),
    pytest.param(
        _edit("pattern.yaml", "    kind: app\n", ""),
        "pattern.yaml", "endpoints.0.kind", "is required",
        id="endpoint without kind",
    ),
    pytest.param(
        _edit("pattern.yaml", "output: app_fqdn", "output: app_hostname"),
        "pattern.yaml", "endpoints.0.output", 'output "app_hostname" is not declared',
        id="endpoint output not declared",
    ),
    pytest.param(
        _edit("pattern.yaml", '    fqdn: "{{ params.app_name }}', '    fqdn: "{{ params.app_name '),
        "pattern.yaml", "endpoints.0.fqdn", "not a valid template",
        id="endpoint fqdn not a template",
    ),
    pytest.param(
        _edit("pattern.yaml", "url_output: app_url", "url_output: url"),
        "pattern.yaml", "endpoints.0.url_output", 'output "url" is not declared',
        id="endpoint url_output not declared",
    ),
    pytest.param(
        _edit("pattern.yaml", "parameters:\n  type: object", "parameters:\n  type: array"),
        "pattern.yaml", "parameters.type", "must be 'object'",
        id="parameters not an object schema",
    ),
    pytest.param(
        _edit("pattern.yaml", "      type: integer\n      title: CPU units", "      type: int\n      title: CPU units"),
        "pattern.yaml", "parameters.properties.cpu.type", "not a valid JSON Schema",
        id="parameters not a valid schema",
    ),
    pytest.param(
        _edit("pattern.yaml", "  additionalProperties: false\n  properties:", "  properties:"),
        "pattern.yaml", "parameters.additionalProperties", "must be false",
        id="parameters open to extra keys",
    ),
    pytest.param(
        _edit("pattern.yaml", "      description: Fargate CPU units of one task (1024 = one vCPU).\n", ""),
        "pattern.yaml", "parameters.properties.cpu.description", "is required",
        id="property without description",
    ),
    pytest.param(
        _edit("pattern.yaml", "      type: integer\n      title: CPU units\n", "      title: CPU units\n"),
        "pattern.yaml", "parameters.properties.cpu.type", "is required",
        id="property without type",
    ),
    pytest.param(
        _edit("pattern.yaml", "    app_name:\n", "    App-Name:\n"),
        "pattern.yaml", "parameters.properties.App-Name", "snake_case",
        id="property name not snake_case",
    ),
    pytest.param(
        _edit("pattern.yaml", "  additionalProperties: false\n", "  additionalProperties: false\n  required: [colour]\n"),
        "pattern.yaml", "parameters.required", "'colour' is not a declared property",
        id="required name not declared",
    ),
    pytest.param(
        _edit("pattern.yaml", "      maximum: 600\n      default: 0", "      maximum: 600\n      default: 601"),
        "pattern.yaml", "parameters.properties.delay_seconds.default", "must be at most 600",
        id="default out of range",
    ),
    pytest.param(
        _edit("pattern.yaml", "      default: app\n", "      default: App\n"),
        "pattern.yaml", "parameters.properties.app_name.default", "is not in the required form",
        id="default breaks its pattern",
    ),
    pytest.param(
        _edit("pattern.yaml", "      default: 256", "      default: 300"),
        "pattern.yaml", "parameters.properties.cpu.default", "must be one of: 256, 512, 1024",
        id="default not in enum",
    ),
    pytest.param(
        _require_app_name_without_default,
        "pattern.yaml", "parameters.properties.app_name", "needs `examples`",
        id="required without default or example",
    ),
    pytest.param(
        _delete("locals.tf.j2"),
        "locals.tf.j2", "", "file is missing",
        id="missing template",
    ),
    pytest.param(
        _edit("locals.tf.j2", "  cpu               = {{ params.cpu }}", "  cpu               = {{ params.cpu }\n"),
        "locals.tf.j2", "", "template syntax error",
        id="jinja syntax error",
    ),
    pytest.param(
        _edit("locals.tf.j2", "locals {", "{% if true %}\nlocals {"),
        "locals.tf.j2", "", "template syntax error",
        id="unclosed jinja block",
    ),
    pytest.param(
        _edit("locals.tf.j2", "params.note", "params.notes"),
        "locals.tf.j2", "", "undefined variable",
        id="undefined template variable",
    ),
    pytest.param(
        _edit("locals.tf.j2", "{{ params.state_padding_kib }}\n}\n", "{{ params.state_padding_kib }}\n"),  # no closing brace
        "locals.tf.j2", "", "does not parse",
        id="rendered hcl does not parse",
    ),
    pytest.param(
        _edit("locals.tf.j2", "= {{ params.note }}", '= "{{ params.note }}"'),
        "locals.tf.j2", "", "does not parse",
        id="interpolation inside quotes",
    ),
    pytest.param(
        _edit("locals.tf.j2", "locals {", 'resource "terraform_data" "x" {\n}\nlocals {'),
        "locals.tf.j2", "", "only contain locals",
        id="template declares a resource",
    ),
    pytest.param(
        _delete("main.tf", "outputs.tf", "versions.tf"),
        "", "", "no static .tf file",
        id="no static tf file",
    ),
    pytest.param(
        _edit("main.tf", "locals {", "locals {{"),
        "main.tf", "", "does not parse",
        id="static file does not parse",
    ),
    pytest.param(
        _rewrite("locals.tf", "locals {\n}\n"),
        "locals.tf", "", "must not exist",
        id="static locals.tf",
    ),
]
@pytest.mark.parametrize(("break_it", "file_name", "field", "fragment"), BROKEN)
def test_it_names_the_file_and_field_of_a_broken_pattern(tmp_path, monkeypatch, break_it, file_name, field, fragment):
    folder = copy_demo(tmp_path)
    break_it(folder)

    def no_processes(*args, **kwargs):
        raise AssertionError("loading a pattern must not start a process (Terraform)")

    monkeypatch.setattr(subprocess, "Popen", no_processes)
    with pytest.raises(PatternError) as caught:
        load_pattern(folder)
    error = caught.value
    expected_path = f"patterns/demo-ecs/{file_name}" if file_name else "patterns/demo-ecs"
    assert (error.path, error.field) == (expected_path, field), str(error)
    assert fragment in error.message
    assert str(error).startswith(expected_path)


def test_it_gives_the_line_of_a_yaml_syntax_error(tmp_path):
    folder = copy_demo(tmp_path)
    edit(folder, "pattern.yaml", "cloud: none", "cloud: [none")
    line = next(n for n, text in enumerate((folder / "pattern.yaml").read_text().splitlines(), 1) if "cloud: [none" in text)
    with pytest.raises(PatternError) as caught:
        load_pattern(folder)
    assert caught.value.line is not None and caught.value.line >= line
    assert str(caught.value).startswith(f"patterns/demo-ecs/pattern.yaml:{caught.value.line}: invalid YAML")


def test_it_gives_the_line_of_a_template_error(tmp_path):
    folder = copy_demo(tmp_path)
    edit(folder, "locals.tf.j2", "params.note", "params.notes")
    line = next(n for n, text in enumerate((folder / "locals.tf.j2").read_text().splitlines(), 1) if "params.notes" in text)
    with pytest.raises(PatternError) as caught:
        load_pattern(folder)
    assert caught.value.line == line
    assert "notes" in caught.value.message


def test_it_accepts_a_required_parameter_that_gives_an_example(tmp_path):
    folder = copy_demo(tmp_path)
    edit(folder, "pattern.yaml", "      default: app\n", "      examples: [shop]\n")
    edit(folder, "pattern.yaml", "  additionalProperties: false\n", "  additionalProperties: false\n  required: [app_name]\n")
    pattern = load_pattern(folder)
    assert "app_name" not in pattern.defaults()
    with pytest.raises(ParameterError) as caught:
        validate_parameters(pattern, {})
    assert caught.value.errors == {"app_name": "is required"}


def test_it_refuses_a_folder_name_that_is_not_a_slug(tmp_path):
    folder = copy_demo(tmp_path, "Demo_ECS")
    with pytest.raises(PatternError, match="is not a slug"):
        load_pattern(folder)


# ------------------------------------------------------------------------- demo-ecs under Terraform


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
        [sys.executable, "-I", str(TFEXEC), *args, *(["-no-color"] if args[0] in ("init", "apply", "destroy") else [])],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )


def demo_workspace(tmp_path: Path, demo, params: dict, context: dict | None = None) -> Path:
    workdir = tmp_path / "ws"
    workdir.mkdir()
    files = render_workspace(demo, validate_parameters(demo, params), context or placeholder_context())
    for name, content in files.items():
        (workdir / name).write_text(content)
    assert terraform(workdir, "init", "-input=false").returncode == 0
    return workdir


def state_resources(workdir: Path) -> list[str]:
    state_file = workdir / "terraform.tfstate"
    if not state_file.exists():
        return []
    state = json.loads(state_file.read_text())
    return sorted(resource["name"] for resource in state["resources"] if resource["mode"] == "managed")


def test_it_applies_the_demo_and_returns_its_outputs(tmp_path, demo):
    workdir = demo_workspace(tmp_path, demo, {"app_name": "shop-api"})
    fmt = terraform(workdir, "fmt", "-check", "-diff")
    assert fmt.returncode == 0, fmt.stdout  # static files and the rendered locals.tf are fmt-clean
    applied = terraform(workdir, "apply", "-auto-approve", "-input=false")
    assert applied.returncode == 0, applied.stderr
    outputs = {name: item["value"] for name, item in json.loads(terraform(workdir, "output", "-json").stdout).items()}
    assert outputs["app_fqdn"] == "shop-api-dev.sandbox.example.internal"
    assert outputs["app_url"] == "https://shop-api-dev.sandbox.example.internal/"
    assert outputs["network_cidr"] == "10.20.0.0/24"
    assert outputs["note"] == "" and outputs["tags"] == {}
    assert sorted(outputs["resource_ids"]) == DEMO_RESOURCES
    assert state_resources(workdir) == DEMO_RESOURCES
    assert terraform(workdir, "destroy", "-auto-approve", "-input=false").returncode == 0
    assert state_resources(workdir) == []


def test_it_spreads_the_delay_over_the_seven_resources(tmp_path, demo):
    workdir = demo_workspace(tmp_path, demo, {"delay_seconds": 5})
    applied = terraform(workdir, "apply", "-auto-approve", "-input=false")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count('"sleep 0.714"]') == 7


def test_it_fails_the_apply_at_the_fail_on_resource_and_keeps_what_was_created(tmp_path, demo):
    workdir = demo_workspace(tmp_path, demo, {"fail_on": "database"})
    applied = terraform(workdir, "apply", "-auto-approve", "-input=false")
    assert applied.returncode != 0
    assert "drill: fail_on=database" in applied.stderr
    created = state_resources(workdir)
    assert "network" in created and "database" in created  # database is kept, tainted
    assert "service" not in created  # it depends on the database
    destroyed = terraform(workdir, "destroy", "-auto-approve", "-input=false")
    assert destroyed.returncode == 0, destroyed.stderr  # the rollback succeeds
    assert state_resources(workdir) == []


def test_it_fails_the_destroy_at_the_fail_on_destroy_resource(tmp_path, demo):
    workdir = demo_workspace(tmp_path, demo, {"fail_on_destroy": "service"})
    assert terraform(workdir, "apply", "-auto-approve", "-input=false").returncode == 0
    destroyed = terraform(workdir, "destroy", "-auto-approve", "-input=false")
    assert destroyed.returncode != 0
    assert "drill: fail_on_destroy=service" in destroyed.stderr
    left = state_resources(workdir)
    assert "service" in left and "network" in left  # nothing is forgotten
    assert "dns_record" not in left  # destroyed before the failure (nothing depends on it)
