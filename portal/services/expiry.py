"""Expiry (issue 17): sandboxes that nobody deletes are destroyed at their expiry, through the
same delete path as a person's delete, after warnings at EXPIRY_WARNINGS before it.

- A product's `default_lifetime_hours` sets a new environment's `expires_at` (none: never);
  its `max_lifetime_hours` bounds every extension (counted from the environment's creation).
- Owners and department members extend (`extend`) within the maximum; staff may keep one
  (`set_kept`): a kept environment never expires.
- `run_expiry(now)` (beat, every EXPIRY_INTERVAL_SECONDS) sends each warning exactly once at
  its time (the offsets sent are recorded on the environment, and the notification is
  idempotent per expiry time), and at expiry queues the destroy run. An environment with a
  run in progress, or in `rollback_failed` (its state needs a person), is never destroyed by
  expiry: it is reported instead (`expiry_blocked`, an `expiry_blocked` notification once) and
  looked at again on the next pass.

`now` is a parameter everywhere, so tests drive a controllable clock instead of sleeping.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.models import Environment, EnvironmentStatus, Run, RunKind
from portal.models.cmdb import ENVIRONMENT_DELETABLE
from portal.models.runs import UNFINISHED
from portal.services import runs as transitions
from portal.services.errors import Conflict, InvalidRequest, NotAllowed
from portal.services.events import system_event
from portal.services.permissions import require_product

log = logging.getLogger(__name__)

# Statuses an expired environment is never destroyed from: a person must look first.
NEVER_DESTROYED_BY_EXPIRY = frozenset({EnvironmentStatus.ROLLBACK_FAILED})
# Statuses that have nothing left to expire.
GONE = frozenset({EnvironmentStatus.DELETED, EnvironmentStatus.DELETING, EnvironmentStatus.FAILED})


def parse_offsets(text: str) -> tuple[int, ...]:
    """"2d,2h,30m" -> (172800, 7200, 1800): seconds before expiry, largest first."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    offsets = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        if part[-1] not in units or not part[:-1].isdigit() or int(part[:-1]) <= 0:
            raise ValueError(f"{part!r} is not a duration such as 2d, 2h or 30m")
        offsets.add(int(part[:-1]) * units[part[-1]])
    return tuple(sorted(offsets, reverse=True))


def warning_offsets() -> tuple[int, ...]:
    return parse_offsets(settings.EXPIRY_WARNINGS)


