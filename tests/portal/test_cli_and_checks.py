"""`manage.py provision` (the same services as the UI/API) and the pattern system check."""

import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError

from portal.models import Environment
from tests.factories import make_account, make_department, make_pool, make_product, make_superuser


@pytest.fixture
def catalog_copy(tmp_path, settings):
    root = tmp_path / "patterns"
    shutil.copytree(Path(settings.PATTERNS_DIR) / "demo-ecs", root / "demo-ecs")
    settings.PATTERNS_DIR = root
    return root


def test_check_fails_on_a_broken_pattern_naming_file_and_field(catalog_copy):
    yaml_file = catalog_copy / "demo-ecs" / "pattern.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("cloud: none", "cloud: azure"))
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")
    assert "demo-ecs/pattern.yaml" in str(caught.value) and "cloud" in str(caught.value)


def test_check_passes_on_the_shipped_patterns():
    call_command("check")


@pytest.mark.django_db
def test_create_refuses_bad_parameters_with_the_field_named():
    department = make_department("payments")
    make_pool(make_account(department), "10.90.0.0/16")
    make_product(department, slug="shop")
    make_superuser("root")
    with pytest.raises(CommandError, match="delay_seconds"):
        call_command("provision", "create", "--product", "shop", "--pattern", "demo-ecs", "--param", "delay_seconds=9000")
    with pytest.raises(CommandError, match="KEY=VALUE"):
        call_command("provision", "create", "--product", "shop", "--pattern", "demo-ecs", "--param", "oops")
    assert Environment.objects.count() == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_create_show_and_delete_from_the_command_line(web_server, celery_worker):
    department = make_department("payments")
    make_pool(make_account(department, dns_zone="cli.example.test"), "10.91.0.0/16")
    make_product(department, slug="shop")
    make_superuser("root")
    out = StringIO()
    call_command("provision", "create", "--product", "shop", "--pattern", "demo-ecs", "--name", "cli",
                 "--param", "delay_seconds=1", "--param", "note=from the CLI", stdout=out)
    text = out.getvalue()
    assert "Stage: apply" in text and "shop/cli: ready" in text
    out = StringIO()
    call_command("provision", "show", "shop/cli", stdout=out)
    assert "endpoint app-cli.cli.example.test" in out.getvalue()
    out = StringIO()
    call_command("provision", "delete", "shop/cli", stdout=out)
    assert "shop/cli: deleted" in out.getvalue()
    assert settings.PATTERNS_DIR  # the real catalog was used
