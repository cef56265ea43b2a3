"""Notifications (issue 17): the one home of who is told what, and of every delivery.

- `notify(event, environment, key=..., title=..., body=...)` is what every caller uses (the
  run transitions, drift, expiry). It creates one pending `Notification` per matching active
  target - the environment's department's targets, and the targets of the person who asked
  for the environment (and of whoever asked for the run, e.g. a change's plan) - and sends
  one delivery task per row once the caller's transaction commits. It is idempotent by
  (target, key): a transition that is retried never tells anyone twice. It never raises into
  the caller: a broken notification must never undo or fail a provisioning transition.
- `run_finished(run, event)` and `drift_found(check)` build the message of the hooks in
  `portal.services.runs` and `portal.services.drift` (one line each there).
- `deliver(notification_id)` (the `portal.deliver_notification` task) sends one row with
  Apprise, bounded by NOTIFICATION_TIMEOUT_SECONDS per attempt. A failure is recorded on the
  row (`attempts`, `last_error`, redacted) and raises `DeliveryFailed` so the task tries again
  with backoff; the NOTIFICATION_MAX_ATTEMPTS-th failure marks the row failed.
- `resend_pending()` (beat) sends again what the broker lost: rows never attempted after
  NOTIFICATION_RESEND_SECONDS, and rows whose retry chain died.

Target URLs carry secrets (webhook tokens, SMTP passwords): they are stored Fernet-encrypted
(`encrypt_url`; the key is NOTIFICATION_SECRET_KEY, else derived from SECRET_KEY) and are
never shown back - people see `url_hint` (scheme and host), errors are redacted with every
piece of the URL before they are stored or logged.

Must not import views, the API, Celery tasks or `portal.services.runs` (runs imports this).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.models import Environment, Notification, NotificationEvent, NotificationTarget
from portal.services.errors import InvalidRequest, NotAllowed
from provisioning.redact import Redactor

log = logging.getLogger(__name__)

# The task that runs `deliver` (portal/tasks.py registers it under this name); sent by name so
# that services never import the tasks module.
DELIVER_NOTIFICATION_TASK = "portal.deliver_notification"
# Notification.dedupe_key's length; longer keys are shortened to a digest of themselves.
KEY_MAX_LENGTH = 120
# What a row keeps of a failure (the end of Apprise's log holds the reason).
ERROR_MAX_LENGTH = 2000
NAME_MAX_LENGTH = 100
URL_MAX_LENGTH = 2000

__all__ = [
    "DELIVER_NOTIFICATION_TASK",
    "DeliveryFailed",
    "create_target",
    "delete_target",
    "deliver",
    "drift_found",
    "encrypt_url",
    "notify",
    "resend_pending",
    "run_finished",
    "targets_of",
    "url_hint",
]


class DeliveryFailed(Exception):
    """One delivery attempt failed and another one is due (`attempts` made so far)."""

    def __init__(self, message: str, *, attempts: int):
        super().__init__(message)
        self.attempts = attempts


# --- target URLs: encrypted at rest, never shown back ------------------------------------------


def _fernet():
    """MultiFernet over NOTIFICATION_SECRET_KEY (comma-separated Fernet keys: the first
    encrypts, all decrypt, so a key can be rotated), else one key derived from SECRET_KEY
    (HKDF-SHA256, labelled, so it is no other use's key). Changing SECRET_KEY without setting
    NOTIFICATION_SECRET_KEY makes stored target URLs unreadable: deliveries then fail with
    that reason and the targets must be entered again."""
    from cryptography.fernet import Fernet, MultiFernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    keys = list(settings.NOTIFICATION_SECRET_KEY)
    if not keys:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"sandbox-portal notification target urls").derive(settings.SECRET_KEY.encode())
        keys = [base64.urlsafe_b64encode(derived)]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt_url(url: str) -> bytes:
    """The Apprise URL, encrypted for `NotificationTarget.url_encrypted`."""
    return _fernet().encrypt(url.encode())


def _decrypt_url(token) -> str:
    return _fernet().decrypt(bytes(token)).decode()


def url_hint(url: str) -> str:
    """What people see of a target URL: its scheme and host, nothing else.

    Only a host that looks like one (a dot, `localhost`, an IPv6 address) is shown: in many
    Apprise URLs the "host" is a token (slack://TokenA/..., discord://webhook_id/...).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        host = parts.hostname or ""
    except ValueError:
        host = ""
    if host and ("." in host or ":" in host or host == "localhost") and len(host) <= 100:
        return f"{scheme}://{host}"
    return f"{scheme}://…"


def _url_secrets(url: str) -> list[str]:
    """Every piece of a URL that could be a secret, for redaction: the URL itself, the user
    and password, each path segment, each query value, the fragment, the host unless the hint
    shows it."""
    pieces = {url, url.split("://", 1)[-1]}
    parts = urlsplit(url)
    netloc = parts.netloc
    shown_host = url_hint(url).split("://", 1)[1]
    userinfo, _, hostport = netloc.rpartition("@")
    pieces.update(userinfo.split(":"))
    pieces.update(hostport.split(":"))
    pieces.add(userinfo)
    pieces.update(parts.path.split("/"))
    pieces.add(parts.path)
    pieces.add(parts.query)
    pieces.update(value for _, value in parse_qsl(parts.query, keep_blank_values=True))
    pieces.update(re.split(r"[,;]", parts.fragment) + [parts.fragment])
    pieces |= {unquote(piece) for piece in pieces}
    pieces.discard(shown_host)
    return [piece for piece in pieces if piece]


def redact(text: str, url: str) -> str:
    """`text` without any piece of `url` (nor well-known token shapes)."""
    return Redactor(_url_secrets(url)).redact(text)


def _check_url(url: str) -> str:
    """A URL Apprise can send to, stripped; InvalidRequest otherwise (without echoing it)."""
    import apprise

    url = (url or "").strip()
    if not url:
        raise InvalidRequest("Enter the target's Apprise URL.", field="url")
    if len(url) > URL_MAX_LENGTH:
        raise InvalidRequest(f"The URL is too long (at most {URL_MAX_LENGTH} characters).", field="url")
    if apprise.Apprise.instantiate(url, asset=_asset()) is None:
        message = (f"Apprise does not understand this {url_hint(url).split('://')[0] or 'URL'} URL "
                   "(see https://github.com/caronc/apprise/wiki for the forms).")
        raise InvalidRequest(message, field="url")
    return url


def _check_events(events) -> list[str]:
    events = list(events or [])
    unknown = sorted(set(events) - set(NotificationEvent.values))
    if unknown:
        raise InvalidRequest(f"Unknown events: {', '.join(unknown)}.", field="events")
    return sorted(set(events), key=NotificationEvent.values.index)


# --- managing targets -------------------------------------------------------------------------


def targets_of(user):
    """The targets a person manages on their own page: their own."""
    return NotificationTarget.objects.filter(user=user).order_by("name", "id")


def create_target(*, user=None, department=None, name: str, url: str, events=(), by) -> NotificationTarget:
    """A new target of `user` or of `department`. People add their own; department targets
    are staff's (the admin). The URL is checked with Apprise and stored encrypted."""
    if (user is None) == (department is None):
        raise InvalidRequest("A target belongs to one department or one person.")
    if department is not None and not by.is_staff:
        raise NotAllowed("Only staff manage a department's notification targets.")
    if user is not None and user.pk != by.pk and not by.is_staff:
        raise NotAllowed("You can only add your own notification targets.")
    name = (name or "").strip()
    if not name:
        raise InvalidRequest("Give the target a name.", field="name")
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidRequest(f"The name is too long (at most {NAME_MAX_LENGTH} characters).", field="name")
    url = _check_url(url)
    return NotificationTarget.objects.create(
        user=user, department=department, name=name, url_encrypted=encrypt_url(url), url_hint=url_hint(url),
        events=_check_events(events),
    )


def set_target_url(target: NotificationTarget, url: str) -> None:
    """Replace a target's URL (the admin's write-only field)."""
    url = _check_url(url)
    target.url_encrypted = encrypt_url(url)
    target.url_hint = url_hint(url)


def delete_target(*, by, target_id: int) -> NotificationTarget:
    """Remove one of `by`'s own targets (staff: any). Its sent notifications go with it."""
    target = NotificationTarget.objects.filter(pk=target_id).first()
    if target is None or not (by.is_staff or target.user_id == by.pk):
        raise NotAllowed("No such notification target of yours.")
    target.delete()
    return target


# --- telling people ---------------------------------------------------------------------------


def notify(event: str, environment, *, key: str, title: str, body: str, users=()) -> list[int]:
    """Tell everyone who wants `event` about `environment` (an Environment or its id): one
    pending Notification per matching active target, delivered after the caller's
    transaction commits. `users`: more people whose own targets are told (e.g. who asked for
    the run). Idempotent by (target, key). Never raises; returns the new notifications' ids."""
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the caller's work intact
            ids = _create_notifications(str(event), environment, _key(key), title, body, users)
    except Exception:  # noqa: BLE001 - notifying must never fail the transition that called it
        log.exception("could not record the %s notifications of environment %s", event, getattr(environment, "pk", environment))
        return []
    if ids:
        transaction.on_commit(lambda: _send_all(ids))
    return ids


def _key(key: str) -> str:
    if len(key) <= KEY_MAX_LENGTH:
        return key
    return key[: KEY_MAX_LENGTH - 41] + ":" + hashlib.sha1(key.encode()).hexdigest()


def _create_notifications(event, environment, key, title, body, users) -> list[int]:
    if not isinstance(environment, Environment):
        environment = Environment.objects.select_related("product").get(pk=environment)
    people = {environment.requested_by_id, *(getattr(u, "pk", u) for u in users)} - {None}
    targets = [
        target
        for target in NotificationTarget.objects.filter(is_active=True).filter(
            _owner_filter(environment.product.department_id, people))
        if not target.events or event in target.events
    ]
    if not targets:
        return []
    told = set(Notification.objects.filter(dedupe_key=key, target__in=targets).values_list("target_id", flat=True))
    new = [t.pk for t in targets if t.pk not in told]
    if not new:
        return []
    title = title[:200]
    Notification.objects.bulk_create(
        [Notification(target_id=t, event=event, environment=environment, dedupe_key=key, title=title, body=body) for t in new],
        ignore_conflicts=True,  # a concurrent notify of the same key: the database keeps one
    )
    return list(Notification.objects.filter(dedupe_key=key, target_id__in=new, status=Notification.Status.PENDING,
                                            attempts=0).values_list("pk", flat=True))


def _owner_filter(department_id, people):
    from django.db.models import Q

    return Q(department_id=department_id) | Q(user_id__in=people)


def _send_all(ids: list[int]) -> None:
    for notification_id in ids:
        send(notification_id)


def send(notification_id: int) -> bool:
    """Queue the delivery of one notification. Never raises: a broker that refuses the message
    leaves the row pending, and `resend_pending` sends it later."""
    try:
        current_app.send_task(DELIVER_NOTIFICATION_TASK, args=(notification_id,))
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("notification %s: could not queue its delivery (%s: %s); the catch-up resends it",
                    notification_id, type(exc).__name__, exc)
        return False


def _link(environment_id: int) -> str:
    return f"{settings.PORTAL_URL}/environments/{environment_id}/"


_RUN_TITLES = {
    NotificationEvent.READY: "{env} is ready",
    NotificationEvent.FAILED: "{env} could not be created",
    NotificationEvent.ROLLBACK_FAILED: "{env}: the rollback failed and needs attention",
    NotificationEvent.UPDATE_PLANNED: "{env}: a change is planned - review and confirm it",
}


def _never_raises(hook):
    """A hook runs inside a transition's transaction: whatever goes wrong in it is logged, and
    the transition goes on (in a savepoint, so the transaction stays usable)."""
    import functools

    @functools.wraps(hook)
    def wrapper(*args, **kwargs):
        try:
            with transaction.atomic():
                return hook(*args, **kwargs)
        except Exception:  # noqa: BLE001
            log.exception("notification hook %s failed; the transition goes on", hook.__name__)
            return []

    return wrapper


@_never_raises
def run_finished(run, event: str) -> list[int]:
    """The hook of a run transition (`portal.services.runs`, inside its transaction): tell
    about `event`, once per request - a rollback's outcome is keyed by the create it rolls
    back, so "failed" goes out once whichever of them ends it."""
    try:
        environment = Environment.objects.select_related("product").get(pk=run.environment_id)
    except Environment.DoesNotExist:
        return []
    request_id = run.rollback_of_id or run.pk
    body = environment.status_reason or run.explanation or ""
    if event == NotificationEvent.READY:
        endpoints = list(environment.endpoints.filter(released_at__isnull=True).values_list("url", flat=True))
        body = "Created." + (" Endpoints: " + ", ".join(e for e in endpoints if e) if any(endpoints) else "")
    elif event == NotificationEvent.UPDATE_PLANNED:
        body = "Planned; nothing is applied until the plan is confirmed. " + _plan_counts(run)
    return notify(
        event, environment, key=f"{event}:run:{request_id}", users=[run.requested_by_id],
        title=_RUN_TITLES[event].format(env=environment),
        body=f"{body.strip()}\n\n{_link(environment.pk)} (run #{run.pk})",
    )


def _plan_counts(run) -> str:
    from portal.models import Run

    summary = Run.objects.filter(pk=run.pk).values_list("plan_summary", flat=True).first() or {}
    return ", ".join(f"{summary[k]} to {k}" for k in ("add", "change", "replace", "destroy") if summary.get(k)) or "No changes."


@_never_raises
def drift_found(check) -> list[int]:
    """The hook of a drift check that found drift (`portal.services.drift._finish`, before the
    badge moves): only an environment that *becomes* drifted is told, not one re-found drifted
    every day."""
    from portal.models import DriftStatus

    environment = Environment.objects.select_related("product").filter(pk=check.environment_id).first()
    if environment is None or environment.drift_status == DriftStatus.DRIFTED:
        return []
    return notify(
        NotificationEvent.DRIFTED, environment, key=f"drifted:check:{check.pk}",
        title=f"{environment} drifted from its Terraform code",
        body=f"A drift check found resources changed outside Terraform. Plan to fix it from its page.\n\n{_link(environment.pk)}",
    )


# --- delivering -------------------------------------------------------------------------------


def _asset():
    import apprise

    # In memory only: Apprise's persistent store would write under the worker's home.
    return apprise.AppriseAsset(storage_mode="memory")


@dataclass
class _Outcome:
    ok: bool
    error: str = ""
    retryable: bool = True


def _send_with_apprise(url: str, title: str, body: str) -> _Outcome:
    """One bounded attempt: Apprise's own retries off, connect and read timeouts at most
    NOTIFICATION_TIMEOUT_SECONDS (SMTP uses the connect timeout for every socket call)."""
    import apprise

    plugin = apprise.Apprise.instantiate(url, asset=_asset())
    if plugin is None:
        return _Outcome(False, "Apprise does not understand the target's URL (enter it again).", retryable=False)
    timeout = settings.NOTIFICATION_TIMEOUT_SECONDS
    plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout or timeout), timeout)
    plugin.socket_read_timeout = min(float(getattr(plugin, "socket_read_timeout", None) or timeout), timeout)
    plugin.retry = 0
    # DEBUG for the socket exception's reason ("Connection refused"); payload lines are dropped.
    with apprise.LogCapture(level=logging.DEBUG, fmt="%(levelname)s %(message)s") as captured:
        try:
            ok = plugin.notify(body=body, title=title)
        except Exception as exc:  # noqa: BLE001 - a plugin bug is a failed attempt, not a crashed task
            ok = False
            log.debug("apprise raised", exc_info=True)
            captured.write(f"ERROR {type(exc).__name__}: {exc}\n")
        text = captured.getvalue()
    if ok:
        return _Outcome(True)
    lines = [line.split(" ", 1)[-1] for line in text.splitlines()
             if line.startswith(("WARNING", "ERROR", "CRITICAL")) or (line.startswith("DEBUG") and "Exception" in line)]
    return _Outcome(False, "\n".join(lines).strip() or "Apprise reported a failure without saying why.")


