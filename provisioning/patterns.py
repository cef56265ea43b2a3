"""The design-pattern catalog: load and check `patterns/<slug>/`.

A pattern is data (pattern.yaml, locals.tf.j2, static .tf files). Loading checks everything
that can be checked without running Terraform, so a broken pattern is reported with its file
and field when the catalog is loaded, never halfway through somebody's apply. See
patterns/README.md for the format. Checking a request's parameters against a pattern is
`provisioning.parameters`.

Must not import Django or anything from `portal/`: the catalog is used by workers, CI and the
pattern authors' tests alike.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jinja2
import jsonschema
import yaml
from provisioning.parameters import ParameterError, _human_message, _validator, validate_parameters
from provisioning.render import (
    LOCALS_FILE,
    TEMPLATE_FILE,
    RenderError,
    make_environment,
    parse_hcl,
    placeholder_context,
    render_workspace,
)

__all__ = [
    "CLOUDS",
    "EndpointSpec",
    "ParameterField",
    "Pattern",
    "PatternCatalogError",
    "PatternError",
    "load_catalog",
    "content_digest",
    "load_pattern",
    "version_key",
]

PATTERN_FILE = "pattern.yaml"
CLOUDS = ("aws", "none")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# Parameter names are used as `params.<name>` in templates and as form field names.
PARAMETER_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
# Terraform identifiers (output names).
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# Folders under the patterns root that hold shared code, not patterns.
NON_PATTERN_FOLDERS = frozenset({"modules"})

# key -> (python types, human type name); `bool` is excluded from int below.
_REQUIRED_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a string"),
    "version": ((str,), "a string"),
    "description": ((str,), "a string"),
    "cloud": ((str,), "a string"),
    "parameters": ((dict,), "a mapping (a JSON Schema)"),
    "endpoints": ((list,), "a list"),
    "expected_duration_seconds": ((int,), "an integer"),
}
_ENDPOINT_KEYS = {"output", "kind", "url_output", "fqdn"}
# Optional pattern.yaml keys.
_OPTIONAL_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    # What the portal must allocate for an environment besides its network, e.g.
    # [listener_priority] for a rule on the account's shared load-balancer listener.
    "allocations": ((list,), "a list"),
}
ALLOCATION_KINDS = frozenset({"listener_priority"})
# `source = "./modules/<name>"`: the portal copies patterns/modules/<name> into the workspace.
MODULE_SOURCE_RE = re.compile(r'source\s*=\s*"\./modules/([A-Za-z0-9_-]+)"')


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class PatternError(Exception):
    """A pattern is broken. Names the file and the field so the author can fix it.

    `path` is the file relative to the parent of the patterns root, e.g.
    "patterns/demo-ecs/pattern.yaml"; `field` is dotted ("parameters.properties.x.type") or
    "" for file-level problems; `line` is 1-based when known.
    """

    def __init__(self, path: str, field: str, message: str, line: int | None = None):
        self.path = path
        self.field = field
        self.message = message
        self.line = line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class PatternCatalogError(Exception):
    """One or more patterns of a catalog are broken; `.errors` lists every PatternError."""

    def __init__(self, errors: list[PatternError]):
        self.errors = list(errors)
        super().__init__("broken patterns:\n" + "\n".join(f"  {error}" for error in self.errors))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointSpec:
    """An output of the pattern that is an endpoint (FQDN) of the environment.

    `output` names the Terraform output holding the FQDN, `kind` says what it is ("app",
    "api", ...), `url_output` optionally names the output holding a full URL.
    """

    output: str
    kind: str
    url_output: str | None = None
    # A Jinja template of the FQDN the output will hold, rendered with the request (`params`,
    # `environment.name`, `environment.product`, `account.dns_zone`), so a taken FQDN is
    # refused at request time instead of after an apply. It must agree with the Terraform code
    # (the end-to-end tests compare it with the output); absent: known only after apply.
    fqdn: str | None = None


@dataclass(frozen=True)
class ParameterField:
    """One parameter as a form needs it. `schema` is the property's full JSON Schema."""

    name: str
    type: str | list
    default: Any
    has_default: bool
    description: str
    enum: list | None
    required: bool
    title: str
    schema: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Pattern:
    """A loaded, checked design pattern. Immutable: the catalog hands out shared instances."""

    slug: str
    name: str
    version: str
    description: str
    cloud: str
    parameters: dict
    endpoints: tuple[EndpointSpec, ...]
    expected_duration_seconds: int
    path: Path
    template: str
    files: Mapping[str, str]
    # Shared modules the pattern uses, as workspace paths ("modules/network/main.tf" -> text).
    modules: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    allocations: tuple[str, ...] = ()
    # sha256 of everything the version is made of (pattern.yaml, template, static files,
    # modules): a version is immutable once used, and this is how a changed one is noticed.
    digest: str = ""
    # Where the version came from: "bundled" (PATTERNS_DIR) or "git <tag>".
    source: str = "bundled"

    def defaults(self) -> dict:
        """The default of every parameter that has one (deep copies: callers may mutate)."""
        return {
            name: copy.deepcopy(prop["default"])
            for name, prop in self.parameters.get("properties", {}).items()
            if "default" in prop
        }

    def parameter_fields(self) -> list[ParameterField]:
        """The parameters in schema order, flattened for building forms."""
        required = set(self.parameters.get("required", ()))
        fields = []
        for name, prop in self.parameters.get("properties", {}).items():
            fields.append(
                ParameterField(
                    name=name,
                    type=prop.get("type"),
                    default=copy.deepcopy(prop.get("default")),
                    has_default="default" in prop,
                    description=prop.get("description", ""),
                    enum=list(prop["enum"]) if "enum" in prop else None,
                    required=name in required,
                    title=prop.get("title", name.replace("_", " ").capitalize()),
                    schema=MappingProxyType(copy.deepcopy(prop)),
                )
            )
        return fields


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML silently keeps the last one, which turns
    a copy-paste slip (two `default:` lines) into a pattern that means something else."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


