"""Local passwords beside the identity provider: switched off by PORTAL_LOCAL_LOGIN=0 (the
login form and the admin's alike), and throttled per username + address by django-axes with a
429 and Retry-After."""

import pytest

from tests.factories import DEFAULT_PASSWORD, make_user
from tests.oidc.conftest import apply_provider_settings

pytestmark = pytest.mark.django_db


def log_in(client, username, password, **extra):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def signed_in(client) -> bool:
    return client.get("/").wsgi_request.user.is_authenticated


def test_with_local_login_off_the_password_form_is_gone_and_passwords_are_refused(client, settings, oidc_provider):
    apply_provider_settings(settings, oidc_provider, PORTAL_LOCAL_LOGIN=False)
    make_user("dev")
    make_user("root", is_staff=True, is_superuser=True)

    page = client.get("/login/").content.decode()
    assert "Sign in with Test IdP" in page
    assert 'name="password"' not in page

    response = log_in(client, "dev", DEFAULT_PASSWORD)
    assert response.status_code == 403
    assert "Password sign-in is switched off" in response.content.decode()
    assert not signed_in(client)

    # The admin's own login form takes no password either, not even a superuser's.
    response = client.post("/admin/login/?next=/admin/", {"username": "root", "password": DEFAULT_PASSWORD})
    assert response.status_code == 200 and not signed_in(client)


def test_with_local_login_on_a_password_still_signs_in_beside_the_provider(client, settings, oidc_provider):
    apply_provider_settings(settings, oidc_provider)
    make_user("dev")

    response = log_in(client, "dev", DEFAULT_PASSWORD)

    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in(client)


def test_failed_passwords_lock_out_that_username_from_that_address_with_429_and_retry_after(client, settings):
    make_user("dev")
    limit = settings.AXES_FAILURE_LIMIT
    lockout = int(settings.AXES_COOLOFF_TIME.total_seconds())

    for attempt in range(1, limit):
        response = log_in(client, "dev", "wrong-password")
        assert response.status_code == 200, f"attempt {attempt} was refused already"
        assert "Please enter a correct username and password" in response.content.decode()
    locked = log_in(client, "dev", "wrong-password")

    assert locked.status_code == 429
    assert locked["Retry-After"] == str(lockout)
    assert "Too many failed sign-ins" in locked.content.decode()
    # Even the right password waits out the lockout...
    right = log_in(client, "dev", DEFAULT_PASSWORD)
    assert right.status_code == 429 and right["Retry-After"] == str(lockout)
    assert not signed_in(client)
    # ...but only for this username from this address.
    make_user("other")
    assert log_in(client, "other", DEFAULT_PASSWORD).status_code == 302
    client.logout()
    elsewhere = log_in(client, "dev", DEFAULT_PASSWORD, REMOTE_ADDR="192.0.2.7")
    assert elsewhere.status_code == 302


def test_a_successful_sign_in_clears_the_failure_count(client, settings):
    make_user("dev")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "dev", "wrong-password").status_code == 200
    assert log_in(client, "dev", DEFAULT_PASSWORD).status_code == 302
    client.logout()

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "dev", "wrong-password").status_code == 200


def test_the_lockout_is_over_after_the_cool_off(client, settings):
    from datetime import timedelta

    from axes.models import AccessAttempt

    make_user("dev")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "dev", "wrong-password")
    assert log_in(client, "dev", DEFAULT_PASSWORD).status_code == 429

    # The cool-off counted from the last attempt: moved into the past, as time would.
    earlier = AccessAttempt.objects.get(username="dev").attempt_time - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.filter(username="dev").update(attempt_time=earlier)

    assert log_in(client, "dev", DEFAULT_PASSWORD).status_code == 302
