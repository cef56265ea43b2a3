"""Static checks of the AWS design patterns and the shared Terraform modules (patterns/modules).

The AWS provider cannot be downloaded in CI, so `terraform init/validate/plan` cannot run
there. What CI checks instead, for every pattern of the catalog with `cloud: aws` (found
dynamically, so a new AWS pattern is covered the day it is added):

- it renders with representative parameters and a representative AWS render context, and
  every file (static, rendered `locals.tf`, every module) parses with python-hcl2;
- the contract between the files holds (`contract_problems` / `module_problems`):
  (a) every `local.X` used exists in the configuration's locals,
  (b) every `var.X` used is a declared variable of that module (patterns declare none),
  (c) every module call sets every required variable of the module and no unknown one,
  (d) every endpoint output of pattern.yaml is declared,
  (e) providers are pinned: every provider a configuration uses is in its
      `required_providers` with a version constraint, the AWS constraint is the same
      everywhere, `required_version` is set, and no pattern or module configures a provider
      (the portal generates `portal_provider.tf`),
  (f) module sources are local and resolve: `./modules/<x>` -> `patterns/modules/<x>`,
  (g) every `module.X.Y` names a module call X whose module has an output Y,
  (h) every `aws_x.y` / `data.aws_x.y` reference names a declared resource / data source;
- `terraform fmt -check` (embedded Terraform, no provider needed) is clean on the modules,
  the AWS patterns and a rendered workspace;
- each check fails, with a clear message, on a deliberately broken copy.

Where a local provider mirror exists (TF_PROVIDER_MIRROR, default /opt/tf-plugins, holding
registry.terraform.io/hashicorp/aws), the rendered workspaces are also `terraform init`ed
from it and `terraform validate`d, and (marked `slow`, ~5 min) applied and destroyed
against a moto server of this module's own; elsewhere those tests are skipped.
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# With `-p no:django` nothing puts the repository root on sys.path.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from provisioning.parameters import ParameterError, validate_parameters  # noqa: E402
from provisioning.patterns import EndpointSpec, Pattern, load_catalog  # noqa: E402
from provisioning.render import parse_hcl, placeholder_context, predict_fqdns, render_workspace  # noqa: E402
from tests.moto_server import MotoAWS, create_shared_infrastructure, moto_for_patterns  # noqa: E402

PATTERNS = ROOT / "patterns"
MODULES = PATTERNS / "modules"
TFEXEC = ROOT / "provisioning" / "tfexec.py"
from tests.processes import HAS_AWS_PROVIDER, NO_AWS_PROVIDER, PROVIDER_MIRROR  # noqa: E402

# Where the portal puts the shared modules in a workspace, as seen from the pattern's root.
WORKSPACE_MODULES = "modules"
# Providers built into Terraform: used without required_providers.
BUILTIN_PROVIDERS = {"terraform"}
MODULE_META_ARGUMENTS = {"source", "version", "count", "for_each", "providers", "depends_on"}

# The context keys AWS patterns use beyond placeholder_context() (patterns/README.md,
# "Context for AWS patterns").
SHARED_INFRASTRUCTURE = {
    "ecs_cluster_arn": "arn:aws:ecs:eu-west-1:123456789012:cluster/shared",
    "alb_listener_arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shared/50dc6c495c0c9188/f2f7dc8efc522ab2",
    "alb_dns_name": "shared-1234567890.eu-west-1.elb.amazonaws.com",
    "alb_zone_id": "Z32O12XQLNTSW2",
    "vpc_id": "vpc-0123456789abcdef0",
    "private_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    "alb_security_group_id": "sg-0123456789abcdef0",
}


def aws_context() -> dict:
    """A representative render context for an AWS account."""
    context = placeholder_context()
    context["account"] = {**context["account"], "kind": "aws", "shared": dict(SHARED_INFRASTRUCTURE)}
    context["allocations"] = {"listener_priority": 1234}
    return context


# Representative (non-default) values, used for every parameter a pattern declares; the
# rest keep their defaults. The environment variable holds template sequences, which must
# stay data.
REPRESENTATIVE = {
    "app_name": "shop-api",
    "container_image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:1.4.2",
    "container_port": 8080,
    "cpu": 1024,
    "memory": 4096,
    "desired_count": 2,
    "health_check_path": "/healthz?full=1",
    "db_instance_class": "db.t4g.small",
    "db_allocated_storage": 50,
    "environment_variables": {"LOG_LEVEL": "debug", "GREETING": 'hello ${name} %{ if x } "quoted" \\ back'},
}

CATALOG = load_catalog(PATTERNS)
AWS_SLUGS = sorted(slug for slug, pattern in CATALOG.items() if pattern.cloud == "aws")


def representative_parameters(pattern: Pattern) -> dict:
    properties = pattern.parameters.get("properties", {})
    return validate_parameters(pattern, {name: value for name, value in REPRESENTATIVE.items() if name in properties})


# --------------------------------------------------------------------------------------------
# The HCL reference walker
# --------------------------------------------------------------------------------------------

REFERENCE_RE = re.compile(r"(?<![\w.])(local|var|module)\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?(?:\.([A-Za-z_][\w-]*))?")
RESOURCE_RE = re.compile(r"(?<![\w.])(data\.)?((?:aws|random|tls|null|terraform)_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")


def code_of(text: str) -> str:
    """The code of an HCL expression with the literal text of its strings blanked out.

    Interpolations (`${ }`, `%{ }`) inside strings are code and kept; escaped `$${`/`%%{`
    and everything else between quotes is not, so "see var.x" in a description is no
    reference. Heredocs are not used in these patterns.
    """
    out: list[str] = []
    modes = ["code"]  # "code" or "string"; each "code" level has a brace depth
    depths = [0]
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if modes[-1] == "code":
            if char == '"':
                modes.append("string")
                out.append(" ")
            elif char == "{":
                depths[-1] += 1
                out.append(char)
            elif char == "}" and depths[-1] == 0 and len(modes) > 1:
                modes.pop()  # the end of an interpolation: back into its string
                depths.pop()
                out.append(" ")
            else:
                if char == "}":
                    depths[-1] -= 1
                out.append(char)
            index += 1
            continue
        # inside a string
        if char == "\\":
            index += 2
        elif text.startswith(("$${", "%%{"), index):
            index += 3
        elif text.startswith(("${", "%{"), index):
            modes.append("code")
            depths.append(0)
            out.append(" ")
            index += 2
        elif char == '"':
            modes.pop()
            out.append(" ")
            index += 1
        else:
            index += 1
    return "".join(out)


def expression_code(value: str) -> str:
    """python-hcl2 returns expressions as "${...}", quoted strings with their quotes."""
    if value.startswith("${") and value.endswith("}"):
        return code_of(value[2:-1])
    return code_of(value)


def walk_strings(node, path: str = ""):
    """Yield (path, string) for every string value in a python-hcl2 structure."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(value, f"{path}.{key.strip(chr(34))}" if path else key.strip('"'))
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item, path)


