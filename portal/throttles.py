"""Abuse limits shared by the browser and the REST API (issue 17), on Django REST framework's
throttles: one rate per user for requesting environments, counted across both doors.

The counts live in Django's cache, so they must be shared by every web process: CACHE_URL
(redis://...) in production, a file cache under PORTAL_VAR_DIR by default (one host).
Login attempts are limited by the sign-in code (portal/services/oidc.py / portal/auth.py).
"""

from rest_framework.throttling import UserRateThrottle


class EnvironmentCreateThrottle(UserRateThrottle):
    """ENVIRONMENT_CREATE_RATE (e.g. "30/hour") environment requests per user; staff too."""

    scope = "environment_create"


def environment_create_wait(request) -> float | None:
    """For a browser POST: None when allowed (and counted), else the seconds to wait."""
    throttle = EnvironmentCreateThrottle()
    if throttle.allow_request(request, None):
        return None
    return max(1.0, throttle.wait() or 1.0)
