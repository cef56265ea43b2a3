"""The deployment files stay in step with the code: compose services, `.env.example`
(every variable `portal/settings.py` reads, each with a comment) and the Makefile targets."""

import re

import yaml

from tests.processes import BASE_DIR, settings_env_names


def test_compose_file_is_yaml_with_the_five_services():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())

    assert {"postgres", "redis", "web", "worker", "beat"} <= set(compose["services"])
    for name in ("web", "worker", "beat"):
        assert ".env" in str(compose["services"][name].get("env_file")), f"{name} must read .env"


def test_the_settings_parser_finds_env_helper_calls_and_os_environ(tmp_path):
    sample = tmp_path / "settings.py"
    sample.write_text(
        "import os\n"
        "A = env_str('ALPHA', '')\n"
        "B = env_int(\n    \"BETA\", 3, minimum=1)\n"
        "C = os.environ.get('GAMMA')\n"
        "D = os.environ['DELTA']\n"
        "E = os.getenv('EPSILON')\n"
    )

    assert settings_env_names(sample) == ["ALPHA", "BETA", "GAMMA", "DELTA", "EPSILON"]


def test_env_example_names_every_variable_the_settings_read_with_a_comment():
    lines = (BASE_DIR / ".env.example").read_text().splitlines()
    documented = {}
    for number, line in enumerate(lines):
        match = re.match(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            previous = lines[number - 1].strip() if number else ""
            documented[match.group(1)] = previous.startswith("#") or " # " in line
    read = settings_env_names()
    assert "DATABASE_URL" in read and "SECRET_KEY" in read  # the parser still sees settings.py

    missing = [name for name in read if name not in documented]
    uncommented = [name for name in read if name in documented and not documented[name]]

    assert not missing, f".env.example lacks {missing} (read by portal/settings.py)"
    assert not uncommented, f".env.example has no comment for {uncommented}"


def test_makefile_has_the_documented_targets():
    makefile = (BASE_DIR / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*)\s*:(?!=)", makefile, re.MULTILINE))

    assert {"run", "test", "install", "migrate", "bench", "clean", "help"} <= targets


def _dockerfile_env() -> dict[str, str]:
    """NAME=value pairs of the Dockerfile's ENV instructions."""
    text = (BASE_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    pairs = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            pairs.update(dict(re.findall(r"([A-Z_]+)=(\S+)", line)))
    return pairs


def test_check_deploy_is_clean_for_the_containers_production_settings(tmp_path):
    import secrets
    import subprocess
    import sys

    env = {name: value for name, value in _dockerfile_env().items() if name.startswith("SECURE_")}
    assert env["SECURE_SSL_REDIRECT"] == "1" and int(env["SECURE_HSTS_SECONDS"]) >= 31536000
    env.update({
        "PATH": "/usr/bin:/bin", "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "portal.example.com", "PORTAL_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    })
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=BASE_DIR, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "no issues" in result.stdout, result.stdout + result.stderr


def test_without_the_https_settings_check_deploy_names_what_is_missing(tmp_path):
    import secrets
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(64),
           "PORTAL_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=BASE_DIR, env=env,
                            capture_output=True, text=True)
    found = set(re.findall(r"security\.W\d+", result.stdout + result.stderr))
    # Cookies are secure by default outside DEBUG; HTTPS itself must be asked for.
    assert found == {"security.W004", "security.W008"}, result.stdout + result.stderr
