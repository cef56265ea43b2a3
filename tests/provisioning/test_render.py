"""Tests for provisioning.render: HCL literals (per type, escapes, round trip through a real
HCL parser) and workspace rendering (strict templates, portal files, parsing)."""

import enum
import math
import sys
from pathlib import Path
from types import MappingProxyType

import hcl2
import pytest
from hcl2.utils import SerializationOptions

# With `-p no:django` nothing puts the repository root on sys.path (pytest-django does it via
# manage.py); these tests must run without Django.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from provisioning.patterns import Pattern, load_pattern  # noqa: E402
from provisioning.render import (  # noqa: E402
    RenderError,
    hcl_literal,
    parse_workspace,
    placeholder_context,
    render_workspace,
)

DEMO = ROOT / "patterns" / "demo-ecs"
_VALUE_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def parse_literal(literal: str):
    """Parse `x = <literal>` with python-hcl2 and return x's value.

    `$${` / `%%{` are respelt as the equivalent `\\u0024{` / `\\u0025{` first, as
    render.parse_workspace does: python-hcl2's grammar mis-reads some valid `$${` strings.
    """
    source = f"x = {literal}\n".replace("$${", "\\u0024{").replace("%%{", "\\u0025{")
    return hcl2.loads(source, serialization_options=_VALUE_OPTIONS)["x"]


def make_pattern(template: str, files: dict | None = None) -> Pattern:
    """A minimal in-memory pattern for render tests (no folder, no load-time checks)."""
    files = {"outputs.tf": 'output "x" {\n  value = local.x\n}\n'} if files is None else files
    return Pattern(
        slug="t",
        name="t",
        version="1",
        description="t",
        cloud="none",
        parameters={"type": "object", "additionalProperties": False, "properties": {}},
        endpoints=(),
        expected_duration_seconds=1,
        path=Path("/nonexistent"),
        template=template,
        files=MappingProxyType(files),
    )


class Colour(enum.IntEnum):
    RED = 7


# ------------------------------------------------------------------------- hcl_literal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", '"plain"'),
        ("", '""'),
        ('say "hi"', r'"say \"hi\""'),
        ("C:\\temp\\", r'"C:\\temp\\"'),
        ("a\nb\rc\td", r'"a\nb\rc\td"'),
        ("${x}", '"$${x}"'),
        ("%{x}", '"%%{x}"'),
        ("$${x}", '"$$${x}"'),
        ("100% $ {x} %", '"100% $ {x} %"'),
        ("\x00\x1b\x7f\x85\x9f", r'"\u0000\u001B\u007F\u0085\u009F"'),
        ("\u2028\u2029", r'"\u2028\u2029"'),
        ("\u202e\u200d\ufeff", r'"\u202E\u200D\uFEFF"'),
        ("\U000e0041", r'"\U000E0041"'),
        ("é 🚀 ш", '"é 🚀 ш"'),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-42, "-42"),
        (10**30, "1000000000000000000000000000000"),
        (Colour.RED, "7"),
        (1.5, "1.5"),
        (-0.25, "-0.25"),
        (1e20, "1e+20"),
        (None, "null"),
        ([], "[]"),
        ([1, "a", None, [True]], '[1, "a", null, [true]]'),
        ((1, 2), "[1, 2]"),
        ({}, "{}"),
        ({"k": "v", "n": 1}, '{ "k" = "v", "n" = 1 }'),
        ({'"${k}"': {"x": []}}, r'{ "\"$${k}\"" = { "x" = [] } }'),
    ],
)
def test_it_writes_each_type_as_the_expected_literal(value, expected):
    assert hcl_literal(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'quote " and backslash \\ and trailing \\',
        "new\nline\r\n\ttab",
        "${file(\"/etc/passwd\")} $${x} %{if true}y%{endif} %%{z} ~}",
        "\x01\x7f\x85\u2028\u2029\u202e\u200d\U000e0041",
        "emoji 🚀👨‍👩‍👧 and e\u0301",
        "$" * 7 + "{" * 3 + "${" * 50,
        0,
        -3,
        2.5,
        True,
        None,
        ["a", 1, [False, None]],
        {"a": {"b": ["c", "${d}"]}, 'k"\n': "%{v}"},
    ],
)
def test_it_parses_back_to_the_same_value(value):
    assert parse_literal(hcl_literal(value)) == value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "lone \ud800 surrogate"])
def test_it_refuses_values_without_a_literal_with_value_error(value):
    with pytest.raises(ValueError):
        hcl_literal(value)


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", {1: "non-string key"}, Path("/x"), [object()]])
def test_it_refuses_unknown_types_with_type_error(value):
    with pytest.raises(TypeError):
        hcl_literal(value)


def test_it_treats_markup_as_plain_text():
    # markupsafe.Markup escapes the arguments of its own str methods; the literal must not care.
    from markupsafe import Markup

    assert hcl_literal(Markup('a "b" <c>')) == r'"a \"b\" <c>"'


# ------------------------------------------------------------------------- rendering


def test_it_renders_every_interpolation_as_a_literal():
    pattern = make_pattern('locals {\n  x = {{ params.v }}\n  r = {{ requester }}\n}\n')
    files = render_workspace(pattern, {"v": '"}\nresource "x" "y" {'}, placeholder_context())
    assert files["locals.tf"] == 'locals {\n  x = "\\"}\\nresource \\"x\\" \\"y\\" {"\n  r = "alice"\n}\n'


