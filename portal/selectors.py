"""Reads: the queries the UI, the API and the CLI share (services write, selectors read)."""

from django.db.models import Q

from portal.models import Environment, Run, RunEvent


def environment_by_ref(ref: str) -> Environment:
    """An environment by id or `product/name` (the live one first, else the newest)."""
    if ref.isdigit():
        return Environment.objects.select_related("product", "account").get(pk=int(ref))
    product, _, name = ref.partition("/")
    candidates = Environment.objects.select_related("product", "account").filter(product__slug=product, name=name)
    live = candidates.exclude(status="deleted").first()
    if live:
        return live
    newest = candidates.order_by("-created_at").first()
    if newest is None:
        raise Environment.DoesNotExist(f"no environment {ref!r}")
    return newest


def latest_run(environment: Environment) -> Run | None:
    return environment.runs.order_by("-queued_at", "-id").first()


def run_events_after(run_id: int, after: int = 0, limit: int = 500) -> list[RunEvent]:
    """Events of a run with seq > after, oldest first (for tailing)."""
    return list(RunEvent.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")[:limit])


def unfinished_runs(account_id: int | None = None):
    qs = Run.objects.filter(Q(status="queued") | Q(status="running"))
    return qs.filter(account_id=account_id) if account_id else qs
