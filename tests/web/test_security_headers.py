"""Browser security headers (issue 12): a Content-Security-Policy on every page, whose script
nonce is the one the page's own inline script carries; Swagger UI needs no inline script."""

import re

import pytest

pytestmark = pytest.mark.django_db


def test_pages_carry_a_csp_whose_nonce_the_inline_script_uses(client):
    response = client.get("/login/")
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    scripts = re.findall(rb"<script([^>]*)>", response.content)
    inline = [attrs for attrs in scripts if b"src=" not in attrs]
    assert inline and all(f'nonce="{nonce}"'.encode() in attrs for attrs in inline)


def test_the_api_docs_page_has_no_inline_script(client, django_user_model):
    user = django_user_model.objects.create_user("reader", password="pw-for-tests-123")
    client.force_login(user)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert all(b"src=" in attrs for attrs in re.findall(rb"<script([^>]*)>", response.content))
