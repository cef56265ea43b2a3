"""Turn a design pattern plus a validated request into Terraform files, safely.

Every `{{ }}` interpolation in a pattern's `locals.tf.j2` is emitted as an HCL *literal*
(`hcl_literal`), so no request value can ever become HCL syntax or a Terraform template
sequence; the whole workspace is then parsed before Terraform sees it.

Must not import Django or anything from `portal/` (the engine runs on any worker host and is
tested on its own). Must not import `provisioning.patterns` at runtime either: the catalog
imports this module to check a pattern at load time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import traceback
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import hcl2
import jinja2
from hcl2.utils import SerializationOptions

if TYPE_CHECKING:  # pragma: no cover - typing only, avoids an import cycle
    from provisioning.patterns import Pattern

__all__ = [
    "LOCALS_FILE",
    "TEMPLATE_FILE",
    "RenderError",
    "hcl_literal",
    "make_environment",
    "parse_hcl",
    "parse_workspace",
    "placeholder_context",
    "render_workspace",
]

TEMPLATE_FILE = "locals.tf.j2"
LOCALS_FILE = "locals.tf"

# A portal file is a plain file name in the workspace root: no directories, no dot-files
# that Terraform would read differently (`.terraform.lock.hcl` belongs to the pattern).
_PORTAL_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

# The escapes HCL defines for quoted strings; everything else that is not plainly printable
# becomes \uNNNN / \UNNNNNNNN below.
_SIMPLE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Unicode categories written as escapes instead of raw characters:
#   Cc      C0, DEL and C1 controls (a raw newline would end the string; others confuse
#           editors, terminals and `git diff`),
#   Zl, Zp  U+2028 / U+2029, which some tools treat as line breaks,
#   Cf      format characters: bidi overrides (U+202E), zero-width joiners, BOM. They are
#           harmless to Terraform, but the rendered code is committed and reviewed by people,
#           and invisible or reordering characters are how "Trojan Source" (CVE-2021-42574)
#           hides code from a reviewer. Escaped, the value is identical and visible.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cf"})

_PARSE_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False)


class RenderError(Exception):
    """A workspace could not be rendered or does not parse.

    `path` is the file name inside the workspace (or `locals.tf.j2` for template errors),
    `line` the 1-based line when known, `message` a human explanation.
    """

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path = path
        self.message = message
        self.line = line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


# --------------------------------------------------------------------------------------------
# HCL literals
# --------------------------------------------------------------------------------------------


def _escape_char(char: str) -> str:
    """Return the HCL source for one character inside a double-quoted string."""
    simple = _SIMPLE_ESCAPES.get(char)
    if simple is not None:
        return simple
    category = unicodedata.category(char)
    if category == "Cs":
        # A lone surrogate cannot be written as UTF-8 at all; Terraform would reject the
        # file, so refuse here with a clear error instead.
        raise ValueError(f"string contains a lone surrogate U+{ord(char):04X}")
    if category in _ESCAPED_CATEGORIES:
        code = ord(char)
        return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"
    return char


def _string_literal(text: str) -> str:
    """Quote `text` as an HCL string whose value is exactly `text`.

    Besides the character escapes, the two template introducers are doubled: HCL reads `$${`
    as a literal `${` and `%%{` as a literal `%{`, so a value can never start an
    interpolation or a directive. A lone `$` or `%` (not followed by `{`) needs no escape.
    """
    out: list[str] = ['"']
    # Iterate characters of a plain `str`: str subclasses such as markupsafe.Markup escape
    # the arguments of their own methods, which would corrupt the result.
    chars = str.__str__(text)
    length = len(chars)
    for index, char in enumerate(chars):
        if char in "$%" and index + 1 < length and chars[index + 1] == "{":
            out.append(char + char)
        else:
            out.append(_escape_char(char))
    out.append('"')
    return "".join(out)


def hcl_literal(value: Any) -> str:
    """Return the HCL literal expression for a JSON-like Python value.

    str -> quoted string (see `_string_literal`), bool -> true/false, int/float -> number
    (NaN and infinities raise ValueError), None -> null, list/tuple -> tuple constructor,
    dict with str keys -> object constructor with quoted keys. Anything else raises TypeError:
    a value we do not know how to write must never be written "somehow".
    """
    # bool first: it is a subclass of int and `True` must not become `1`.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return _string_literal(value)
    if isinstance(value, int):
        # int.__repr__ so an IntEnum or other subclass cannot supply its own text.
        return int.__repr__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no HCL literal (numbers must be finite)")
        # repr gives the shortest round-tripping form (1.5, 1e-07, 1e+20), all valid HCL.
        return float.__repr__(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(hcl_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, not {type(key).__name__}")
            items.append(f"{_string_literal(key)} = {hcl_literal(item)}")
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"{type(value).__name__} value has no HCL literal: {value!r}")


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _finalize(value: Any) -> str:
    """Jinja `finalize`: every `{{ }}` result becomes an HCL literal.

    Jinja hands finalize the Undefined object itself (it is not stringified first), so make
    StrictUndefined raise its own error, which names the missing variable.
    """
    if isinstance(value, jinja2.Undefined):
        str(value)  # raises jinja2.UndefinedError for StrictUndefined
    return hcl_literal(value)


def make_environment(template_source: str | None = None) -> jinja2.Environment:
    """Build the one Jinja2 environment used for `locals.tf.j2`.

    `finalize` turns *every* `{{ }}` output into a literal (`hcl_literal`), so a template cannot
    forget to escape; `StrictUndefined` makes a typo an error instead of an empty string;
    `autoescape` is off because HTML escaping is meaningless (and wrong) for HCL. With
    `template_source`, the environment's loader serves it under the name `locals.tf.j2`, so
    errors and tracebacks name that file.
    """
    loader = None
    if template_source is not None:
        # FunctionLoader (unlike DictLoader) sets the file name Jinja puts on template frames,
        # which `_template_line` looks for. The template never changes: always up to date.
        loader = jinja2.FunctionLoader(
            lambda name: (template_source, TEMPLATE_FILE, lambda: True) if name == TEMPLATE_FILE else None
        )
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        keep_trailing_newline=True,
    )


@functools.lru_cache(maxsize=64)
def compiled_template(template_source: str) -> jinja2.Template:
    """`locals.tf.j2` compiled once per distinct source (a pattern version's template never
    changes; compiling it was a third of every request's render). Rendering a compiled Jinja
    template is thread-safe. A template that does not compile raises, and nothing is cached."""
    return make_environment(template_source).get_template(TEMPLATE_FILE)


def _template_line(exc: BaseException) -> int | None:
    """Find the line of `locals.tf.j2` an exception was raised from, if any.

    Jinja rewrites tracebacks so template frames carry the template's name and line.
    """
    line = getattr(exc, "lineno", None)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == TEMPLATE_FILE:
            line = frame.lineno
    return line


def placeholder_context() -> dict[str, Any]:
    """A representative render context, as the portal passes it.

    Used to check a pattern at load time (it must render and parse with its defaults) and in
    tests. The shape is documented in patterns/README.md; keep the two in step.
    """
    return {
        "environment": {"name": "dev", "product": "shop", "department": "payments"},
        "account": {
            "id": "123456789012",
            "region": "eu-west-1",
            "dns_zone": "sandbox.example.internal",
            "kind": "local",
            "shared": {
                "ecs_cluster_arn": "arn:aws:ecs:eu-west-1:123456789012:cluster/sandbox",
                "alb_listener_arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/sandbox/0123456789abcdef/0123456789abcdef",
                "alb_dns_name": "sandbox-123456789.eu-west-1.elb.amazonaws.com",
                "alb_zone_id": "Z32O12XQLNTSW2",
                "alb_security_group_id": "sg-0123456789abcdef0",
                "vpc_id": "vpc-0123456789abcdef0",
                "private_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
            },
        },
        "network": {"cidr": "10.20.0.0/24"},
        "requester": "alice",
        # AWS patterns: the account's shared infrastructure and the portal's allocations.
        "allocations": {"listener_priority": 100},
    }


def render_workspace(
    pattern: Pattern,
    params: Mapping[str, Any],
    context: Mapping[str, Any],
    portal_files: Mapping[str, str] | None = None,
    *,
    parse_static: bool = True,
) -> dict[str, str]:
    """Render a pattern into a complete workspace: file name -> content.

    `params` is the dict returned by `validate_parameters` (this function does not validate
    it again); the template sees it as `params` plus every key of `context`. The result holds
    the pattern's static files, the rendered `locals.tf` and the `portal_files` (such as a
    generated `backend.tf`), which may not replace a pattern file. The whole workspace is
    parsed before it is returned (with `parse_static=False`, only the files this call produced:
    for a pattern from the catalog, whose static files were parsed when it was loaded); any
    problem raises RenderError naming the file.
    """
    portal_files = dict(portal_files or {})
    if "params" in context:
        raise RenderError(TEMPLATE_FILE, "the render context may not define 'params'")

    try:
        template = compiled_template(pattern.template)
        rendered = template.render({**context, "params": dict(params)})
    except jinja2.UndefinedError as exc:
        raise RenderError(TEMPLATE_FILE, f"undefined variable: {exc.message}", _template_line(exc)) from exc
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(TEMPLATE_FILE, f"template syntax error: {exc.message}", exc.lineno) from exc
    except (TypeError, ValueError) as exc:
        # Raised by hcl_literal (finalize): the value cannot be written as a literal.
        raise RenderError(TEMPLATE_FILE, f"cannot emit value: {exc}", _template_line(exc)) from exc

    files: dict[str, str] = dict(pattern.files)
    if LOCALS_FILE in files:
        raise RenderError(LOCALS_FILE, "the pattern may not ship its own locals.tf: it is rendered from locals.tf.j2")
    files[LOCALS_FILE] = rendered
    files.update(getattr(pattern, "modules", {}) or {})
    for name, content in portal_files.items():
        if not _PORTAL_FILE_NAME.match(name):
            raise RenderError(name, "a portal file must be a plain file name in the workspace root")
        if name in files:
            raise RenderError(name, "a portal-generated file may not overwrite a pattern file")
        files[name] = content

    if parse_static:
        parsed = parse_workspace(files)
    else:
        # The pattern's own files and modules were parsed when the catalog loaded them (they
        # cannot change afterwards); only what this request produced needs parsing now.
        static = set(pattern.files) | set(getattr(pattern, "modules", {}) or {})
        parsed = parse_workspace({name: text for name, text in files.items() if name not in static})
    _check_locals_only(parsed[LOCALS_FILE])
    return files


def _check_locals_only(parsed: dict) -> None:
    """Refuse a rendered locals.tf (as parsed) that declares anything but `locals` blocks.

    Literals already make injection impossible; this is the second lock on the door, and it
    keeps the contract plain: request values live in locals, the logic in static files.
    """
    others = sorted(key for key in parsed if key != "locals")
    if others:
        raise RenderError(LOCALS_FILE, f"may only contain locals blocks, found: {', '.join(others)}")


def _for_hcl2(source: str) -> str:
    r"""Respell HCL's template escapes so python-hcl2 parses them as HCL does.

    python-hcl2's grammar approximates `$${`: its token is `$${` + anything + `}`, so the
    valid literal "$${" (a requester typing `${` with no closing brace) fails to parse, and
    escapes inside the token are not resolved. Inside a quoted string `\u0024{` means exactly
    what `$${` means (a literal `${`; Terraform agrees), and outside strings both spellings
    are invalid, so the structure python-hcl2 sees is the structure Terraform will see.
    """
    return source.replace("$${", "\\u0024{").replace("%%{", "\\u0025{")


def parse_hcl(source: str) -> dict:
    """Parse HCL text with python-hcl2 (after `_for_hcl2`); raises whatever python-hcl2 raises."""
    return hcl2.loads(_for_hcl2(source), serialization_options=_PARSE_OPTIONS)


def parse_workspace(files: Mapping[str, str]) -> dict[str, Any]:
    """Parse every `.tf` (HCL) and `.tf.json` file of a workspace; raise RenderError naming the first bad file.

    Returns what each file parsed to, by name. Other files (the lock file, READMEs) are not
    Terraform configuration and are skipped.
    """
    parsed: dict[str, Any] = {}
    for name in sorted(files):
        content = files[name]
        if name.endswith(".tf"):
            try:
                parsed[name] = parse_hcl(content)
            except Exception as exc:  # noqa: BLE001 - see below
                # python-hcl2 raises lark's UnexpectedInput family, but also ValueError,
                # RuntimeError and friends from its transformer; whatever the type, the file
                # is not something we can vouch for, so it must stop here with its name.
                line = getattr(exc, "line", None)
                line = line if isinstance(line, int) else None
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise RenderError(name, f"does not parse as HCL: {message}", line) from exc
        elif name.endswith(".tf.json"):
            try:
                parsed[name] = json.loads(content)
            except json.JSONDecodeError as exc:
                raise RenderError(name, f"is not valid JSON: {exc.msg}", exc.lineno) from exc
    return parsed


def dns_label(text: str) -> str:
    """`text` as one DNS label the way the AWS patterns build it in Terraform (their main.tf's
    `fqdn_label`), for `fqdn` templates: lower case, runs of "-" collapsed, at most 63
    characters; a longer one keeps its first 54 (trailing "-" cut) and ends in "-" and the
    first 8 hex digits of the md5 of the whole. tests/provisioning/test_aws_patterns.py asks
    Terraform itself (`terraform console`) that both agree."""
    full = re.sub("-+", "-", str(text).lower())
    if len(full) <= 63:
        return full
    return f"{re.sub('-+$', '', full[:54])}-{hashlib.md5(full.encode()).hexdigest()[:8]}"  # noqa: S324 - a name, not security


def predict_fqdns(pattern: Pattern, context: Mapping[str, Any]) -> list[str]:
    """The FQDNs the pattern's endpoints will have for this request, from their `fqdn`
    templates (pattern.yaml); endpoints without one are left out (known only after apply).
    `context` holds `params`, `environment` and `account` as `render_workspace` sees them."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    environment.filters["dns_label"] = dns_label
    fqdns = []
    for endpoint in pattern.endpoints:
        if endpoint.fqdn:
            fqdns.append(environment.from_string(endpoint.fqdn).render(**context).strip().lower().rstrip("."))
    return fqdns
