"""Request parameters: check a request's values against a pattern's JSON Schema.

`validate_parameters` is the one place that decides whether a request's parameters are
acceptable: schema defaults, Unicode (NFC, no NUL, no lone surrogates, no code points this
Python's Unicode tables do not know), ECMA-262 `pattern` semantics, integral floats, and
whether every value can be written as an HCL literal. Problems come back as a
`ParameterError` with one human message per field.

The catalog (`provisioning.patterns`) uses the same validator to check a pattern's defaults
when it loads it. Must not import Django or anything from `portal/`, nor
`provisioning.patterns` at runtime (the catalog imports this module).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jsonschema
from provisioning.render import hcl_literal

if TYPE_CHECKING:
    from provisioning.patterns import Pattern

__all__ = ["ParameterError", "ParameterValidator", "validate_parameters"]


class ParameterError(Exception):
    """A request's parameters do not fit the pattern's schema.

    `.errors` maps a parameter name to a human message; the "" key holds object-level errors.
    """

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name or '(parameters)'}: {message}" for name, message in self.errors.items()))


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
        # The regular expression means nothing to a requester: the parameter's description
        # says the rule in words (issue 13).
        described = error.schema.get("description") if isinstance(error.schema, dict) else None
        message = f"is not in the required form: {described}" if described else "is not in the required form"
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