def unquote(value) -> str:
    return value[1:-1] if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"' else value


@dataclass
class Reference:
    file: str
    kind: str  # local, var, module, resource, data
    name: str
    attribute: str | None  # module output / resource name


@dataclass
class Configuration:
    """One Terraform module (a pattern's root or a shared module), as far as the checks need."""

    label: str  # shown in messages: "ecs-fullstack" or "modules/network"
    locals: set[str] = field(default_factory=set)
    variables: dict[str, bool] = field(default_factory=dict)  # name -> has a default
    outputs: set[str] = field(default_factory=set)
    modules: dict[str, dict] = field(default_factory=dict)  # call name -> {"source", "arguments", "file"}
    resources: set[str] = field(default_factory=set)  # "type.name"
    data: set[str] = field(default_factory=set)  # "type.name"
    required_providers: dict[str, str | None] = field(default_factory=dict)  # name -> version constraint
    required_version: str | None = None
    provider_blocks: list[tuple[str, str]] = field(default_factory=list)  # (file, provider name)
    references: list[Reference] = field(default_factory=list)

    def used_providers(self) -> dict[str, str]:
        """provider name -> first "file: type.name" that uses it (from resource/data types)."""
        used: dict[str, str] = {}
        for address in sorted(self.resources | self.data):
            provider = address.split("_", 1)[0]
            if provider not in BUILTIN_PROVIDERS:
                used.setdefault(provider, address)
        return used


@functools.lru_cache(maxsize=None)
def parse_cached(source: str) -> dict:
    """python-hcl2 is slow and every module is read by several checks: parse each text once.
    Callers must not mutate the result."""
    return parse_hcl(source)


def parse_configuration(label: str, files: dict[str, str]) -> Configuration:
    """Collect declarations and references from the `.tf` files of one module."""
    config = Configuration(label)
    for name in sorted(files):
        if not name.endswith(".tf"):
            continue
        parsed = parse_cached(files[name])
        for block in parsed.get("locals", []):
            config.locals.update(block)
        for block in parsed.get("variable", []):
            for label_, body in block.items():
                config.variables[unquote(label_)] = "default" in body
        for block in parsed.get("output", []):
            config.outputs.update(unquote(label_) for label_ in block)
        for block in parsed.get("module", []):
            for label_, body in block.items():
                config.modules[unquote(label_)] = {
                    "source": unquote(body.get("source", "")),
                    "arguments": set(body) - MODULE_META_ARGUMENTS,
                    "file": name,
                }
        for kind, target in (("resource", config.resources), ("data", config.data)):
            for block in parsed.get(kind, []):
                for type_, named in block.items():
                    target.update(f"{unquote(type_)}.{unquote(resource)}" for resource in named)
        for block in parsed.get("terraform", []):
            if "required_version" in block:
                config.required_version = unquote(block["required_version"])
            for providers in block.get("required_providers", []):
                for provider, spec in providers.items():
                    version = unquote(spec.get("version")) if isinstance(spec, dict) else unquote(spec)
                    config.required_providers[provider] = version or None
        for block in parsed.get("provider", []):
            config.provider_blocks.extend((name, unquote(provider)) for provider in block)
        for _path, value in walk_strings(parsed):
            code = expression_code(value)
            for match in REFERENCE_RE.finditer(code):
                config.references.append(Reference(name, match[1], match[2], match[3]))
            for match in RESOURCE_RE.finditer(code):
                kind = "data" if match[1] else "resource"
                config.references.append(Reference(name, kind, match[2], match[3]))
    return config