def describe(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def passed_warnings(seconds_left: float) -> list[int]:
    """The warnings whose time is already past when an expiry this far away is set: recorded
    as done, so they are never sent late (a 1-hour lifetime gets the 30-minute warning only)."""
    return sorted(offset for offset in warning_offsets() if offset >= seconds_left)


def default_expiry(product, created_at: datetime) -> datetime | None:
    if product.default_lifetime_hours is None:
        return None
    return created_at + timedelta(hours=product.default_lifetime_hours)


def latest_allowed(environment: Environment) -> datetime | None:
    """The furthest expiry the product allows for this environment (None: no limit)."""
    hours = environment.product.max_lifetime_hours
    return None if hours is None else environment.created_at + timedelta(hours=hours)


# --------------------------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------------------------


def extend(*, user, environment: Environment, hours: int | None = None, until: datetime | None = None,
           now: datetime | None = None) -> Environment:
    """Move the expiry `hours` later (from now, or from the current expiry if that is later) or
    to `until`; refused (400) beyond the product's maximum or into the past, 409 when gone."""
    require_product(user, environment.product, "extend")
    now = now or timezone.now()
    if (hours is None) == (until is None):
        raise InvalidRequest("Give either hours or until.", field="hours")
    if hours is not None and not (isinstance(hours, int) and 0 < hours <= 24 * 3650):
        raise InvalidRequest("hours must be a whole number from 1 to 87600.", field="hours")
    with transaction.atomic():
        env = Environment.objects.select_for_update().select_related("product").get(pk=environment.pk)
        if env.status in GONE:
            raise Conflict(f"{env} is {env.get_status_display().lower()}; there is nothing to extend.", field="environment")
        if hours is not None:
            target = max(now, env.expires_at or now) + timedelta(hours=hours)
        else:
            target = until
            if target <= now:
                raise InvalidRequest("until must be in the future.", field="until")
        limit = latest_allowed(env)
        if limit is not None and target > limit:
            raise InvalidRequest(
                f"{env.product.name} environments live at most {env.product.max_lifetime_hours} hours; "
                f"{env} may be extended until {limit:%Y-%m-%d %H:%M} UTC at the latest.",
                field="until" if until is not None else "hours",
            )
        Environment.objects.filter(pk=env.pk).update(
            expires_at=target, expiry_warnings_sent=passed_warnings((target - now).total_seconds()),
            expiry_blocked="", updated_at=now,
        )
        env.refresh_from_db()
    return env


def set_kept(*, user, environment: Environment, kept: bool) -> Environment:
    """Staff only: a kept environment never expires (and is not warned about)."""
    if not getattr(user, "is_staff", False):
        raise NotAllowed("Only staff may keep an environment from expiring.")
    Environment.objects.filter(pk=environment.pk).update(kept=kept, expiry_blocked="", updated_at=timezone.now())
    environment.refresh_from_db()
    return environment


# --------------------------------------------------------------------------------------------
# The periodic pass
# --------------------------------------------------------------------------------------------


def run_expiry(*, now: datetime | None = None) -> dict[str, list[int]]:
    """Send due warnings, queue destroys of expired environments, report blocked ones.
    Returns the environment ids per outcome (for tests and logs)."""
    now = now or timezone.now()
    offsets = warning_offsets()
    horizon = now + timedelta(seconds=offsets[0] if offsets else 0)
    outcome: dict[str, list[int]] = {"warned": [], "expired": [], "blocked": []}
    due = (
        Environment.objects.filter(kept=False, expires_at__isnull=False, expires_at__lte=horizon)
        .exclude(status__in=GONE).select_related("product__department", "requested_by").order_by("expires_at", "id")
    )
    for environment in due[: settings.EXPIRY_BATCH]:
        try:
            if environment.expires_at <= now:
                outcome[_expire(environment, now)].append(environment.pk)
            elif _warn(environment, offsets, now):
                outcome["warned"].append(environment.pk)
        except Exception:  # one environment's trouble never stops the pass
            log.exception("expiry of environment %s failed; tried again next pass", environment.pk)
    return outcome


def _warn(environment: Environment, offsets: tuple[int, ...], now: datetime) -> bool:
    """Send the most imminent warning that is due and not sent. Larger ones due at the same
    moment (beat was down at their time) are recorded as done, never sent late."""
    left = (environment.expires_at - now).total_seconds()
    with transaction.atomic():
        env = Environment.objects.select_for_update().get(pk=environment.pk)
        if env.expires_at != environment.expires_at or env.kept:
            return False
        sent = set(env.expiry_warnings_sent or [])
        due = [offset for offset in offsets if left <= offset and offset not in sent]
        if not due:
            return False
        imminent = min(due)
        Environment.objects.filter(pk=env.pk).update(expiry_warnings_sent=sorted(sent | set(due)))
        _notify("expiring", env, key=f"expiring:{env.pk}:{env.expires_at.isoformat()}:{imminent}",
                title=f"{env} expires in {describe(imminent)}",
                body=(f"{env} ({env.pattern_slug}) expires at {env.expires_at:%Y-%m-%d %H:%M} UTC and is then destroyed. "
                      "Extend it on its page, with the API (POST .../extend/) or `manage.py provision extend` if it is "
                      "still needed."))
    return True


def _expire(environment: Environment, now: datetime) -> str:
    with transaction.atomic():
        env = Environment.objects.select_for_update().select_related("product__department").get(pk=environment.pk)
        if env.kept or env.expires_at is None or env.expires_at > now or env.status in GONE:
            return "expired" if env.expired_at else "blocked"
        busy = Run.objects.filter(environment_id=env.pk, status__in=UNFINISHED).first()
        if busy is not None or env.status in NEVER_DESTROYED_BY_EXPIRY or env.status not in ENVIRONMENT_DELETABLE:
            reason = (
                f"it has run #{busy.pk} ({busy.kind}) in progress; expiry looks again on its next pass"
                if busy is not None else
                f"it is {env.get_status_display().lower()}: its stored state needs a person before anything destroys it"
            )
            if env.expiry_blocked != reason:
                Environment.objects.filter(pk=env.pk).update(expiry_blocked=reason)
                _notify("expiry_blocked", env, key=f"expiry_blocked:{env.pk}:{env.expires_at.isoformat()}:{env.status}:{busy.pk if busy else ''}",
                        title=f"{env} expired but was not destroyed",
                        body=f"{env} expired at {env.expires_at:%Y-%m-%d %H:%M} UTC but was not destroyed: {reason}.")
            return "blocked"
        run = transitions.queue_run(env, RunKind.DESTROY, requested_by=None)
        Environment.objects.filter(pk=env.pk).update(expired_at=now, expiry_blocked="")
        system_event(run.pk, f"Queued by expiry: {env} expired at {env.expires_at:%Y-%m-%d %H:%M} UTC.")
        _notify("expired", env, key=f"expired:{env.pk}:{env.expires_at.isoformat()}",
                title=f"{env} expired and is being destroyed",
                body=f"{env} expired at {env.expires_at:%Y-%m-%d %H:%M} UTC; run #{run.pk} destroys it.")
    return "expired"


def _notify(event: str, environment: Environment, *, key: str, title: str, body: str) -> None:
    from portal.services import notifications

    notifications.notify(event, environment, key=key, title=title, body=body)
