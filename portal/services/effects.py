"""What a committed run transition sets off, and nothing else.

Two effects follow transitions (`portal.services.runs`, the only caller):
- `queue_moved(account_id)`: a run joined or left an account's queue or slots, so the queue
  may move on (`dispatch.dispatch_account`);
- `run_changed(run_id)`: the request's GitHub issue should follow (`github_mirror.schedule_mirror`).

Each is called inside the transition's transaction and runs only after it commits (STYLE
rule 2). The
handlers are registered by `PortalConfig.ready()`: the queue imports the transitions and the
mirror imports the GitHub client, so if the transitions imported them back there would be
an import cycle (the old code broke it with imports inside functions).

Must not import other services, views or Celery tasks.
"""

from collections.abc import Callable

from django.db import transaction

_handlers: dict[str, Callable[[int], object]] = {}


def register(queue_moved: Callable[[int], object], run_changed: Callable[[int], object]) -> None:
    """Install the handlers (at app start-up)."""
    _handlers["queue_moved"] = queue_moved
    _handlers["run_changed"] = run_changed


def queue_moved(account_id: int) -> None:
    """The account's queue may move on: dispatch it after commit (idempotent)."""
    _after_commit("queue_moved", account_id)


def run_changed(run_id: int) -> None:
    """The run's GitHub issue should follow: schedule the mirror after commit (idempotent)."""
    _after_commit("run_changed", run_id)


def _after_commit(effect: str, target: int) -> None:
    handler = _handlers.get(effect)
    if handler is None:
        raise RuntimeError(f"no handler for the {effect!r} effect: PortalConfig.ready() registers them")
    # Outside a transaction Django runs it at once: the change is already committed.
    transaction.on_commit(lambda: handler(target))
