"""Tests for provisioning.redact: registered secrets and well-known credential shapes never
survive into recorded text, environments or parsed JSON."""

import json

from provisioning.redact import REDACTED, Redactor, is_secret_name


def test_it_replaces_every_occurrence_of_a_registered_secret():
    redactor = Redactor(["hunter2-password"])

    assert redactor.redact("a hunter2-password b hunter2-password") == f"a {REDACTED} b {REDACTED}"


def test_it_ignores_empty_and_very_short_secrets():
    redactor = Redactor(["", "abc", "x"])
    redactor.add("")

    assert redactor.redact("abc x true 80") == "abc x true 80"


def test_a_secret_added_later_is_redacted_too():
    redactor = Redactor()
    redactor.add("s3cr3t-value")

    assert "s3cr3t-value" not in redactor.redact("value=s3cr3t-value")


def test_a_longer_secret_containing_a_shorter_one_is_replaced_whole():
    redactor = Redactor(["abcd", "abcd-efgh-ijkl"])

    assert redactor.redact("x abcd-efgh-ijkl y") == f"x {REDACTED} y"


def test_each_line_of_a_multi_line_secret_is_redacted():
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"
    redactor = Redactor([key])

    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in redactor.redact("line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC")
    assert redactor.redact(key) == REDACTED


def test_a_secret_is_redacted_in_its_json_and_go_escaped_forms():
    secret = 'pa"ss&word<1>'
    redactor = Redactor([secret])
    json_line = json.dumps({"@message": f"out: {secret}"})
    go_line = json_line.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")

    for line in (json_line, go_line):
        redacted = redactor.redact(line)
        assert json.loads(redacted)["@message"] == f"out: {REDACTED}"


def test_it_redacts_github_tokens_without_registration():
    redactor = Redactor()
    text = (
        "ghp_" + "a" * 36 + " gho_" + "B1" * 18 + " github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"
    )

    assert redactor.redact(text) == f"{REDACTED} {REDACTED} {REDACTED}"


def test_it_redacts_aws_access_key_ids_and_secret_keys():
    redactor = Redactor()

    assert redactor.redact("id AKIAIOSFODNN7EXAMPLE and ASIAY34FZKBOKMUTVV7A") == f"id {REDACTED} and {REDACTED}"
    assert (
        redactor.redact("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        == f"aws_secret_access_key = {REDACTED}"
    )
    assert redactor.redact('{"AWS_SECRET_ACCESS_KEY":"abc/def+ghi"}') == f'{{"AWS_SECRET_ACCESS_KEY":"{REDACTED}"}}'


def test_it_redacts_authorization_headers_but_keeps_the_scheme():
    redactor = Redactor()

    assert redactor.redact("Authorization: Basic dXNlcjpwYXNz") == f"Authorization: Basic {REDACTED}"
    assert redactor.redact("authorization: Bearer eyJhbGciOi.eyJzdWIi.sig-_") == f"authorization: Bearer {REDACTED}"


def test_it_redacts_the_password_of_a_url():
    redactor = Redactor()

    assert (
        redactor.redact("address=https://run-42:pa55word@portal.example/state/7")
        == f"address=https://run-42:{REDACTED}@portal.example/state/7"
    )
    assert redactor.redact("https://portal.example:8443/state/7") == "https://portal.example:8443/state/7"


def test_ordinary_text_is_left_alone():
    redactor = Redactor(["hunter2-password"])
    text = "terraform_data.a: Creation complete after 0s [id=7040915b-76e3-a99d-8610-8204bbe3e661]"

    assert redactor.redact(text) == text


def test_redact_env_hides_secret_named_values_and_redacts_the_rest_by_value():
    redactor = Redactor(["run-secret-1"])
    env = {
        "TF_HTTP_PASSWORD": "anything",
        "AWS_SECRET_ACCESS_KEY": "x",
        "GITHUB_TOKEN": "y",
        "aws_access_key_id": "z",
        "GOOGLE_CREDENTIALS": "{}",
        "EMPTY_PASSWORD": "",
        "TF_HTTP_ADDRESS": "https://portal/state?k=run-secret-1",
        "PATH": "/usr/bin:/bin",
    }

    assert redactor.redact_env(env) == {
        "TF_HTTP_PASSWORD": REDACTED,
        "AWS_SECRET_ACCESS_KEY": REDACTED,
        "GITHUB_TOKEN": REDACTED,
        "aws_access_key_id": REDACTED,
        "GOOGLE_CREDENTIALS": REDACTED,
        "EMPTY_PASSWORD": "",
        "TF_HTTP_ADDRESS": f"https://portal/state?k={REDACTED}",
        "PATH": "/usr/bin:/bin",
    }
    assert env["TF_HTTP_PASSWORD"] == "anything"  # the input is not modified


def test_redact_data_walks_nested_json():
    redactor = Redactor(["hunter2-password"])
    data = {"a": ["x hunter2-password", {"hunter2-password": 1, "n": None, "b": True}]}

    assert redactor.redact_data(data) == {"a": [f"x {REDACTED}", {REDACTED: 1, "n": None, "b": True}]}


def test_secret_names():
    assert is_secret_name("TF_HTTP_PASSWORD")
    assert is_secret_name("tf_var_api_token")
    assert not is_secret_name("TF_HTTP_USERNAME")
    assert not is_secret_name("PATH")
