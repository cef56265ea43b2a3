"""Reads: the queries the UI, the API and the CLI share (services write, selectors read)."""

import ipaddress

from django.db.models import Count, F, OuterRef, Prefetch, Subquery

from portal.models import (
    CidrAllocation,
    CidrPool,
    Endpoint,
    Environment,
    Product,
    Run,
    RunEvent,
    SandboxAccount,
)


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



def environments_for_list():
    """Environments with product, department, account, live endpoints and the id of the
    unfinished run (if any) in a fixed number of queries."""
    unfinished = Run.objects.filter(environment=OuterRef("pk"), status__in=["queued", "running"]).order_by("-id")
    return (
        Environment.objects.select_related("product__department", "account")
        .prefetch_related(
            Prefetch(
                "endpoints",
                queryset=Endpoint.objects.filter(released_at__isnull=True).order_by("fqdn"),
                to_attr="live_endpoints",
            )
        )
        .annotate(active_run_id=Subquery(unfinished.values("pk")[:1]))
        .order_by("-created_at", "-id")
    )


def environment_detail(pk: int) -> Environment:
    """One environment with what its page shows joined (raises Environment.DoesNotExist)."""
    return Environment.objects.select_related("product__department", "account", "requested_by").get(pk=pk)


def environment_endpoints(environment: Environment):
    """Live endpoints first, then released ones (kept for audit)."""
    return list(environment.endpoints.order_by(F("released_at").desc(nulls_first=True), "fqdn"))


def live_endpoints(environment_id: int):
    """The endpoints an environment serves now (released ones are audit only)."""
    return list(Endpoint.objects.filter(environment_id=environment_id, released_at__isnull=True).order_by("fqdn"))


def environment_runs(environment: Environment):
    """Run history, newest first, with requester, GitHub mirror and rollback links joined."""
    return list(
        environment.runs.select_related("requested_by", "github_mirror", "rollback_of", "rollback_run").order_by(
            "-queued_at", "-id"
        )
    )


def run_detail(pk: int) -> Run:
    """One run with its environment, account, rollback links and GitHub mirror joined."""
    return Run.objects.select_related(
        "environment__product__department",
        "environment__account",
        "account",
        "requested_by",
        "cancel_requested_by",
        "rollback_of",
        "rollback_run",
        "github_mirror",
    ).get(pk=pk)


def rollback_of_run(run: Run) -> Run | None:
    """The rollback run that took over after `run` failed, if any (fresh from the database)."""
    return Run.objects.filter(rollback_of_id=run.pk).first()


def run_stage_reached(run: Run) -> str:
    """The last pipeline stage a run entered. A finished run's `stage` is `done`, so the
    stage bar reads where it got to from its last stage event."""
    if run.stage not in ("done",):
        return run.stage
    data = (
        RunEvent.objects.filter(run_id=run.pk, kind=RunEvent.Kind.STAGE)
        .order_by("-seq")
        .values_list("data", flat=True)
        .first()
    )
    if isinstance(data, dict) and data.get("stage"):
        return data["stage"]
    return "queued"


def run_events_tail(run_id: int, limit: int = 2000) -> tuple[list[RunEvent], bool]:
    """The last `limit` events of a run, oldest first, and whether earlier ones were left out."""
    events = list(RunEvent.objects.filter(run_id=run_id).order_by("-seq")[: limit + 1])
    truncated = len(events) > limit
    return list(reversed(events[:limit])), truncated


def products_for_user(user):
    """Products the user may request environments for: staff all, others their departments'."""
    products = Product.objects.select_related("department").order_by("department__name", "name")
    if getattr(user, "is_staff", False):
        return products
    return products.filter(department__members=user)


def product_by_id(pk: int):
    """A product with its department, or None."""
    return Product.objects.select_related("department").filter(pk=pk).first()


def active_accounts_of_department(department_id: int):
    """Sandbox accounts that take new environments, as `choose_account` picks them (by name)."""
    return SandboxAccount.objects.filter(department_id=department_id, is_active=True).order_by("name")


def account_load(account) -> dict:
    """How busy an account is right now: running and queued runs, its slot count."""
    counts = dict(
        Run.objects.filter(account_id=account.pk, status__in=["queued", "running"])
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return {
        "running": counts.get("running", 0),
        "queued": counts.get("queued", 0),
        "slots": account.max_concurrent_runs,
    }


def free_network_count(account) -> int | None:
    """Free CIDR blocks left in the account's pools; None when it has no pools."""
    pools = list(CidrPool.objects.filter(account_id=account.pk))
    if not pools:
        return None
    held = dict(
        CidrAllocation.objects.filter(pool__in=pools, released_at__isnull=True)
        .values_list("pool_id")
        .annotate(n=Count("pk"))
        .values_list("pool_id", "n")
    )
    total = 0
    for pool in pools:
        blocks = 2 ** (pool.prefix_length - ipaddress.IPv4Network(pool.cidr).prefixlen)
        total += max(0, blocks - held.get(pool.pk, 0))
    return total


def environment_name_taken(product, name: str) -> bool:
    """Whether a live (not deleted) environment of `product` already has `name`."""
    return Environment.objects.filter(product=product, name=name).exclude(status="deleted").exists()
