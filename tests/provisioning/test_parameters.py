"""Tests for provisioning.parameters: a request's parameters checked against a pattern's
schema (defaults, one human message per field, Unicode normalisation and refusals)."""

import sys
from pathlib import Path

import pytest

# With `-p no:django` nothing puts the repository root on sys.path (pytest-django does it via
# manage.py); these tests must run without Django.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from provisioning.parameters import ParameterError, validate_parameters  # noqa: E402
from provisioning.patterns import load_pattern  # noqa: E402

DEMO = ROOT / "patterns" / "demo-ecs"


@pytest.fixture(scope="module")
def demo():
    return load_pattern(DEMO)


def test_it_applies_defaults_and_returns_the_complete_dict(demo):
    assert validate_parameters(demo, {}) == demo.defaults()
    values = validate_parameters(demo, {"cpu": 512, "tags": {"team": "payments"}})
    assert values == {**demo.defaults(), "cpu": 512, "tags": {"team": "payments"}}


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        ({"delay_seconds": 601, "colour": "red"}, {"delay_seconds": "must be at most 600", "colour": "unknown parameter"}),
        ({"delay_seconds": "10"}, {"delay_seconds": "must be an integer"}),
        ({"delay_seconds": 1.5}, {"delay_seconds": "must be an integer"}),
        ({"delay_seconds": -1}, {"delay_seconds": "must be at least 0"}),
        ({"desired_count": 5}, {"desired_count": "must be at most 4"}),
        ({"desired_count": True}, {"desired_count": "must be an integer"}),
        ({"cpu": 300}, {"cpu": "must be one of: 256, 512, 1024"}),
        (
            {"fail_on": "everything"},
            {
                "fail_on": 'must be one of: "", "network", "load_balancer", "listener_rule", '
                '"image_repository", "service", "database", "dns_record"'
            },
        ),
        (
            {"app_name": "App"},
            {
                "app_name": "is not in the required form: First label of the service's DNS name "
                "(lowercase letters, digits and dashes, starting with a letter)."
            },
        ),
        ({"app_name": None}, {"app_name": "must be a string"}),
        ({"note": "x" * 4097}, {"note": "must be at most 4096 characters long"}),
        ({"tags": {"team": 1}}, {"tags": '"team": must be a string'}),
        ({"tags": {"team": "x" * 257}}, {"tags": '"team": must be at most 256 characters long'}),
        ({"tags": ["team"]}, {"tags": "must be an object"}),
        ({"tags": {"k" * 129: "v"}}, {"tags": f'key "{"k" * 129}": must be at most 128 characters long'}),
        ({"colour": "red", "size": 1}, {"colour": "unknown parameter", "size": "unknown parameter"}),
    ],
)
def test_it_explains_each_bad_parameter_by_field(demo, values, errors):
    with pytest.raises(ParameterError) as caught:
        validate_parameters(demo, values)
    assert caught.value.errors == errors


@pytest.mark.parametrize("values", [None, [], "delay_seconds=1", {1: "x"}])
def test_it_refuses_parameters_that_are_not_an_object_of_names(demo, values):
    with pytest.raises(ParameterError) as caught:
        validate_parameters(demo, values)
    assert list(caught.value.errors) == [""]


def test_it_turns_an_integral_float_into_an_integer(demo):
    values = validate_parameters(demo, {"delay_seconds": 5.0})
    assert values["delay_seconds"] == 5 and type(values["delay_seconds"]) is int


def test_it_normalises_text_to_nfc_like_terraform_does(demo):
    values = validate_parameters(demo, {"note": "Cafe\u0301", "tags": {"cre\u0300me": "bru\u0302le\u0301e"}})
    assert values["note"] == "Caf\u00e9"
    assert values["tags"] == {"cr\u00e8me": "br\u00fbl\u00e9e"}


def test_it_refuses_characters_newer_than_its_unicode_tables(demo):
    # U+10EFD (Unicode 15) is a combining mark to Terraform, unknown to Python 3.11: the
    # stored "q\u0301\U00010EFD" came back from Terraform reordered (issue 12).
    import unicodedata

    if unicodedata.category("\U00010EFD") != "Cn":
        pytest.skip(f"this Python's Unicode {unicodedata.unidata_version} knows U+10EFD")
    with pytest.raises(ParameterError) as raised:
        validate_parameters(demo, {"note": "q\u0301\U00010EFD", "tags": {"k": "ok"}})
    assert "U+10EFD" in raised.value.errors["note"] and unicodedata.unidata_version in raised.value.errors["note"]
    with pytest.raises(ParameterError) as raised:
        validate_parameters(demo, {"tags": {"\U00010EFD": "v"}})
    assert "U+10EFD" in str(raised.value.errors)
    # Private-use characters are assigned (to nobody): accepted, and left alone by NFC.
    assert validate_parameters(demo, {"note": "\ue000"})["note"] == "\ue000"


def test_it_refuses_tag_keys_that_collide_after_normalisation(demo):
    with pytest.raises(ParameterError) as caught:
        validate_parameters(demo, {"tags": {"e\u0301": "1", "\u00e9": "2"}})
    assert "same text after Unicode normalisation" in caught.value.errors["tags"]


def test_it_does_not_share_mutable_defaults(demo):
    first = validate_parameters(demo, {})
    first["tags"]["leak"] = "yes"
    assert validate_parameters(demo, {})["tags"] == {}
    assert demo.parameters["properties"]["tags"]["default"] == {}
