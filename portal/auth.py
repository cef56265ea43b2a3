"""The ways in: the login page, local passwords (which a setting switches off), the login
throttle's answer, and the two OpenID Connect endpoints.

Which user a provider's claims make, and what their groups give, is
`portal.services.oidc`'s; the login throttle is django-axes' (failures counted per username +
IP in the database, so every web process sees the same count). This module only wires them
to HTTP. API tokens (portal.api.authentication) never pass through here.

Must not import the API, tasks or other services.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import Http404
from django.shortcuts import redirect, render
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from axes.backends import AxesStandaloneBackend

LOCAL_LOGIN_OFF = "Password sign-in is switched off here: use the sign-in button of your identity provider."


def sign_in_options() -> dict:
    """What the login page offers (every rendering of it uses this)."""
    return {
        "local_login": settings.PORTAL_LOCAL_LOGIN,
        "oidc_enabled": settings.OIDC_ENABLED,
        "oidc_provider_name": settings.OIDC_PROVIDER_NAME,
    }


class PortalLoginView(LoginView):
    """Django's login view, offering the identity provider when one is configured and
    refusing passwords (403) when PORTAL_LOCAL_LOGIN is off."""

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), **sign_in_options()}

    def post(self, request, *args, **kwargs):
        if not settings.PORTAL_LOCAL_LOGIN:
            context = self.get_context_data(form=self.get_form_class()(request), refusal=LOCAL_LOGIN_OFF)
            return self.render_to_response(context, status=403)
        return super().post(request, *args, **kwargs)


class LocalPasswordBackend(ModelBackend):
    """Passwords of the portal's own users, for the demo and break-glass, only while
    PORTAL_LOCAL_LOGIN is on: off, no password works anywhere, the admin's login included."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not settings.PORTAL_LOCAL_LOGIN:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check, for password attempts made over HTTP.

    Without a request (the test client's login(), a script calling authenticate()) there is
    no client to throttle, and without a username the attempt is not a password guess (the
    provider's callback; the provider throttles its own login page)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None or username is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_response(request, original_response=None, credentials=None):
    """What a locked-out username + address gets (AXES_LOCKOUT_CALLABLE): the login page with
    the reason, 429, and `Retry-After`. Each attempt during the lockout starts the cool-off
    again (axes' default), so the full cool-off is exactly the wait."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    username = (credentials or {}).get("username") or ""
    context = {
        **sign_in_options(),
        "form": AuthenticationForm(request, initial={"username": username}),
        "refusal": (
            f"Too many failed sign-ins for this username from your address. "
            f"Try again in {_duration(seconds)}."
        ),
        "next": request.POST.get("next", "") if request.method == "POST" else "",
    }
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


def _duration(seconds: int) -> str:
    if seconds % 60 == 0 and seconds >= 60:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


class OIDCStartView(OIDCAuthenticationRequestView):
    """/oidc/authenticate/: off (404) unless a provider is configured."""

    def __init__(self, *args, **kwargs):
        if not settings.OIDC_ENABLED:
            raise Http404("No identity provider is configured.")
        super().__init__(*args, **kwargs)


class OIDCCallbackView(OIDCAuthenticationCallbackView):
    """/oidc/callback/: the library's callback; a refusal goes back to the login page with
    the reason instead of to "/"."""

    def dispatch(self, request, *args, **kwargs):
        if not settings.OIDC_ENABLED:
            raise Http404("No identity provider is configured.")
        return super().dispatch(request, *args, **kwargs)

    def login_failure(self):
        user = getattr(self, "user", None)
        if user is not None and not user.is_active:
            reason = "your portal account is deactivated; ask an administrator."
        else:
            reason = getattr(self.request, "oidc_refusal", "") or "the provider did not confirm who you are."
        messages.error(self.request, f"Sign-in with {settings.OIDC_PROVIDER_NAME} failed: {reason}")
        return redirect(settings.LOGIN_URL)
