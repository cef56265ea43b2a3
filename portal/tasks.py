"""Celery tasks: thin wrappers only.

A task loads a row by id and calls one service function; retry wiring may live here, rules
and branching live in `portal.services`. Progress is read from the Run row, never from
Celery's result backend (which only the `health` task uses).
"""

import random
import socket

from celery import current_task, shared_task
from django.utils import timezone

from portal.services.dispatch import EXECUTE_RUN_TASK
from portal.services.drift import DRIFT_CHECK_TASK
from portal.services.github_drift import MIRROR_DRIFT_TASK
from portal.services.github_mirror import MIRROR_RUN_TASK
from portal.services.notifications import DELIVER_NOTIFICATION_TASK


@shared_task(name="portal.health", ignore_result=False)
def health() -> dict:
    """Prove that a worker picks up a message and can answer through the result backend."""
    return {
        "status": "ok",
        "worker": current_task.request.hostname or socket.gethostname(),
        "time": timezone.now().isoformat(),
    }


@shared_task(name=EXECUTE_RUN_TASK, ignore_result=True, acks_late=False)
def execute_run(run_id: int) -> None:
    """Execute a dispatched run. Acknowledged on receipt: a redelivery could never start a
    second apply anyway (the claim is a compare-and-swap), and a message lost with a dead
    worker is recovered by the reaper from the Run row, not by the broker."""
    from portal.services.execution import execute_run as execute

    execute(run_id)


# GitHub mirror retries: exponential backoff with "equal jitter" (half fixed, half random),
# so a GitHub outage does not make every worker retry in lockstep. 8 retries span ~20 min.
MIRROR_MAX_RETRIES = 8
MIRROR_BACKOFF_BASE_SECONDS = 5.0
MIRROR_BACKOFF_CAP_SECONDS = 600.0


def _mirror_backoff(retries: int, base: float = MIRROR_BACKOFF_BASE_SECONDS) -> float:
    delay = min(MIRROR_BACKOFF_CAP_SECONDS, base * 2**retries)
    return delay / 2 + random.uniform(0, delay / 2)


@shared_task(bind=True, name=MIRROR_RUN_TASK, ignore_result=True, acks_late=False, max_retries=MIRROR_MAX_RETRIES)
def mirror_run(self, run_id: int) -> None:
    """Bring the GitHub issue of a run's request up to date (see `sync_run`; idempotent).

    Failures are already recorded on the GitHubMirror row; here they only decide when to try
    again: after the delay GitHub asked for (rate limit, plus a little jitter), soon when
    another pass holds the request, with exponential backoff on other errors, and not at all
    when a retry cannot help (bad credentials, unknown repository, validation errors).
    """
    from portal.services.github_mirror import GitHubError, MirrorBusy, RateLimited, sync_run

    try:
        sync_run(run_id)
    except RateLimited as exc:
        wait = exc.retry_after_seconds + random.uniform(0, min(30.0, 0.1 * exc.retry_after_seconds + 1))
        raise self.retry(countdown=wait, exc=exc) from None
    except MirrorBusy as exc:
        raise self.retry(countdown=_mirror_backoff(self.request.retries, base=1.0), exc=exc) from None
    except GitHubError as exc:
        if not exc.retryable:
            return
        raise self.retry(countdown=_mirror_backoff(self.request.retries), exc=exc) from None
    except Exception as exc:
        raise self.retry(countdown=_mirror_backoff(self.request.retries), exc=exc) from None


