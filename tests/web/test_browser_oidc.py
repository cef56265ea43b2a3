"""Signing in through the identity provider in real Chromium: the portal (its own gunicorn,
configured for the provider, passwords switched off) sends the browser to a real OpenID
provider's login page (node-oidc-provider, tests/oidc/conftest.py) and the person lands on
the environment list as themselves, a member of the department their group names.

Screenshots go to tests/artifacts/screenshots/ (ignored by git).
"""

import pytest
from django.contrib.auth import get_user_model

from tests.factories import make_department, make_environment, make_product
from tests.oidc.conftest import start_provider
from tests.processes import ProcessStartError, free_port, gunicorn_process
from tests.web.browser import Screenshots, browser, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def oidc_portal(portal_env, process_log_dir):
    """A provider and a gunicorn of the portal configured for it with PORTAL_LOCAL_LOGIN=0
    (the session's `web_server` keeps the default configuration for the other tests)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with start_provider(redirect_uris=[f"{url}/oidc/callback/"], name="oidc-provider-browser") as provider:
        env = {**portal_env, **provider.settings_env(), "PORTAL_URL": url, "PORTAL_LOCAL_LOGIN": "0"}
        web = gunicorn_process(env, process_log_dir, port=port, name="web-oidc")
        try:
            web.start()
        except ProcessStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield {"url": url, "provider": provider}
        finally:
            web.stop()


def test_signing_in_through_the_provider_lands_on_the_environment_list_as_that_user(page, oidc_portal):
    shot = Screenshots("oidc-sign-in")
    url, provider = oidc_portal["url"], oidc_portal["provider"]
    payments = make_department("payments", name="Payments")
    make_environment(make_product(payments, slug="shop", name="Shop"), name="checkout-dev")
    provider.set_user("grace", groups=["sandbox-payments"])

    page.goto(f"{url}/")
    assert page.url == f"{url}/login/?next=/"
    assert page.get_by_label("Password").count() == 0  # passwords are off in this portal
    shot(page, "login")
    page.get_by_role("link", name="Sign in with Test IdP").click()

    page.wait_for_url(f"{provider.issuer}/interaction/*")
    shot(page, "provider-login")
    page.get_by_label("Username").fill("grace")
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(f"{url}/")
    shot(page, "environments")
    assert page.get_by_role("heading", name="Environments").is_visible()
    assert page.locator(".usermenu__name").inner_text() == "grace"
    assert page.get_by_role("link", name="checkout-dev").count() >= 1
    grace = get_user_model().objects.get(username="grace")
    assert list(grace.departments.values_list("slug", flat=True)) == ["payments"]
    assert page.external_requests == []