def read_tf_files(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.tf"))}


Workspace = dict[str, str]  # path in the workspace -> text, as render_workspace returns it


def split_workspace(files: Workspace) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The root's files, and every module's files by module name (`modules/<name>/<file>`)."""
    root: dict[str, str] = {}
    modules: dict[str, dict[str, str]] = {}
    for path, text in files.items():
        parts = path.split("/")
        if len(parts) == 1:
            root[path] = text
        elif len(parts) == 3 and parts[0] == WORKSPACE_MODULES:
            modules.setdefault(parts[1], {})[parts[2]] = text
        else:
            raise AssertionError(f"unexpected workspace path {path!r}")
    return root, modules


def modules_on_disk(modules_root: Path = MODULES) -> dict[str, dict[str, str]]:
    return {folder.name: read_tf_files(folder) for folder in sorted(modules_root.iterdir()) if folder.is_dir()}


def resolve_source(location: str, source: str) -> str | None:
    """The module name a module source points to in the workspace, or None.

    `location` is where the calling configuration sits in the workspace ("" for the
    pattern's root, "modules/<name>" for a shared module). Only local sources inside the
    workspace's modules/ folder are allowed.
    """
    if not source.startswith(("./", "../")):
        return None
    target = posixpath.normpath(posixpath.join(location or ".", source))
    parts = target.split("/")
    if len(parts) != 2 or parts[0] != WORKSPACE_MODULES:
        return None
    return parts[1]


# --------------------------------------------------------------------------------------------
# The contract checks
# --------------------------------------------------------------------------------------------


def configuration_problems(config: Configuration, location: str, modules: dict[str, dict[str, str]]) -> list[str]:
    """Checks (a), (b), (c), (e: per configuration), (f), (g), (h) for one configuration;
    `modules` are the module folders of its workspace (name -> file name -> text)."""
    problems: list[str] = []
    where = config.label

    def add(message: str) -> None:
        if message not in problems:
            problems.append(message)

    callee: dict[str, Configuration | None] = {}
    for call, spec in sorted(config.modules.items()):
        source = spec["source"]
        name = resolve_source(location, source)
        expected = "./modules/<name>" if not location else "../<name>"
        callee[call] = None
        if name is None:
            add(f"{where}/{spec['file']}: module \"{call}\": source {source!r} must be a local path {expected} (the portal copies patterns/modules into the workspace as ./modules)")
        elif not modules.get(name):
            exists = "exists" if (MODULES / name).is_dir() else "does not exist"
            add(f"{where}/{spec['file']}: module \"{call}\": source {source!r} resolves to modules/{name}, which is not in the workspace (patterns/modules/{name} {exists})")
        else:
            module = parse_configuration(f"modules/{name}", modules[name])
            callee[call] = module
            for variable in sorted(v for v, has_default in module.variables.items() if not has_default):
                if variable not in spec["arguments"]:
                    add(f"{where}/{spec['file']}: module \"{call}\": required variable {variable} of modules/{name} is not set")
            for argument in sorted(spec["arguments"] - set(module.variables)):
                add(f"{where}/{spec['file']}: module \"{call}\": {argument} is not a variable of modules/{name} (unknown argument)")

    for ref in config.references:
        if ref.kind == "local" and ref.name not in config.locals:
            add(f"{where}/{ref.file}: local.{ref.name} is not defined in any locals block")
        elif ref.kind == "var" and ref.name not in config.variables:
            declared = ", ".join(sorted(config.variables)) or "none"
            add(f"{where}/{ref.file}: var.{ref.name} is not a declared variable (declared: {declared})")
        elif ref.kind == "module":
            if ref.name not in config.modules:
                add(f"{where}/{ref.file}: module.{ref.name} is not a module call of this configuration")
            elif ref.attribute and callee.get(ref.name) is not None and ref.attribute not in callee[ref.name].outputs:
                add(f"{where}/{ref.file}: module.{ref.name}.{ref.attribute}: {callee[ref.name].label} has no output {ref.attribute}")
        elif ref.kind == "resource" and f"{ref.name}.{ref.attribute}" not in config.resources:
            add(f"{where}/{ref.file}: {ref.name}.{ref.attribute} is not a declared resource")
        elif ref.kind == "data" and f"{ref.name}.{ref.attribute}" not in config.data:
            add(f"{where}/{ref.file}: data.{ref.name}.{ref.attribute} is not a declared data source")

    if not config.required_version:
        add(f"{where}: terraform.required_version is not set")
    for provider, address in sorted(config.used_providers().items()):
        if provider not in config.required_providers:
            add(f"{where}: provider {provider} is used ({address}) but not declared in terraform.required_providers")
        elif not config.required_providers[provider]:
            add(f"{where}: provider {provider} has no version constraint in terraform.required_providers")
    for file_name, provider in config.provider_blocks:
        add(f"{where}/{file_name}: declares a provider \"{provider}\" block; the portal generates the provider configuration (portal_provider.tf)")
    return problems


def constraint_problems(configurations: list[Configuration]) -> list[str]:
    """(e) one version constraint per provider across the given configurations."""
    constraints: dict[str, dict[str, list[str]]] = {}
    for config in configurations:
        for provider, version in config.required_providers.items():
            constraints.setdefault(provider, {}).setdefault(version or "(none)", []).append(config.label)
    problems = []
    for provider, by_version in sorted(constraints.items()):
        if len(by_version) > 1:
            listing = "; ".join(f"{version!r} in {', '.join(labels)}" for version, labels in sorted(by_version.items()))
            problems.append(f"provider {provider} is pinned inconsistently: {listing}")
    return problems


def modules_problems(modules: dict[str, dict[str, str]], others: list[Configuration] = ()) -> list[str]:
    """Every module of a workspace (or of patterns/modules) on its own, plus the pins."""
    problems: list[str] = []
    configurations = list(others)
    for name, module_files in sorted(modules.items()):
        config = parse_configuration(f"modules/{name}", module_files)
        configurations.append(config)
        problems += configuration_problems(config, f"{WORKSPACE_MODULES}/{name}", modules)
    return problems + constraint_problems(configurations)


def module_problems(modules_root: Path = MODULES) -> list[str]:
    """The whole company module set, as it is on disk."""
    return modules_problems(modules_on_disk(modules_root))


def contract_problems(slug: str, files: Workspace, endpoints) -> list[str]:
    """Every check for one rendered pattern workspace (`files` as render_workspace returns it:
    the pattern's root files plus the shared modules it uses under modules/)."""
    root, modules = split_workspace(files)
    config = parse_configuration(slug, root)
    problems = configuration_problems(config, "", modules)
    for endpoint in endpoints:
        for name in (endpoint.output, endpoint.url_output):
            if name and name not in config.outputs:
                problems.append(f"{slug}: endpoint output {name!r} is not declared by any output block")
    return problems + modules_problems(modules, [config])


def used_modules(files: Workspace) -> set[str]:
    return set(split_workspace(files)[1])


# --------------------------------------------------------------------------------------------
# Terraform (embedded; fmt and validate need no cloud access)
# --------------------------------------------------------------------------------------------


def terraform(workdir: Path, *args: str, timeout: int = 120, input: str | None = None) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }
    return subprocess.run(
        [sys.executable, "-I", str(TFEXEC), *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout, input=input,
    )


def write_workspace(target: Path, files: Workspace) -> Path:
    """Lay a rendered workspace out as the portal does (modules/ included)."""
    for name, content in files.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return target


# --------------------------------------------------------------------------------------------
# The AWS patterns, as they are
# --------------------------------------------------------------------------------------------


def test_the_catalog_has_the_aws_patterns():
    assert {"ecs-fullstack", "ecs-service"} <= set(AWS_SLUGS)
    for slug in AWS_SLUGS:
        pattern = CATALOG[slug]
        assert [e.output for e in pattern.endpoints] == ["app_fqdn"]
        assert pattern.endpoints[0].url_output == "app_url"
        assert pattern.parameters["additionalProperties"] is False


@pytest.mark.parametrize("params", ["defaults", "representative"])
@pytest.mark.parametrize("slug", AWS_SLUGS)
def test_each_aws_pattern_renders_and_parses(slug, params):
    pattern = CATALOG[slug]
    values = validate_parameters(pattern, {}) if params == "defaults" else representative_parameters(pattern)
    files = render_workspace(pattern, values, aws_context())  # parses every file or raises
    rendered = parse_hcl(files["locals.tf"])
    assert set(rendered) == {"locals"}
    locals_ = {key: value for block in rendered["locals"] for key, value in block.items()}
    # With a complete AWS context nothing renders as null: a typo in the template that a
    # `default(none)` would swallow shows up here.
    nulls = sorted(key for key, value in locals_.items() if value is None)
    nulls += sorted(f"{key}.{inner}" for key, value in locals_.items() if isinstance(value, dict) for inner, v in value.items() if v is None)
    assert nulls == [], f"{slug}: locals rendered as null with a complete context: {nulls}"
    if params == "representative":
        # Template sequences in a value stay data ($${ / %%{), never code.
        assert "$${name}" in files["locals.tf"] and "%%{ if x }" in files["locals.tf"]
    # The workspace carries the shared modules it uses, exactly as they are on disk.
    _, modules = split_workspace(files)
    assert modules, f"{slug} uses no shared module"
    for name, module_files in modules.items():
        assert module_files == read_tf_files(MODULES / name), f"modules/{name} differs from patterns/modules/{name}"


@pytest.mark.parametrize("slug", AWS_SLUGS)
def test_each_aws_pattern_keeps_its_contract(slug):
    pattern = CATALOG[slug]
    files = render_workspace(pattern, representative_parameters(pattern), aws_context())
    assert contract_problems(slug, files, pattern.endpoints) == []


def test_the_shared_modules_keep_their_contract():
    modules = sorted(path.name for path in MODULES.iterdir() if path.is_dir())
    assert {"network", "load_balancer", "ecs_service", "ecr_repository", "database", "dns_record"} <= set(modules)
    for name in modules:
        names = {path.name for path in (MODULES / name).glob("*.tf")}
        assert {"versions.tf", "variables.tf", "outputs.tf", "main.tf"} <= names, f"modules/{name}: {sorted(names)}"
    assert module_problems() == []


def test_every_shared_module_is_used_by_an_aws_pattern():
    used = set()
    for slug in AWS_SLUGS:
        pattern = CATALOG[slug]
        used |= used_modules(render_workspace(pattern, validate_parameters(pattern, {}), aws_context()))
    assert sorted(path.name for path in MODULES.iterdir() if path.is_dir()) == sorted(used)


def test_module_variables_and_outputs_are_documented():
    for folder in sorted(path for path in MODULES.iterdir() if path.is_dir()):
        for file_name, source in read_tf_files(folder).items():
            parsed = parse_hcl(source)
            for kind in ("variable", "output"):
                for block in parsed.get(kind, []):
                    for name, body in block.items():
                        assert unquote(body.get("description", "")).strip(), f"modules/{folder.name}/{file_name}: {kind} {unquote(name)} has no description"
                        if kind == "variable":
                            assert "type" in body, f"modules/{folder.name}/{file_name}: variable {unquote(name)} has no type"


def test_aws_patterns_do_not_configure_the_provider_but_pin_it():
    for slug in AWS_SLUGS:
        config = parse_configuration(slug, read_tf_files(PATTERNS / slug))
        assert config.provider_blocks == []
        assert config.required_providers.get("aws"), f"{slug}: versions.tf must pin the aws provider"


@pytest.mark.parametrize("slug", AWS_SLUGS)
def test_each_aws_pattern_ships_a_lock_file_within_its_constraint(slug):
    """`init` is reproducible: the pattern's .terraform.lock.hcl (made from the provider
    mirror, patterns/README.md) is copied into every workspace and pins a version its
    `required_providers` allows."""
    pattern = CATALOG[slug]
    lock = pattern.files.get(".terraform.lock.hcl")
    assert lock, f"{slug}: no .terraform.lock.hcl (terraform providers lock -fs-mirror=...)"
    name = '"registry.terraform.io/hashicorp/aws"'
    [block] = [b for b in parse_hcl(lock)["provider"] if name in b]
    locked = {key: value.strip('"') if isinstance(value, str) else [h.strip('"') for h in value]
              for key, value in block[name].items()}
    major, minor, _ = (int(part) for part in locked["version"].split("."))
    assert (major, minor) >= (5, 80) and major == 5, locked["version"]  # versions.tf: ~> 5.80
    assert locked["hashes"] and all(h.startswith(("h1:", "zh:")) for h in locked["hashes"])
    rendered = render_workspace(pattern, representative_parameters(pattern), aws_context())
    assert rendered[".terraform.lock.hcl"] == lock


def test_terraform_fmt_is_clean_on_the_modules_and_the_aws_patterns():
    folders = [MODULES, *(PATTERNS / slug for slug in AWS_SLUGS)]
    for folder in folders:
        result = terraform(folder, "fmt", "-check", "-recursive", "-diff", "-no-color")
        assert result.returncode == 0, f"{folder.relative_to(ROOT)} is not fmt-clean:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("slug", AWS_SLUGS)
def test_a_rendered_aws_workspace_is_fmt_clean(tmp_path, slug):
    pattern = CATALOG[slug]
    workdir = write_workspace(tmp_path / "ws", render_workspace(pattern, representative_parameters(pattern), aws_context()))
    result = terraform(workdir, "fmt", "-check", "-recursive", "-diff", "-no-color")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_fullstack_sizes_are_fargate_combinations():
    pattern = CATALOG["ecs-fullstack"]
    assert validate_parameters(pattern, {"cpu": 512, "memory": 4096})["memory"] == 4096
    with pytest.raises(ParameterError) as refused:
        validate_parameters(pattern, {"cpu": 256, "memory": 4096})
    assert "memory" in refused.value.errors and "2048" in refused.value.errors["memory"]
    with pytest.raises(ParameterError) as reserved:
        validate_parameters(pattern, {"environment_variables": {"DB_PASSWORD": "x"}})
    assert "environment_variables" in reserved.value.errors


# --------------------------------------------------------------------------------------------
# The checks can fail: a deliberately broken copy fails each one with a clear message
# --------------------------------------------------------------------------------------------


def broken_workspace(slug: str, edits: list[tuple[str, str, str]]) -> Workspace:
    """The rendered workspace of `slug` with `edits` applied (path in the workspace, old text,
    new text): the checks see exactly what Terraform would."""
    pattern = CATALOG[slug]
    files = dict(render_workspace(pattern, representative_parameters(pattern), aws_context()))
    for path, old, new in edits:
        assert old in files[path], f"test setup: {old!r} not in {path}"
        files[path] = files[path].replace(old, new, 1)
    return files


BREAKAGES = {
    "a-undefined-local": (
        [("main.tf", "certificate_domain_name = local.app_fqdn", "certificate_domain_name = local.app_fqdm")],
        "ecs-fullstack/main.tf: local.app_fqdm is not defined in any locals block",
    ),
    "b-undeclared-variable": (
        [("modules/ecs_service/main.tf", "path                = var.health_check_path", "path                = var.health_check_paht")],
        "modules/ecs_service/main.tf: var.health_check_paht is not a declared variable",
    ),
    "b-variable-in-a-pattern": (
        [("main.tf", "listener_rule_priority = 100", "listener_rule_priority = var.priority")],
        "ecs-fullstack/main.tf: var.priority is not a declared variable (declared: none)",
    ),
    "c-missing-required-variable": (
        [("main.tf", "  host_name              = local.app_fqdn\n", "")],
        'ecs-fullstack/main.tf: module "service": required variable host_name of modules/ecs_service is not set',
    ),
    "c-unknown-argument": (
        [("main.tf", "  listener_rule_priority = 100\n", "  listener_rule_priority = 100\n  colour                 = \"blue\"\n")],
        'ecs-fullstack/main.tf: module "service": colour is not a variable of modules/ecs_service (unknown argument)',
    ),
    "e-unpinned-provider": (
        [("modules/ecr_repository/versions.tf", '      version = "~> 5.80"\n', "")],
        "modules/ecr_repository: provider aws has no version constraint in terraform.required_providers",
    ),
    "e-undeclared-provider": (
        [("modules/database/main.tf", "resource \"aws_db_subnet_group\"", "resource \"random_password\" \"master\" {\n  length = 32\n}\n\nresource \"aws_db_subnet_group\"")],
        "modules/database: provider random is used (random_password.master) but not declared in terraform.required_providers",
    ),
    "e-inconsistent-pins": (
        [("modules/dns_record/versions.tf", '"~> 5.80"', '"~> 5.0"')],
        "provider aws is pinned inconsistently: '~> 5.0' in modules/dns_record; '~> 5.80' in",
    ),
    "e-provider-block-in-pattern": (
        [("versions.tf", "terraform {", 'provider "aws" {\n  region = "eu-west-1"\n}\n\nterraform {')],
        'ecs-fullstack/versions.tf: declares a provider "aws" block; the portal generates the provider configuration',
    ),
    "e-no-required-version": (
        [("modules/ecs_cluster/versions.tf", '  required_version = ">= 1.6"\n', "")],
        "modules/ecs_cluster: terraform.required_version is not set",
    ),
    "f-parent-relative-source": (
        [("main.tf", 'source = "./modules/network"', 'source = "../modules/network"')],
        "ecs-fullstack/main.tf: module \"network\": source '../modules/network' must be a local path ./modules/<name>",
    ),
    "f-missing-module-folder": (
        [("main.tf", 'source = "./modules/network"', 'source = "./modules/netwrk"')],
        "ecs-fullstack/main.tf: module \"network\": source './modules/netwrk' resolves to modules/netwrk, which is not in the workspace (patterns/modules/netwrk does not exist)",
    ),
    "f-registry-source": (
        [("main.tf", 'source = "./modules/network"', 'source = "terraform-aws-modules/vpc/aws"')],
        "ecs-fullstack/main.tf: module \"network\": source 'terraform-aws-modules/vpc/aws' must be a local path",
    ),
    "g-unknown-module-output": (
        [("main.tf", "vpc_id                  = module.network.vpc_id", "vpc_id                  = module.network.vpc_idd")],
        "ecs-fullstack/main.tf: module.network.vpc_idd: modules/network has no output vpc_idd",
    ),
    "g-unknown-module-call": (
        [("outputs.tf", "module.ecr_repository.repository_url", "module.registry.repository_url")],
        "ecs-fullstack/outputs.tf: module.registry is not a module call of this configuration",
    ),
    "h-undeclared-resource": (
        [("modules/load_balancer/main.tf", "load_balancer_arn = aws_lb.this.arn", "load_balancer_arn = aws_lb.thiss.arn")],
        "modules/load_balancer/main.tf: aws_lb.thiss is not a declared resource",
    ),
    "h-undeclared-data-source": (
        [("modules/ecs_service/main.tf", "awslogs-region        = data.aws_region.current.name", "awslogs-region        = data.aws_region.here.name")],
        "modules/ecs_service/main.tf: data.aws_region.here is not a declared data source",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_copy_fails_the_contract_check(breakage):
    edits, expected = BREAKAGES[breakage]
    problems = contract_problems("ecs-fullstack", broken_workspace("ecs-fullstack", edits), CATALOG["ecs-fullstack"].endpoints)
    assert any(expected in problem for problem in problems), f"expected {expected!r} in:\n" + "\n".join(problems)


def test_a_broken_module_on_disk_fails_the_module_check(tmp_path):
    modules_root = tmp_path / "modules"
    shutil.copytree(MODULES, modules_root)
    path = modules_root / "network" / "outputs.tf"
    path.write_text(path.read_text().replace("aws_vpc.this.id", "aws_vpc.main.id", 1))
    assert module_problems(modules_root) == ["modules/network/outputs.tf: aws_vpc.main is not a declared resource"]


def test_an_unchanged_copy_passes_the_contract_check():
    # The control for the breakages above.
    assert contract_problems("ecs-fullstack", broken_workspace("ecs-fullstack", []), CATALOG["ecs-fullstack"].endpoints) == []


def test_a_missing_endpoint_output_fails_the_contract_check():
    # The loader refuses such a pattern already; the contract check says so on its own too.
    problems = contract_problems("ecs-fullstack", broken_workspace("ecs-fullstack", []), (EndpointSpec("app_fqdn", "app", "app_link"),))
    assert problems == ["ecs-fullstack: endpoint output 'app_link' is not declared by any output block"]


def test_literal_text_is_not_taken_for_a_reference():
    code = expression_code('"see var.nothing and local.nothing, $${var.escaped} but ${var.real}-${lower(local.real)}"')
    assert [m.group(0) for m in REFERENCE_RE.finditer(code)] == ["var.real", "local.real"]
    code = expression_code('${merge(var.a, { Name = "x module.fake.y", n = "${module.m.out}" })}')
    assert [m.group(0) for m in REFERENCE_RE.finditer(code)] == ["var.a", "module.m.out"]


def test_a_badly_formatted_module_fails_fmt(tmp_path):
    modules_root = tmp_path / "modules"
    shutil.copytree(MODULES, modules_root)
    path = modules_root / "dns_record" / "main.tf"
    text = path.read_text()
    assert '  type            = "A"' in text
    path.write_text(text.replace('  type            = "A"', '  type = "A"', 1))
    result = terraform(modules_root, "fmt", "-check", "-recursive", "-no-color")
    assert result.returncode != 0
    assert "dns_record/main.tf" in result.stdout


# --------------------------------------------------------------------------------------------
# With a local provider mirror: terraform validate for real
# --------------------------------------------------------------------------------------------

requires_mirror = pytest.mark.skipif(not HAS_AWS_PROVIDER, reason=NO_AWS_PROVIDER)


@requires_mirror
@pytest.mark.parametrize("slug", AWS_SLUGS)
def test_each_aws_pattern_passes_terraform_validate(tmp_path, slug):
    pattern = CATALOG[slug]
    workdir = write_workspace(tmp_path / "ws", render_workspace(pattern, representative_parameters(pattern), aws_context()))
    init = terraform(workdir, "init", "-backend=false", "-input=false", "-no-color", f"-plugin-dir={PROVIDER_MIRROR}", timeout=300)
    assert init.returncode == 0, init.stdout + init.stderr
    validate = terraform(workdir, "validate", "-no-color", timeout=300)
    assert validate.returncode == 0, validate.stdout + validate.stderr


@requires_mirror
@pytest.mark.parametrize("slug", AWS_SLUGS)
@pytest.mark.parametrize("app_name, product, environment_name", [
    ("shop-api", "shop", "dev"),
    ("a" * 31, "payments-platform--core-services-x", "feature-branch-with-a-long-name-x"),  # > 63: cut + md5
    ("api", "z" * 40, "eeeeeeee-ffffffffff"),  # the cut at 54 ends in "-", which is trimmed
])
def test_the_fqdn_template_gives_what_terraform_builds(tmp_path, slug, app_name, product, environment_name):
    """The pattern.yaml `fqdn` template (refused at request time when taken) and main.tf's
    `local.app_fqdn` (what apply writes) are two spellings of one rule: Terraform itself
    evaluates its side, with `terraform console`."""
    pattern = CATALOG[slug]
    params = validate_parameters(pattern, {**{k: v for k, v in REPRESENTATIVE.items() if k in pattern.parameters["properties"]}, "app_name": app_name})
    context = aws_context()
    context["environment"] = {**context["environment"], "name": environment_name, "product": product}
    context["account"]["dns_zone"] = "Sandbox.Example.COM."
    [predicted] = predict_fqdns(pattern, {**context, "params": params})
    workdir = write_workspace(tmp_path / "ws", render_workspace(pattern, params, context))
    init = terraform(workdir, "init", "-backend=false", "-input=false", "-no-color", f"-plugin-dir={PROVIDER_MIRROR}", timeout=300)
    assert init.returncode == 0, init.stdout + init.stderr
    console = terraform(workdir, "console", "-no-color", input="local.app_fqdn\n")
    assert console.returncode == 0 and console.stdout.strip().startswith('"'), console.stdout + console.stderr
    assert json.loads(console.stdout.strip()) == predicted
    assert len(predicted.split(".")[0]) <= 63


# --------------------------------------------------------------------------------------------
# With a local provider mirror: apply and destroy for real, against moto's server
# --------------------------------------------------------------------------------------------

from provisioning.aws.provider import PATTERN_SERVICES as MOTO_SERVICES  # noqa: E402


def moto_provider(endpoint_url: str, region: str) -> str:
    """A provider configuration aimed at moto (tests only: the portal's own portal_provider.tf
    assumes a role in a real account)."""
    endpoints = "\n".join(f"    {name.ljust(14)} = {json.dumps(endpoint_url)}" for name in MOTO_SERVICES)
    return (
        'provider "aws" {\n'
        f"  region                      = {json.dumps(region)}\n"
        '  access_key                  = "testing"\n'
        '  secret_key                  = "testing"\n'
        "  skip_credentials_validation = true\n"
        "  skip_metadata_api_check     = true\n"
        '  allowed_account_ids         = ["123456789012"]\n'
        "\n"
        f"  endpoints {{\n{endpoints}\n  }}\n"
        "\n"
        "  default_tags {\n"
        '    tags = { "portal" = "test", "portal:environment" = "shop/dev" }\n'
        "  }\n"
        "}\n"
    )


@pytest.fixture(scope="module")
def moto_with_managed_policies(tmp_path_factory):
    """A moto server of this module's own, set up for the patterns (PATTERNS_ENV): the shared
    session server cannot be, since moto reads those switches only from its environment."""
    with moto_for_patterns(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@requires_mirror
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("slug", AWS_SLUGS)
def test_each_aws_pattern_applies_and_destroys_against_moto(tmp_path, moto_with_managed_policies, slug):
    aws = MotoAWS(moto_with_managed_policies)
    aws.reset()
    context = aws_context()
    zone = context["account"]["dns_zone"]
    zone_id = aws.client("route53").create_hosted_zone(Name=zone, CallerReference="test")["HostedZone"]["Id"]
    context["account"]["shared"] = create_shared_infrastructure(aws, zone)
    pattern = CATALOG[slug]
    files = render_workspace(pattern, representative_parameters(pattern), context, {"portal_provider.tf": moto_provider(aws.endpoint_url, aws.region)})
    workdir = write_workspace(tmp_path / "ws", files)

    init = terraform(workdir, "init", "-backend=false", "-input=false", "-no-color", f"-plugin-dir={PROVIDER_MIRROR}", timeout=300)
    assert init.returncode == 0, init.stdout + init.stderr
    apply = terraform(workdir, "apply", "-auto-approve", "-input=false", "-no-color", timeout=800)
    (tmp_path / "apply.log").write_text(apply.stdout + apply.stderr)
    assert apply.returncode == 0, apply.stdout[-4000:] + apply.stderr
    outputs = {name: item["value"] for name, item in json.loads(terraform(workdir, "output", "-json").stdout).items()}
    assert outputs["app_fqdn"] == f"shop-api-shop-dev.{zone}"
    assert outputs["app_url"] == f"https://shop-api-shop-dev.{zone}/"
    assert outputs["ecr_repository_url"].endswith("/shop/dev/shop-api")
    records = aws.client("route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    assert any(r["Name"].rstrip(".") == outputs["app_fqdn"] and r["Type"] == "A" and "AliasTarget" in r for r in records)

    destroy = terraform(workdir, "destroy", "-auto-approve", "-input=false", "-no-color", timeout=800)
    (tmp_path / "destroy.log").write_text(destroy.stdout + destroy.stderr)
    assert destroy.returncode == 0, destroy.stdout[-4000:] + destroy.stderr
    state = json.loads((workdir / "terraform.tfstate").read_text())
    assert [r for r in state["resources"] if r["mode"] == "managed"] == []
