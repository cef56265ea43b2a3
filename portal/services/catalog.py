"""The design-pattern catalog as the portal sees it: loaded once per process from PATTERNS_DIR."""

from functools import lru_cache

from django.conf import settings

from portal.services.errors import InvalidRequest
from provisioning.patterns import Pattern, load_catalog


@lru_cache(maxsize=4)
def _catalog(root: str) -> dict[str, Pattern]:
    from pathlib import Path

    return load_catalog(Path(root))


def get_catalog() -> dict[str, Pattern]:
    """Every valid pattern by slug (a broken one fails `manage.py check` at start-up)."""
    return _catalog(str(settings.PATTERNS_DIR))


def get_pattern(slug: str) -> Pattern:
    try:
        return get_catalog()[slug]
    except KeyError:
        known = ", ".join(sorted(get_catalog())) or "none"
        raise InvalidRequest(f"Unknown design pattern {slug!r} (known: {known}).", field="pattern") from None