class _Checker:
    """Collects the PatternErrors of one pattern folder, naming files consistently."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.prefix = f"{folder.parent.name}/{folder.name}" if folder.parent.name else folder.name
        self.errors: list[PatternError] = []

    def rel(self, file_name: str) -> str:
        """The path errors show: "patterns/<slug>/<file>", or the folder itself for ""."""
        return f"{self.prefix}/{file_name}" if file_name else self.prefix

    def add(self, file_name: str, field_name: str, message: str, line: int | None = None) -> None:
        self.errors.append(PatternError(self.rel(file_name), field_name, message, line))

    def read_text(self, file_name: str) -> str | None:
        try:
            return (self.folder / file_name).read_text(encoding="utf-8")
        except FileNotFoundError:
            self.add(file_name, "", "file is missing")
        except UnicodeDecodeError as exc:
            self.add(file_name, "", f"is not UTF-8 text ({exc.reason} at byte {exc.start})")
        except OSError as exc:
            self.add(file_name, "", f"cannot be read: {exc.strerror}")
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_metadata(checker: _Checker, data: Any) -> None:
    """pattern.yaml: required keys, their types, no unknown keys."""
    if not isinstance(data, dict):
        checker.add(PATTERN_FILE, "", "must be a YAML mapping of keys to values")
        return
    for key, (types, type_name) in _REQUIRED_KEYS.items():
        if key not in data:
            checker.add(PATTERN_FILE, key, "is required")
            continue
        value = data[key]
        ok = _is_int(value) if types == (int,) else isinstance(value, types)
        if not ok:
            hint = f' (quote it: {key}: "{value}")' if key == "version" and isinstance(value, (int, float)) else ""
            checker.add(PATTERN_FILE, key, f"must be {type_name}{hint}")
        elif isinstance(value, str) and not value.strip():
            checker.add(PATTERN_FILE, key, "must not be empty")
    for key in data:
        if key not in _REQUIRED_KEYS and key not in _OPTIONAL_KEYS:
            # Strict on purpose: a typo such as `expected_duration:` would otherwise be ignored.
            allowed = ", ".join([*_REQUIRED_KEYS, *_OPTIONAL_KEYS])
            checker.add(PATTERN_FILE, str(key), f"unknown key (allowed: {allowed})")
    if "allocations" in data:
        kinds = data["allocations"]
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            checker.add(PATTERN_FILE, "allocations", "must be a list of names")
        else:
            for index, kind in enumerate(kinds):
                if kind not in ALLOCATION_KINDS:
                    checker.add(PATTERN_FILE, f"allocations.{index}", f"unknown allocation {kind!r} (known: {', '.join(sorted(ALLOCATION_KINDS))})")
    if isinstance(data.get("cloud"), str) and data["cloud"] not in CLOUDS:
        checker.add(PATTERN_FILE, "cloud", f"must be one of {', '.join(CLOUDS)}")
    if _is_int(data.get("expected_duration_seconds")) and data["expected_duration_seconds"] < 1:
        checker.add(PATTERN_FILE, "expected_duration_seconds", "must be at least 1")
    if isinstance(data.get("endpoints"), list):
        for index, item in enumerate(data["endpoints"]):
            where = f"endpoints.{index}"
            if not isinstance(item, dict):
                checker.add(PATTERN_FILE, where, "must be a mapping with output, kind and url_output")
                continue
            for key in item:
                if key not in _ENDPOINT_KEYS:
                    checker.add(PATTERN_FILE, f"{where}.{key}", "unknown key (allowed: output, kind, url_output, fqdn)")
            for key in ("output", "kind"):
                if not isinstance(item.get(key), str) or not item.get(key):
                    checker.add(PATTERN_FILE, f"{where}.{key}", "is required and must be a string")
            if isinstance(item.get("kind"), str) and item["kind"] and not SLUG_RE.match(item["kind"]):
                checker.add(PATTERN_FILE, f"{where}.kind", "must be a lowercase word such as app or api")
            url_output = item.get("url_output")
            if url_output is not None and not (isinstance(url_output, str) and url_output):
                checker.add(PATTERN_FILE, f"{where}.url_output", "must be an output name or absent")
            fqdn = item.get("fqdn")
            if fqdn is not None:
                try:
                    jinja2.Environment(undefined=jinja2.StrictUndefined).parse(fqdn if isinstance(fqdn, str) else "")
                except jinja2.TemplateSyntaxError as exc:
                    checker.add(PATTERN_FILE, f"{where}.fqdn", f"not a valid template: {exc.message}")
                if not (isinstance(fqdn, str) and fqdn):
                    checker.add(PATTERN_FILE, f"{where}.fqdn", "must be a template string or absent")
            for key in ("output", "url_output"):
                name = item.get(key)
                if isinstance(name, str) and name and not IDENTIFIER_RE.match(name):
                    checker.add(PATTERN_FILE, f"{where}.{key}", f"{name!r} is not a Terraform identifier")


def _check_schema(checker: _Checker, schema: dict) -> None:
    """`parameters`: a valid Draft 2020-12 schema for a closed object of documented fields."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = ".".join(["parameters", *(str(part) for part in exc.path)])
        checker.add(PATTERN_FILE, where, f"not a valid JSON Schema: {exc.message}")
        return
    if schema.get("type") != "object":
        checker.add(PATTERN_FILE, "parameters.type", "must be 'object'")
    if schema.get("additionalProperties") is not False:
        # Closed schemas make a misspelt parameter an error instead of a silently ignored key.
        checker.add(PATTERN_FILE, "parameters.additionalProperties", "must be false")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return  # check_schema already refused this
    for name, prop in properties.items():
        where = f"parameters.properties.{name}"
        if not PARAMETER_NAME_RE.match(name):
            checker.add(PATTERN_FILE, where, "parameter names must be lowercase snake_case ([a-z_][a-z0-9_]*)")
        if not isinstance(prop, dict):
            checker.add(PATTERN_FILE, where, "must be a mapping (a JSON Schema)")
            continue
        if not isinstance(prop.get("description"), str) or not prop["description"].strip():
            checker.add(PATTERN_FILE, f"{where}.description", "is required (people see it next to the field)")
        if "type" not in prop:
            checker.add(PATTERN_FILE, f"{where}.type", "is required")
    for name in schema.get("required", []):
        if name not in properties:
            checker.add(PATTERN_FILE, "parameters.required", f"{name!r} is not a declared property")
    if checker.errors:
        return
    # Validate all defaults at once against the whole schema, so $ref/$defs resolve as they
    # will for a real request; keep only errors located inside a property.
    defaults = {name: prop["default"] for name, prop in properties.items() if "default" in prop}
    for error in _validator(schema).iter_errors(defaults):
        if error.path:
            name = str(error.path[0])
            message = _human_message(error, nested=list(error.path)[1:])
            checker.add(PATTERN_FILE, f"parameters.properties.{name}.default", message)