def deliver(notification_id: int, *, sender=_send_with_apprise) -> str:
    """Send one notification (the delivery task). Returns "sent", "failed" (gave up) or
    "skipped" (already done, or another delivery holds it); raises `DeliveryFailed` when
    another attempt is due. Each attempt is claimed with a compare-and-swap on `attempts`,
    so a resent message and a retry never send the same attempt twice."""
    row = Notification.objects.select_related("target").filter(pk=notification_id).first()
    if row is None or row.status != Notification.Status.PENDING:
        return "skipped"
    attempt = row.attempts + 1
    if not Notification.objects.filter(pk=row.pk, status=Notification.Status.PENDING, attempts=row.attempts).update(
        attempts=attempt
    ):
        return "skipped"
    target = row.target
    url = ""
    if not target.is_active:
        outcome = _Outcome(False, "The target was switched off before this was delivered.", retryable=False)
    else:
        try:
            url = _decrypt_url(target.url_encrypted)
        except Exception:  # noqa: BLE001 - InvalidToken, or a key that is not a Fernet key
            outcome = _Outcome(False, "The target's URL cannot be decrypted (NOTIFICATION_SECRET_KEY or SECRET_KEY "
                                      "changed?); enter the URL again.", retryable=False)
        else:
            outcome = sender(url, row.title, row.body)
    if outcome.ok:
        Notification.objects.filter(pk=row.pk).update(status=Notification.Status.SENT, sent_at=timezone.now(), last_error="")
        return "sent"
    error = redact(outcome.error, url) if url else outcome.error
    error = f"Attempt {attempt}: {error}"[-ERROR_MAX_LENGTH:]
    final = not outcome.retryable or attempt >= settings.NOTIFICATION_MAX_ATTEMPTS
    Notification.objects.filter(pk=row.pk).update(
        last_error=error, status=Notification.Status.FAILED if final else Notification.Status.PENDING
    )
    log.warning("notification %s to target %s (%s): %s%s", row.pk, target.pk, target.url_hint, error,
                " - gave up" if final else "")
    if final:
        return "failed"
    raise DeliveryFailed(error, attempts=attempt)


