"""System checks: every design pattern must load, so a broken one fails `manage.py check`
(and therefore `migrate`, `runserver` and the worker's start) instead of a request."""

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.compatibility, deploy=False)
def check_patterns(app_configs=None, **kwargs):
    from provisioning.patterns import PatternCatalogError, load_catalog

    try:
        load_catalog(settings.PATTERNS_DIR)
    except PatternCatalogError as exc:
        return [checks.Error(str(error), id="portal.E001") for error in exc.errors]
    return []


@checks.register(checks.Tags.compatibility, deploy=False)
def check_pattern_repository(app_configs=None, **kwargs):
    """Versions from PATTERNS_GIT_URL that were refused (the bundled catalog still works)."""
    if not settings.PATTERNS_GIT_URL:
        return []
    from portal.services.catalog import check_catalog

    return [checks.Warning(str(error), id="portal.W010") for error in check_catalog()]


@checks.register(checks.Tags.compatibility, deploy=False)
def check_expiry_warnings(app_configs=None, **kwargs):
    """EXPIRY_WARNINGS must parse (2d,2h,30m), or no warning would ever be sent."""
    from portal.services.expiry import parse_offsets

    try:
        parse_offsets(settings.EXPIRY_WARNINGS)
    except ValueError as exc:
        return [checks.Error(f"EXPIRY_WARNINGS: {exc}", id="portal.E011")]
    return []