def _sample_parameters(checker: _Checker, schema: dict) -> dict | None:
    """Parameters to test-render the template with: defaults, or `examples[0]` for required
    parameters that have no default (a pattern may insist the requester chooses)."""
    values = {}
    for name, prop in schema.get("properties", {}).items():
        if "default" in prop:
            continue
        if name in schema.get("required", []):
            examples = prop.get("examples")
            if isinstance(examples, list) and examples:
                values[name] = copy.deepcopy(examples[0])
            else:
                checker.add(
                    PATTERN_FILE,
                    f"parameters.properties.{name}",
                    "a required parameter without a default needs `examples` so the pattern can be test-rendered",
                )
    return values


def _output_names(source: str, is_json: bool) -> set[str]:
    """Names of the `output "<name>"` blocks declared in one static file."""
    if is_json:
        outputs = json.loads(source).get("output", {})
        return set(outputs) if isinstance(outputs, dict) else set()
    names = set()
    for block in parse_hcl(source).get("output", []):
        names.update(label.strip('"') for label in block)
    return names


def _static_file_names(folder: Path) -> list[str]:
    """The files copied verbatim into every workspace (not recursive)."""
    names = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and (entry.name.endswith((".tf", ".tf.json")) or entry.name == ".terraform.lock.hcl"):
            names.append(entry.name)
    return names


