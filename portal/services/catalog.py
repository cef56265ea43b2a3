"""The versioned design-pattern catalog as the portal sees it.

Versions come from two sources: the bundled PATTERNS_DIR (one version per pattern: the one
its folder holds) and, optionally, the git repository PATTERNS_GIT_URL, whose tags
`<slug>/<version>` are versions (`provisioning.pattern_repo`). New environments get a
pattern's newest version; an environment stays pinned to the version it was built with until
a confirmed change upgrades it. A version is immutable once used: the first environment that
uses it records its digest (`PatternVersion`), and from then on a version whose files differ
is refused instead of rendered (`pin_version`).

The catalog is loaded once per process and loaded again only when the git mirror's refs moved
(a `sync_git` by beat, `manage.py patterns --sync` or a miss): two stat calls per lookup.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db import transaction

from portal.services.errors import Conflict, InvalidRequest
from provisioning.pattern_repo import GitPatternSource
from provisioning.patterns import Pattern, PatternCatalogError, PatternError, load_catalog, version_key

log = logging.getLogger(__name__)

__all__ = [
    "Catalog", "fleet", "get_catalog", "get_pattern", "get_versions", "latest_version", "pin_version", "sync_git",
    "upgrade_available",
]


@dataclass(frozen=True)
class Catalog:
    """Every loaded version by slug, newest first; `problems`: git versions that were refused."""

    versions: dict[str, tuple[Pattern, ...]]
    problems: tuple[PatternError, ...] = field(default=())

    def latest(self) -> dict[str, Pattern]:
        return {slug: found[0] for slug, found in self.versions.items()}


def _git_source() -> GitPatternSource | None:
    url = settings.PATTERNS_GIT_URL
    return GitPatternSource(url, Path(settings.PATTERNS_GIT_CACHE_DIR)) if url else None


@lru_cache(maxsize=4)
def _load(root: str, git_url: str | None, fingerprint: tuple) -> Catalog:
    bundled = load_catalog(Path(root))  # broken bundled patterns fail loudly, as always
    found: dict[str, dict[str, Pattern]] = {slug: {pattern.version: pattern} for slug, pattern in bundled.items()}
    problems: list[PatternError] = []
    source = _git_source()
    if source is not None:
        try:
            tagged, problems = source.load()
        except PatternError as exc:
            tagged, problems = [], [exc]
        for pattern in tagged:
            held = found.setdefault(pattern.slug, {}).get(pattern.version)
            if held is None:
                found[pattern.slug][pattern.version] = pattern
            elif held.digest != pattern.digest:
                problems.append(PatternError(
                    f"{git_url}@{pattern.source.removeprefix('git ')}", "version",
                    f"{pattern.slug} {pattern.version} is also bundled, with different files; a version must "
                    "mean one thing - give one of them a new version",
                ))
    for problem in problems:
        log.warning("pattern catalog: %s", problem)
    versions = {
        slug: tuple(sorted(by_version.values(), key=lambda p: version_key(p.version), reverse=True))
        for slug, by_version in sorted(found.items())
    }
    return Catalog(versions=versions, problems=tuple(problems))


def catalog() -> Catalog:
    source = _git_source()
    return _load(str(settings.PATTERNS_DIR), settings.PATTERNS_GIT_URL, source.fingerprint() if source else ())


def get_catalog() -> dict[str, Pattern]:
    """Every pattern's newest version by slug (a broken bundled one fails `manage.py check`)."""
    return catalog().latest()


def get_versions(slug: str) -> tuple[Pattern, ...]:
    """Every version of a pattern the catalog holds, newest first (empty when unknown)."""
    return catalog().versions.get(slug, ())


def latest_version(slug: str) -> str | None:
    versions = get_versions(slug)
    return versions[0].version if versions else None


def upgrade_available(slug: str, version: str) -> str | None:
    """The newest version a `slug` `version` environment could upgrade to, or None."""
    latest = latest_version(slug)
    if latest is not None and version_key(latest) > version_key(version):
        return latest
    return None


_miss_lock = threading.Lock()
_last_miss_sync = 0.0


