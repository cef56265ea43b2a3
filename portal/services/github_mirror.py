"""The GitHub audit trail (issue 8). Until it lands, scheduling is a no-op.

`schedule_mirror(run_id)` is called on commit of every run transition worth mirroring.
"""

from django.conf import settings


def is_enabled() -> bool:
    return bool(settings.GITHUB_TOKEN and settings.GITHUB_REPOSITORY)


def schedule_mirror(run_id: int) -> None:
    """Ask a worker to bring the run's GitHub issue up to date (idempotent, retried)."""
    if not is_enabled():
        return