def _check_pattern(folder: Path) -> tuple[Pattern | None, list[PatternError]]:
    """Load one pattern folder, collecting every error found.

    Checks run in stages; a stage whose inputs are broken is skipped, so one mistake is
    reported once rather than as a cascade.
    """
    folder = Path(folder)
    checker = _Checker(folder)
    slug = folder.name
    if not SLUG_RE.match(slug):
        checker.add(PATTERN_FILE, "", f"folder name {slug!r} is not a slug ([a-z0-9][a-z0-9-]*)")

    # Stage 1: read and parse every file on its own.
    data = None
    raw_yaml = checker.read_text(PATTERN_FILE)
    if raw_yaml is not None:
        try:
            data = yaml.load(raw_yaml, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            checker.add(PATTERN_FILE, "", f"invalid YAML: {problem}", mark.line + 1 if mark else None)
        else:
            _check_metadata(checker, data)

    template = checker.read_text(TEMPLATE_FILE)
    if template is not None:
        try:
            make_environment().parse(template, name=TEMPLATE_FILE)
        except jinja2.TemplateSyntaxError as exc:
            checker.add(TEMPLATE_FILE, "", f"template syntax error: {exc.message}", exc.lineno)

    static_names = _static_file_names(folder) if folder.is_dir() else []
    if not any(name.endswith((".tf", ".tf.json")) for name in static_names):
        checker.add("", "", "no static .tf file: a pattern needs its resources and outputs in *.tf files")
    if LOCALS_FILE in static_names:
        checker.add(LOCALS_FILE, "", "must not exist: locals.tf is rendered from locals.tf.j2")
    files: dict[str, str] = {}
    outputs: set[str] = set()
    for name in static_names:
        source = checker.read_text(name)
        if source is None:
            continue
        files[name] = source
        if name == ".terraform.lock.hcl":
            continue
        try:
            outputs |= _output_names(source, is_json=name.endswith(".tf.json"))
        except Exception as exc:  # noqa: BLE001 - python-hcl2 raises many types; see render.parse_workspace
            line = getattr(exc, "line", None) or getattr(exc, "lineno", None)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            checker.add(name, "", f"does not parse: {first}", line if isinstance(line, int) else None)
    if checker.errors:
        return None, checker.errors

    # Stage 2: the parameter schema and the endpoints' outputs.
    assert isinstance(data, dict)  # stage 1 guarantees it
    _check_schema(checker, data["parameters"])
    endpoints = tuple(
        EndpointSpec(output=item["output"], kind=item["kind"], url_output=item.get("url_output"), fqdn=item.get("fqdn"))
        for item in data["endpoints"]
    )
    for index, endpoint in enumerate(endpoints):
        for key in ("output", "url_output"):
            name = getattr(endpoint, key)
            if name is not None and name not in outputs:
                checker.add(
                    PATTERN_FILE, f"endpoints.{index}.{key}", f'output "{name}" is not declared in any static .tf file'
                )
    samples = _sample_parameters(checker, data["parameters"])
    modules = _module_files(checker, folder.parent, files)
    if checker.errors:
        return None, checker.errors

    pattern = Pattern(
        slug=slug,
        name=data["name"],
        version=data["version"],
        description=data["description"],
        cloud=data["cloud"],
        parameters=data["parameters"],
        endpoints=endpoints,
        expected_duration_seconds=data["expected_duration_seconds"],
        path=folder,
        template=template,
        files=MappingProxyType(files),
        modules=MappingProxyType(modules),
        allocations=tuple(data.get("allocations") or ()),
        digest=content_digest({PATTERN_FILE: raw_yaml, TEMPLATE_FILE: template, **files, **modules}),
    )

    # Stage 3: the template renders with the defaults and the result parses, so the first
    # real request cannot be the one that finds a typo.
    try:
        params = validate_parameters(pattern, samples)
    except ParameterError as exc:
        for name, message in exc.errors.items():
            checker.add(PATTERN_FILE, f"parameters.properties.{name}" if name else "parameters", message)
        return None, checker.errors
    try:
        render_workspace(pattern, params, placeholder_context())
    except RenderError as exc:
        # The rendered locals.tf is not a file the author wrote: point at its source.
        file_name = TEMPLATE_FILE if exc.path == LOCALS_FILE else exc.path
        prefix = "renders (with default parameters) to a locals.tf that " if exc.path == LOCALS_FILE else ""
        line = exc.line if exc.path == TEMPLATE_FILE else None
        message = prefix + exc.message if prefix else exc.message
        if exc.path == LOCALS_FILE and exc.line:
            message += f" (line {exc.line} of the rendered file)"
        checker.add(file_name, "", message, line)
        return None, checker.errors
    return pattern, []


def _module_files(checker: "_Checker", root: Path, files: Mapping[str, str]) -> dict[str, str]:
    """Every file of the shared modules the pattern uses (and the modules they use), keyed by
    its path in the workspace. Stored with the environment's code, so a delete still works
    after a module changes."""
    found: dict[str, str] = {}
    pending = [name for source in files.values() for name in MODULE_SOURCE_RE.findall(source)]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        folder = root / "modules" / name
        if not folder.is_dir():
            checker.add("", "", f'module source "./modules/{name}" does not exist under {root.name}/modules/')
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name.endswith((".tf", ".tf.json", ".tftpl", ".json", ".yaml")):
                text = path.read_text(encoding="utf-8")
                found[f"modules/{name}/{path.name}"] = text
                pending.extend(MODULE_SOURCE_RE.findall(text.replace('"../', '"./modules/')))
    return found


def content_digest(files: Mapping[str, str]) -> str:
    """sha256 over file names and contents, independent of order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        for part in (name, files[name]):
            data = part.encode("utf-8")
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return digest.hexdigest()


def version_key(version: str) -> tuple:
    """Sort key of a version string: numeric parts compare as numbers ("1.10.0" > "1.9.2"),
    a pre-release ("1.2.0-rc1") sorts before its release."""
    main, _, pre = version.lstrip("vV").partition("-")
    parts = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in main.split("."))
    return (parts, 0 if pre else 1, pre)


def load_pattern(folder: Path) -> Pattern:
    """Load and check one pattern folder; raise the first PatternError found."""
    pattern, errors = _check_pattern(Path(folder))
    if errors:
        raise errors[0]
    assert pattern is not None
    return pattern


def load_catalog(root: Path) -> dict[str, Pattern]:
    """Load every pattern under `root` (each subfolder with a pattern.yaml), keyed by slug.

    Shared folders (`modules/`) and folders without pattern.yaml are skipped. Every broken
    pattern is reported at once through PatternCatalogError, not just the first.
    """
    root = Path(root)
    if not root.is_dir():
        raise PatternCatalogError([PatternError(root.name, "", "patterns folder does not exist")])
    catalog: dict[str, Pattern] = {}
    errors: list[PatternError] = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name in NON_PATTERN_FOLDERS or not (folder / PATTERN_FILE).is_file():
            continue
        pattern, pattern_errors = _check_pattern(folder)
        errors.extend(pattern_errors)
        if pattern is not None:
            catalog[pattern.slug] = pattern
    if errors:
        raise PatternCatalogError(errors)
    return catalog