def retry_delay(attempts: int) -> float:
    """The longest wait before attempt `attempts + 1` (the task adds jitter below it)."""
    return min(settings.NOTIFICATION_RETRY_CAP_SECONDS, settings.NOTIFICATION_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))


def _retry_span() -> float:
    """How long a whole retry chain can take at most: its waits plus each attempt's timeouts."""
    attempts = settings.NOTIFICATION_MAX_ATTEMPTS
    waits = sum(retry_delay(k) for k in range(1, attempts))
    return waits + attempts * 2 * settings.NOTIFICATION_TIMEOUT_SECONDS


def resend_pending(*, now=None, limit: int = 500) -> list[int]:
    """Beat: send again the pending notifications whose message was lost - never attempted
    NOTIFICATION_RESEND_SECONDS after they were made (the broker was down on commit), or
    still pending after the longest retry chain could have taken (its worker died)."""
    from django.db.models import Q

    now = now or timezone.now()
    resend_after = timedelta(seconds=settings.NOTIFICATION_RESEND_SECONDS)
    stalled_after = resend_after + timedelta(seconds=_retry_span())
    ids = list(
        Notification.objects.filter(status=Notification.Status.PENDING)
        .filter(Q(attempts=0, created_at__lt=now - resend_after) | Q(attempts__gt=0, created_at__lt=now - stalled_after))
        .order_by("created_at").values_list("pk", flat=True)[:limit]
    )
    for notification_id in ids:
        send(notification_id)
    return ids



def send_again(notification_ids) -> int:
    """Staff (admin action): deliver failed notifications again, from a fresh attempt count.
    Returns how many were queued."""
    ids = list(Notification.objects.filter(pk__in=list(notification_ids), status=Notification.Status.FAILED)
               .values_list("pk", flat=True))
    Notification.objects.filter(pk__in=ids, status=Notification.Status.FAILED).update(
        status=Notification.Status.PENDING, attempts=0, last_error=""
    )
    transaction.on_commit(lambda: _send_all(ids))
    return len(ids)
