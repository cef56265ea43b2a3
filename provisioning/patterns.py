"""The design-pattern catalog: load and check `patterns/<slug>/`, validate request parameters.

A pattern is data (pattern.yaml, locals.tf.j2, static .tf files). Loading checks everything
that can be checked without running Terraform, so a broken pattern is reported with its file
and field when the catalog is loaded, never halfway through somebody's apply. See
patterns/README.md for the format.

Must not import Django or anything from `portal/`: the catalog is used by workers, CI and the
pattern authors' tests alike.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jinja2
import jsonschema
import yaml
from provisioning.render import (
    LOCALS_FILE,
    TEMPLATE_FILE,
    RenderError,
    hcl_literal,
    make_environment,
    parse_hcl,
    placeholder_context,
    render_workspace,
)

__all__ = [
    "CLOUDS",
    "EndpointSpec",
    "ParameterError",
    "ParameterField",
    "Pattern",
    "PatternCatalogError",
    "PatternError",
    "load_catalog",
    "load_pattern",
    "validate_parameters",
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
_ENDPOINT_KEYS = {"output", "kind", "url_output"}
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


class ParameterError(Exception):
    """A request's parameters do not fit the pattern's schema.

    `.errors` maps a parameter name to a human message; the "" key holds object-level errors.
    """

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name or '(parameters)'}: {message}" for name, message in self.errors.items()))


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
                    checker.add(PATTERN_FILE, f"{where}.{key}", "unknown key (allowed: output, kind, url_output)")
            for key in ("output", "kind"):
                if not isinstance(item.get(key), str) or not item.get(key):
                    checker.add(PATTERN_FILE, f"{where}.{key}", "is required and must be a string")
            if isinstance(item.get("kind"), str) and item["kind"] and not SLUG_RE.match(item["kind"]):
                checker.add(PATTERN_FILE, f"{where}.kind", "must be a lowercase word such as app or api")
            url_output = item.get("url_output")
            if url_output is not None and not (isinstance(url_output, str) and url_output):
                checker.add(PATTERN_FILE, f"{where}.url_output", "must be an output name or absent")
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
        EndpointSpec(output=item["output"], kind=item["kind"], url_output=item.get("url_output"))
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


# --------------------------------------------------------------------------------------------
# Request parameters
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _ecma_regex(pattern: str) -> re.Pattern:
    r"""Compile a JSON Schema `pattern` so it means what JSON Schema (ECMA-262) says.

    jsonschema uses Python's `re.search` as is, and two differences matter for validation:
    Python's `$` also matches *before a trailing newline*, so "app\n" passed
    `^[a-z][a-z0-9-]{0,30}$`; and Python's `\d`/`\w` match any Unicode digit or letter,
    so "١٢" passed `^\d+$`. Outside character classes `$` becomes `\Z`, and the pattern is
    compiled with re.ASCII.
    """
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            out.append(pattern[index : index + 2])
            index += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            # Python reads a `]` right after `[` or `[^` as a literal, not as the end.
            lead = 2 if pattern[index + 1 : index + 2] == "^" else 1
            if pattern[index + lead : index + lead + 1] == "]":
                out.append(pattern[index : index + lead + 1])
                index += lead + 1
                continue
        elif char == "$":
            char = r"\Z"
        out.append(char)
        index += 1
    return re.compile("".join(out), re.ASCII)


def _pattern_keyword(validator, pattern, instance, schema):
    """The `pattern` keyword with ECMA-262 anchors and classes (see `_ecma_regex`)."""
    if not validator.is_type(instance, "string"):
        return
    try:
        matched = _ecma_regex(pattern).search(instance)
    except re.error as exc:
        yield jsonschema.ValidationError(f"the schema's pattern {pattern!r} is not a valid regular expression: {exc}")
        return
    if not matched:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# The validator for pattern parameters: Draft 2020-12 with the corrected `pattern` keyword.
ParameterValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern_keyword})


def _validator(schema: dict) -> jsonschema.protocols.Validator:
    return ParameterValidator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "empty",
}


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _human_message(error: jsonschema.ValidationError, nested: list) -> str:
    """A short message a requester understands, for one jsonschema error."""
    kind, expected = error.validator, error.validator_value
    if kind == "type":
        types = expected if isinstance(expected, list) else [expected]
        message = "must be " + " or ".join(_TYPE_NAMES.get(t, t) for t in types)
    elif kind == "maximum":
        message = f"must be at most {expected}"
    elif kind == "minimum":
        message = f"must be at least {expected}"
    elif kind == "exclusiveMaximum":
        message = f"must be less than {expected}"
    elif kind == "exclusiveMinimum":
        message = f"must be greater than {expected}"
    elif kind == "maxLength":
        message = f"must be at most {expected} characters long"
    elif kind == "minLength":
        message = "must not be empty" if expected == 1 else f"must be at least {expected} characters long"
    elif kind == "enum":
        message = "must be one of: " + ", ".join(_show(choice) for choice in expected)
    elif kind == "const":
        message = f"must be {_show(expected)}"
    elif kind == "pattern":
        message = f"must match the pattern {expected}"
    elif kind == "format":
        message = f"must be a valid {expected}"
    elif kind == "maxItems":
        message = f"must have at most {expected} items"
    elif kind == "minItems":
        message = f"must have at least {expected} items"
    elif kind == "maxProperties":
        message = f"must have at most {expected} entries"
    elif kind == "minProperties":
        message = f"must have at least {expected} entries"
    elif kind == "required":
        message = error.message.replace("is a required property", "is required")
    elif kind == "additionalProperties" and expected is False:
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})), key=str)
        message = "unknown key" + ("s " if len(extra) > 1 else " ") + ", ".join(_show(key) for key in extra)
    else:
        message = error.message
    if "propertyNames" in error.schema_path:
        # The key itself is wrong (not its value): say which key.
        message = f"key {_show(error.instance)}: {message}"
    if nested:
        # e.g. tags -> '"owner": must be at most 256 characters long'
        message = ".".join(_show(part) if isinstance(part, str) else f"[{part}]" for part in nested) + ": " + message
    return message


def _normalise(value: Any, problems: list[str]) -> Any:
    """Return `value` with every string (and object key) in Unicode NFC; note problems.

    Terraform stores every string NFC-normalised (cty does it), so a request holding
    "e" + U+0301 would come back from `terraform output` as "é". Normalising first keeps what
    the portal stores equal to what Terraform returns. NUL is refused because PostgreSQL
    cannot store U+0000 in text or jsonb (the request and its outputs are stored there), and
    lone surrogates are not text at all. Code points unassigned in this Python's Unicode
    database are refused: NFC depends on the Unicode version, and Terraform's is newer, so only
    for characters both know is "what is stored is what Terraform returns" a promise.
    """
    if isinstance(value, str):
        if "\x00" in value:
            problems.append("must not contain NUL characters (U+0000)")
            return value
        if any(0xD800 <= ord(char) <= 0xDFFF for char in value):
            problems.append("must be valid Unicode text (it contains a lone surrogate)")
            return value
        unknown = sorted({char for char in value if unicodedata.category(char) == "Cn"})
        if unknown:
            # Terraform normalises with newer Unicode tables than this Python's: a character
            # unknown here (e.g. U+10EFD, Unicode 15) may be reordered there, and what the
            # portal stored would no longer be what Terraform returns (issue 12).
            shown = ", ".join(f"U+{ord(char):04X}" for char in unknown[:5])
            problems.append(
                f"contains {shown}: character(s) unassigned in the portal's Unicode tables "
                f"(Unicode {unicodedata.unidata_version}), which Terraform could normalise differently"
            )
            return value
        return unicodedata.normalize("NFC", value)
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            new_key = _normalise(key, problems) if isinstance(key, str) else key
            if new_key in result:
                problems.append(f"has two keys that are the same text after Unicode normalisation: {_show(new_key)}")
            result[new_key] = _normalise(item, problems)
        return result
    if isinstance(value, (list, tuple)):
        return [_normalise(item, problems) for item in value]
    return value


def validate_parameters(pattern: Pattern, values: Mapping) -> dict:
    """Check a request's parameters against the pattern; return the complete, normalised dict.

    Missing parameters get their schema defaults (top level), strings are NFC-normalised,
    integral floats of integer parameters become ints, and everything is validated with the
    pattern's JSON Schema. Every value must also be writable as an HCL literal. Problems raise
    ParameterError with one human message per field (unknown names get "unknown parameter").
    """
    if not isinstance(values, Mapping):
        raise ParameterError({"": "parameters must be an object of name -> value"})
    if any(not isinstance(key, str) for key in values):
        raise ParameterError({"": "parameter names must be strings"})
    schema = pattern.parameters
    properties = schema.get("properties", {})
    errors: dict[str, str] = {}

    def add(name: str, message: str) -> None:
        # Several problems with one field are joined, in the order found.
        errors[name] = f"{errors[name]}; {message}" if name in errors and message not in errors[name] else message

    result: dict[str, Any] = {}
    for name, value in values.items():
        problems: list[str] = []
        result[name] = _normalise(value, problems)
        for problem in problems:
            add(name, problem)
    for name, default in pattern.defaults().items():
        result.setdefault(name, default)

    for error in _validator(schema).iter_errors(result):
        path = list(error.path)
        if path:
            add(str(path[0]), _human_message(error, nested=path[1:]))
        elif error.validator == "additionalProperties":
            for name in sorted(set(result) - set(properties)):
                add(name, "unknown parameter")
        elif error.validator == "required":
            for name in error.validator_value:
                if name not in result:
                    add(name, "is required")
        else:
            add("", _human_message(error, nested=[]))

    for name, value in result.items():
        if name in errors:
            continue
        prop = properties.get(name, {})
        if prop.get("type") == "integer" and isinstance(value, float) and value.is_integer():
            # JSON Schema counts 5.0 as an integer; Terraform should see 5, and so should the CMDB.
            result[name] = value = int(value)
        try:
            hcl_literal(value)
        except (TypeError, ValueError) as exc:
            add(name, f"cannot be used as a value: {exc}")

    if errors:
        raise ParameterError(errors)
    return result
