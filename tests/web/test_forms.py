"""The parameter form generated from a pattern's JSON Schema, and service errors mapped onto it."""

from pathlib import Path

import pytest
from django import forms

from portal.services.errors import InvalidRequest
from portal.web.forms import EnvironmentRequestForm, KeyValueField, ParameterForm, apply_service_error
from provisioning.patterns import Pattern

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["team"],
    "properties": {
        "team": {"type": "string", "description": "Owning team.", "maxLength": 20},
        "public": {"type": "boolean", "description": "Reachable from the internet.", "default": False},
        "ratio": {"type": "number", "description": "Canary share.", "minimum": 0, "maximum": 1, "default": 0.5},
        "replicas": {"type": "integer", "description": "How many.", "minimum": 1, "maximum": 5},
        "size": {"type": "string", "description": "T-shirt size.", "enum": ["s", "m", "l"], "default": "m"},
        "memory": {"type": "integer", "description": "MiB.", "enum": [512, 1024]},
        "labels": {"type": "object", "description": "Labels.", "additionalProperties": {"type": "string"}, "default": {}},
        "ports": {"type": "array", "description": "Ports.", "items": {"type": "integer"}},
        "motto": {"type": "string", "description": "Anything.", "title": "Team motto"},
    },
}


def pattern(schema=SCHEMA) -> Pattern:
    return Pattern(
        slug="test", name="Test", version="1", description="", cloud="none", parameters=schema,
        endpoints=(), expected_duration_seconds=10, path=Path("."), template="", files={},
    )


def test_each_schema_type_gets_a_fitting_field():
    form = ParameterForm(pattern())
    fields = form.fields
    assert isinstance(fields["team"], forms.CharField) and fields["team"].widget.attrs == {"required": True, "maxlength": 20}
    assert isinstance(fields["public"], forms.BooleanField) and fields["public"].initial is False
    assert isinstance(fields["ratio"], forms.FloatField) and fields["ratio"].widget.attrs["step"] == "any"
    assert isinstance(fields["replicas"], forms.IntegerField) and fields["replicas"].widget.attrs["max"] == 5
    assert isinstance(fields["size"], forms.TypedChoiceField) and fields["size"].initial == "m"
    assert fields["memory"].choices == [("", "— not set —"), ("512", "512"), ("1024", "1024")]
    assert isinstance(fields["labels"], KeyValueField)
    assert isinstance(fields["ports"], forms.JSONField)
    assert fields["motto"].label == "Team motto" and fields["team"].label == "Team"
    assert fields["replicas"].help_text == "How many."
    html = form.as_div()
    assert 'name="param-public"' in html and 'type="checkbox"' in html and 'aria-describedby="id_param-team_helptext"' in html


def test_values_are_typed_and_empty_optional_ones_left_to_the_schema_defaults():
    form = ParameterForm(pattern(), {
        "param-team": "core", "param-public": "on", "param-ratio": "0.25", "param-replicas": "",
        "param-size": "l", "param-memory": "1024", "param-labels": "a=1\n\nb = two words", "param-ports": "[80, 443]",
        "param-motto": "",
    })
    assert form.is_valid(), form.errors
    assert form.parameters() == {
        "team": "core", "public": True, "ratio": 0.25, "size": "l", "memory": 1024,
        "labels": {"a": "1", "b": "two words"}, "ports": [80, 443],
    }


def test_an_unchecked_boolean_is_false_and_a_cleared_required_string_is_sent_empty():
    form = ParameterForm(pattern(), {"param-team": "", "param-size": "s"})
    assert form.is_valid(), form.errors
    params = form.parameters()
    assert params["public"] is False and params["team"] == "" and "replicas" not in params


@pytest.mark.parametrize("text, message", [
    ("novalue", "line 1: write key=value"),
    ("a=1\na=2", "line 2: 'a' is given twice"),
    ("=x", "line 1: write key=value"),
])
def test_key_value_lines_are_checked(text, message):
    form = ParameterForm(pattern(), {"param-team": "x", "param-labels": text})
    assert not form.is_valid() and form.errors["labels"] == [message]


def test_a_refresh_keeps_typed_values():
    form = ParameterForm(pattern())
    typed = form.values_from({"param-team": "ops", "param-labels": "a=b", "param-unknown": "x"})
    assert typed["team"] == "ops" and typed["labels"] == "a=b" and typed["public"] is False
    assert "unknown" not in typed


def test_service_errors_land_on_their_fields():
    form = EnvironmentRequestForm({}, products=[], catalog={}, accounts_for=lambda _: [])
    form.is_valid()
    params = ParameterForm(pattern(), {"param-team": "x"})
    params.is_valid()
    error = InvalidRequest("Some parameters are not valid.", errors={
        "param:replicas": "must be at most 5", "param:gone": "unknown parameter", "name": "taken",
    })
    apply_service_error(error, form, params)
    assert params.errors["replicas"] == ["must be at most 5"]
    assert form.errors["name"] == ["taken"]
    assert form.non_field_errors() == ["gone: unknown parameter", "Some parameters are not valid."]


def test_a_message_without_fields_is_a_form_error():
    form = EnvironmentRequestForm({}, products=[], catalog={}, accounts_for=lambda _: [])
    form.is_valid()
    apply_service_error(InvalidRequest("The pattern could not be rendered."), form, None)
    assert "The pattern could not be rendered." in form.non_field_errors()