def test_it_returns_static_files_locals_and_portal_files():
    pattern = make_pattern("locals {\n  x = 1\n}\n")
    backend = 'terraform {\n  backend "http" {}\n}\n'
    files = render_workspace(pattern, {}, placeholder_context(), {"backend.tf": backend})
    assert files == {"outputs.tf": pattern.files["outputs.tf"], "locals.tf": "locals {\n  x = 1\n}\n", "backend.tf": backend}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("locals {\n  x = {{ params.missing }}\n}\n", "missing"),
        ("locals {\n  x = {{ nowhere }}\n}\n", "nowhere"),
        ("locals {\n  x = {{ environment.colour }}\n}\n", "colour"),
    ],
)
def test_it_names_the_template_and_the_undefined_variable(template, message):
    with pytest.raises(RenderError) as caught:
        render_workspace(make_pattern(template), {}, placeholder_context())
    assert caught.value.path == "locals.tf.j2"
    assert message in caught.value.message
    assert caught.value.line == 2


def test_it_refuses_an_interpolation_written_inside_quotes():
    # `"{{ x }}"` renders to `""alice""`: the literal rule makes this a parse error, not a bug.
    pattern = make_pattern('locals {\n  x = "{{ requester }}"\n}\n')
    with pytest.raises(RenderError) as caught:
        render_workspace(pattern, {}, placeholder_context())
    assert caught.value.path == "locals.tf"


def test_it_refuses_a_locals_file_that_declares_more_than_locals():
    pattern = make_pattern('locals {\n  x = 1\n}\nresource "terraform_data" "sneaky" {\n}\n')
    with pytest.raises(RenderError, match="only contain locals") as caught:
        render_workspace(pattern, {}, placeholder_context())
    assert caught.value.path == "locals.tf"


def test_it_refuses_a_value_that_has_no_literal():
    pattern = make_pattern("locals {\n  x = {{ params.v }}\n}\n")
    with pytest.raises(RenderError, match="cannot emit") as caught:
        render_workspace(pattern, {"v": math.nan}, placeholder_context())
    assert (caught.value.path, caught.value.line) == ("locals.tf.j2", 2)


@pytest.mark.parametrize(
    ("portal_files", "path"),
    [
        ({"outputs.tf": "# replaced\n"}, "outputs.tf"),
        ({"locals.tf": "locals {}\n"}, "locals.tf"),
        ({"../escape.tf": ""}, "../escape.tf"),
        ({"sub/dir.tf": ""}, "sub/dir.tf"),
        ({"backend.tf": "terraform {\n"}, "backend.tf"),
    ],
)
def test_it_refuses_bad_portal_files(portal_files, path):
    pattern = make_pattern("locals {\n  x = 1\n}\n")
    with pytest.raises(RenderError) as caught:
        render_workspace(pattern, {}, placeholder_context(), portal_files)
    assert caught.value.path == path


def test_it_refuses_a_context_that_shadows_params():
    with pytest.raises(RenderError, match="params"):
        render_workspace(make_pattern("locals {}\n"), {}, {**placeholder_context(), "params": {}})


@pytest.mark.parametrize(
    ("files", "bad"),
    [
        ({"a.tf": "locals {\n  x = 1\n}\n", "b.tf": "locals {\n  x = \n"}, "b.tf"),
        ({"a.tf": 'output "x" {\n  value = "unterminated\n}\n'}, "a.tf"),
        ({"a.tf": "locals {\n}\n", "c.tf.json": "{not json"}, "c.tf.json"),
    ],
)
def test_it_names_the_file_that_does_not_parse(files, bad):
    with pytest.raises(RenderError) as caught:
        parse_workspace(files)
    assert caught.value.path == bad
    assert str(caught.value).startswith(bad)


def test_it_ignores_files_that_are_not_terraform_configuration():
    parse_workspace({".terraform.lock.hcl": "# lock\n", "README.md": "{{{", "main.tf": "locals {\n}\n"})


def test_it_gives_a_placeholder_context_with_the_documented_shape():
    context = placeholder_context()
    assert set(context) == {"environment", "account", "network", "requester", "allocations"}
    assert set(context["environment"]) == {"name", "product", "department"}
    assert set(context["account"]) == {"id", "region", "dns_zone", "kind", "shared"}
    assert set(context["network"]) == {"cidr"}
    assert set(context["allocations"]) == {"listener_priority"}
    assert isinstance(context["requester"], str)


def test_it_renders_demo_ecs_with_every_request_value_in_locals():
    pattern = load_pattern(DEMO)
    context = placeholder_context()
    context["network"]["cidr"] = None  # a pattern must cope with "no network allocated"
    files = render_workspace(pattern, pattern.defaults(), context)
    assert set(files) == {"locals.tf", "main.tf", "outputs.tf", "versions.tf"}
    parsed = hcl2.loads(files["locals.tf"], serialization_options=_VALUE_OPTIONS)
    assert list(parsed) == ["locals"]
    values = parsed["locals"][0]
    assert {name: values[name] for name in pattern.defaults()} == pattern.defaults()
    assert values["network_cidr"] is None
    assert values["environment_name"] == "dev"