@shared_task(bind=True, name=MIRROR_DRIFT_TASK, ignore_result=True, acks_late=False, max_retries=MIRROR_MAX_RETRIES)
def mirror_drift(self, environment_id: int) -> None:
    """Bring the GitHub drift issue of an environment up to date (see `sync_drift`;
    idempotent), retried like `mirror_run`."""
    from portal.services.github_drift import GitHubError, MirrorBusy, RateLimited, sync_drift

    try:
        sync_drift(environment_id)
    except RateLimited as exc:
        wait = exc.retry_after_seconds + random.uniform(0, min(30.0, 0.1 * exc.retry_after_seconds + 1))
        raise self.retry(countdown=wait, exc=exc) from None
    except MirrorBusy as exc:
        raise self.retry(countdown=_mirror_backoff(self.request.retries, base=1.0), exc=exc) from None
    except GitHubError as exc:
        if not exc.retryable:
            return
        raise self.retry(countdown=_mirror_backoff(self.request.retries), exc=exc) from None
    except Exception as exc:
        raise self.retry(countdown=_mirror_backoff(self.request.retries), exc=exc) from None


@shared_task(name="portal.mirror_catch_up", ignore_result=True)
def mirror_catch_up() -> None:
    """Periodic (Celery beat): re-schedule GitHub mirrors (requests, drift) that fell behind."""
    from portal.services.github_drift import catch_up_drift
    from portal.services.github_mirror import catch_up_stale

    catch_up_stale()
    catch_up_drift()


@shared_task(name="portal.purge_idempotency_records", ignore_result=True)
def purge_idempotency_records() -> None:
    """Periodic (Celery beat): forget Idempotency-Key answers older than their lifetime."""
    from portal.services.idempotency import purge_expired

    purge_expired()


@shared_task(name="portal.sync_patterns", ignore_result=True)
def sync_patterns() -> None:
    """Periodic (Celery beat): fetch the pattern repository's tags (PATTERNS_GIT_URL)."""
    from portal.services.catalog import sync_git

    sync_git()


@shared_task(name="portal.expire_environments", ignore_result=True)
def expire_environments() -> None:
    """Periodic (Celery beat): expiry warnings, and destroys of expired environments."""
    from portal.services.expiry import run_expiry

    run_expiry()


@shared_task(name="portal.schedule_drift_checks", ignore_result=True)
def schedule_drift_checks() -> None:
    """Periodic (Celery beat): queue drift checks of the ready environments that are due."""
    from portal.services.drift import schedule_due

    schedule_due()


@shared_task(name=DRIFT_CHECK_TASK, ignore_result=True, acks_late=False)
def check_drift(check_id: int) -> None:
    """Run one drift check on the drift queue (never in an account's run slot)."""
    from portal.services.drift import execute_check

    execute_check(check_id)


# Notification deliveries: each attempt is one bounded call (NOTIFICATION_TIMEOUT_SECONDS), so
# they share the default queue with runs; the row counts the attempts and gives up after
# NOTIFICATION_MAX_ATTEMPTS. Celery's own limit is only a backstop against a bug.
NOTIFICATION_TASK_MAX_RETRIES = 50


def _notification_backoff(attempts: int) -> float:
    """Exponential backoff with equal jitter, from the settings (tests make it short)."""
    from portal.services.notifications import retry_delay

    delay = retry_delay(attempts)
    return delay / 2 + random.uniform(0, delay / 2)


@shared_task(bind=True, name=DELIVER_NOTIFICATION_TASK, ignore_result=True, acks_late=False,
             max_retries=NOTIFICATION_TASK_MAX_RETRIES)
def deliver_notification(self, notification_id: int) -> None:
    """Send one notification (`notifications.deliver`); try again later when it says so, or
    when something else went wrong (the database away): an unreachable target is retried
    here, never in a run's task."""
    from portal.services.notifications import DeliveryFailed, deliver

    try:
        deliver(notification_id)
    except DeliveryFailed as exc:
        raise self.retry(countdown=_notification_backoff(exc.attempts), exc=exc) from None
    except Exception as exc:
        raise self.retry(countdown=_notification_backoff(self.request.retries + 1), exc=exc) from None


@shared_task(name="portal.resend_notifications", ignore_result=True)
def resend_notifications() -> None:
    """Periodic (Celery beat): send again the notifications whose message was lost."""
    from portal.services.notifications import resend_pending

    resend_pending()