def get_pattern(slug: str, version: str | None = None) -> Pattern:
    """The pattern `slug` at `version` (default: its newest); a clear 400 when not held.

    A version the catalog does not hold makes it fetch the git repository once (at most every
    PATTERNS_GIT_MISS_SYNC_SECONDS), so a freshly pushed tag is usable at once."""
    for attempt in (1, 2):
        versions = get_versions(slug)
        if not versions:
            known = ", ".join(sorted(get_catalog())) or "none"
            if attempt == 1 and _sync_on_miss():
                continue
            raise InvalidRequest(f"Unknown design pattern {slug!r} (known: {known}).", field="pattern")
        if version is None:
            return versions[0]
        for pattern in versions:
            if pattern.version == version:
                return pattern
        if attempt == 1 and _sync_on_miss():
            continue
        held = ", ".join(pattern.version for pattern in versions)
        raise InvalidRequest(
            f"The catalog holds no version {version} of {slug} (it holds {held}).", field="pattern_version"
        )
    raise AssertionError("unreachable")


def _sync_on_miss() -> bool:
    global _last_miss_sync
    if _git_source() is None:
        return False
    with _miss_lock:
        if time.monotonic() - _last_miss_sync < settings.PATTERNS_GIT_MISS_SYNC_SECONDS:
            return False
        _last_miss_sync = time.monotonic()
    try:
        sync_git()
    except PatternError as exc:
        log.warning("pattern catalog: %s", exc)
        return False
    return True


def sync_git() -> Catalog:
    """Fetch the pattern repository's tags (clone it the first time) and reload the catalog."""
    source = _git_source()
    if source is not None:
        source.sync()
    return catalog()


def pin_version(pattern: Pattern) -> None:
    """Record that an environment uses this version; refuse (409) a used version whose files
    changed since. Call inside the transaction that records the environment's new version."""
    from portal.models import PatternVersion

    with transaction.atomic():
        record, created = PatternVersion.objects.get_or_create(
            slug=pattern.slug, version=pattern.version, defaults={"digest": pattern.digest, "source": pattern.source}
        )
    if not created and record.digest != pattern.digest:
        raise Conflict(
            f"{pattern.slug} {pattern.version} is in use and its files have changed since (recorded "
            f"{record.digest[:12]}, now {pattern.digest[:12]} from {pattern.source}); a used version is immutable - "
            "publish the change as a new version.",
            field="pattern_version",
        )


def changed_used_versions() -> list[str]:
    """Used versions whose files in the catalog differ from what was recorded (for checks)."""
    from portal.models import PatternVersion

    held = {(p.slug, p.version): p for found in catalog().versions.values() for p in found}
    changed = []
    for record in PatternVersion.objects.all():
        pattern = held.get((record.slug, record.version))
        if pattern is not None and pattern.digest != record.digest:
            changed.append(f"{record.slug} {record.version} (recorded {record.digest[:12]}, now {pattern.digest[:12]})")
    return changed


def check_catalog() -> list[PatternError]:
    """Problems worth a `manage.py check` warning: refused git versions."""
    try:
        return list(catalog().problems)
    except PatternCatalogError as exc:
        return list(exc.errors)


def fleet() -> list[dict]:
    """Which live environments run which pattern version, and what each could upgrade to:
    one row per (pattern, version) in use, plus every catalog version nobody runs yet."""
    from django.db.models import Count

    from portal.models import Environment

    counts = {
        (row["pattern_slug"], row["pattern_version"]): row["n"]
        for row in Environment.objects.exclude(status="deleted")
        .values("pattern_slug", "pattern_version").annotate(n=Count("id")).order_by()
    }
    held = catalog().versions
    keys = set(counts) | {(slug, p.version) for slug, found in held.items() for p in found}
    rows = []
    for slug, version in sorted(keys, key=lambda k: (k[0], version_key(k[1])), reverse=False):
        in_catalog = next((p for p in held.get(slug, ()) if p.version == version), None)
        rows.append({
            "pattern": slug,
            "version": version,
            "environments": counts.get((slug, version), 0),
            "in_catalog": in_catalog is not None,
            "source": in_catalog.source if in_catalog else "",
            "latest": bool(held.get(slug)) and held[slug][0].version == version,
            "upgrade_available": upgrade_available(slug, version),
        })
    return rows

