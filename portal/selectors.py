"""Reads: the queries the UI, the API and the CLI share (services write, selectors read).

Querysets are built here once per resource with every relation a page or serializer touches
joined or prefetched, so a list costs the same handful of queries at any page size. Must not
import services, views or the API.
"""

import ipaddress

from django.db.models import Count, F, Prefetch, Window
from django.db.models.functions import RowNumber

from portal.models import (
    ChangePlan,
    CidrAllocation,
    CidrPool,
    Endpoint,
    Environment,
    EnvironmentStatus,
    Product,
    Run,
    RunEvent,
    RunStatus,
    SandboxAccount,
)
from portal.compiled_queries import CompiledValues
from portal.models.runs import UNFINISHED


def environment_by_ref(ref: str) -> Environment:
    """An environment by id or `product/name` (the live one first, else the newest)."""
    if ref.isdigit():
        return Environment.objects.select_related("product", "account").get(pk=int(ref))
    product, _, name = ref.partition("/")
    candidates = Environment.objects.select_related("product", "account").filter(product__slug=product, name=name)
    live = candidates.exclude(status=EnvironmentStatus.DELETED).first()
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



# The columns an environment list row reads (the list page and `EnvironmentSerializer`):
# decoding and building whole rows of five joined tables was most of a list request's time.
# A field missing here costs one query per row: tests/api compare query counts at two page sizes.
ENVIRONMENT_LIST_COLUMNS = (
    "id", "name", "pattern_slug", "pattern_version", "status", "status_reason", "cidr",
    "created_at", "updated_at", "deleted_at", "product_id", "account_id", "requested_by_id",
    "product__id", "product__slug", "product__name", "product__department_id",
    "product__department__id", "product__department__slug", "product__department__name",
    "account__id", "account__name", "account__account_id", "account__kind", "account__region", "account__endpoint_url",
    "requested_by__id", "requested_by__username", "drift_status", "drift_checked_at",
    "expires_at", "kept", "expired_at", "expiry_blocked",
)  # fmt: skip
# The run summary of a list row (`latest_runs`) plus what queue_position needs.
LATEST_RUN_COLUMNS = (
    "id", "environment_id", "account_id", "kind", "status", "stage", "queued_at", "started_at",
    "finished_at", "explanation", "resources_planned", "resources_done",
)  # fmt: skip
LATEST_RUN_ORDER = (F("queued_at").desc(), F("id").desc())  # an environment's newest run
ENDPOINT_REF_COLUMNS = ("id", "fqdn", "url", "kind")  # an endpoint in an environment row


def environments(columns: tuple[str, ...] | None = None):
    """Environments, newest first, with product, department, account, requester, their live
    endpoints (`live_endpoints`) and their newest run (`latest_runs`, at most one; it is the
    unfinished one when there is one): 1 query + 2 prefetches. `columns` restricts the
    environment query to what a list shows (ENVIRONMENT_LIST_COLUMNS)."""
    queryset = (
        Environment.objects.select_related("product__department", "account", "requested_by")
        .prefetch_related(
            Prefetch(
                "endpoints",
                queryset=Endpoint.objects.filter(released_at__isnull=True)
                .only("environment_id", *ENDPOINT_REF_COLUMNS)
                .order_by("fqdn"),
                to_attr="live_endpoints",
            ),
            # A sliced prefetch: Django fetches only the newest run of each environment.
            Prefetch(
                "runs",
                queryset=Run.objects.only(*LATEST_RUN_COLUMNS).order_by(*LATEST_RUN_ORDER)[:1],
                to_attr="latest_runs",
            ),
        )
        # Newest first. Ids grow with created_at (auto_now_add), and `-id` walks the primary
        # key index backwards instead of sorting every environment to keep one page.
        .order_by("-id")
    )
    return queryset.only(*columns) if columns else queryset


def environments_for_list():
    """The environment list of the UI and the API (filtered by `EnvironmentFilterSet`)."""
    return environments(ENVIRONMENT_LIST_COLUMNS)


# The three queries of an environment list page, compiled once (see portal.compiled_queries).
_LIST_ROWS = CompiledValues(
    lambda ids: Environment.objects.filter(pk__in=ids).order_by("-id").values(*ENVIRONMENT_LIST_COLUMNS)
)
_LIST_ENDPOINTS = CompiledValues(
    lambda ids: Endpoint.objects.filter(environment_id__in=ids, released_at__isnull=True)
    .order_by("fqdn", "id")
    .values("environment_id", *ENDPOINT_REF_COLUMNS)
)
_LIST_LATEST_RUNS = CompiledValues(
    lambda ids: Run.objects.filter(environment_id__in=ids)
    .annotate(newest=Window(RowNumber(), partition_by=F("environment_id"), order_by=LATEST_RUN_ORDER))
    .filter(newest=1)
    .values(*LATEST_RUN_COLUMNS)
)


def environment_list_rows(ids: list[int]) -> list[dict]:
    """One page of the API's environment list as plain rows, newest first. Each row holds
    ENVIRONMENT_LIST_COLUMNS (related columns as `product__slug`), `live_endpoints` (dicts of
    ENDPOINT_REF_COLUMNS, by FQDN) and `latest_run` (a dict of LATEST_RUN_COLUMNS, or None).
    Three queries at any page size, compiled once. Model instances are not built: at 100,000
    environments building the ~350 instances of a page of 50 with their joins, and compiling
    the same three queries again, were most of the list's time (issue 14)."""
    rows = _LIST_ROWS(ids)
    if not rows:
        return rows
    by_id = {}
    for row in rows:
        row["live_endpoints"], row["latest_run"] = [], None
        by_id[row["id"]] = row
    for endpoint in _LIST_ENDPOINTS(list(by_id)):
        by_id[endpoint.pop("environment_id")]["live_endpoints"].append(endpoint)
    for run in _LIST_LATEST_RUNS(list(by_id)):
        by_id[run["environment_id"]]["latest_run"] = run
    return rows


def runs(detail: bool = False):
    """Runs, newest first, with what a run list row (or, for `detail`, a run page) reads; a
    list leaves out the columns only the detail shows (what ran, the plan, the traceback)."""
    queryset = Run.objects.select_related("environment__product__department", "account", "requested_by")
    if detail:
        return queryset.select_related("cancel_requested_by", "github_mirror", "rollback_run").order_by("-queued_at", "-id")
    return queryset.defer("commands", "plan_summary", "traceback", "state_token_hash").order_by("-queued_at", "-id")


def endpoints():
    """Endpoints (the CMDB's FQDN records) with the environment that owns each, by FQDN."""
    return Endpoint.objects.select_related(
        "environment__product__department", "environment__account", "environment__requested_by"
    ).order_by("fqdn", "id")


def endpoint_owning(fqdn: str) -> Endpoint | None:
    """The live endpoint with this (normalised) FQDN, its owners joined; None when free."""
    return endpoints().filter(fqdn=fqdn, released_at__isnull=True).first()


def endpoint_last_released(fqdn: str) -> Endpoint | None:
    """The endpoint that held this FQDN last, for "it belonged to ... until ..."."""
    return endpoints().filter(fqdn=fqdn, released_at__isnull=False).order_by("-released_at", "-id").first()


def fqdn_holders(fqdns: list[str], *, excluding_environment_id: int | None = None) -> dict[str, str]:
    """For each of `fqdns` held by a live endpoint now: `product/name` of its environment
    (an environment being changed keeps its own: `excluding_environment_id`)."""
    held = Endpoint.objects.filter(fqdn__in=[fqdn.lower() for fqdn in fqdns], released_at__isnull=True)
    if excluding_environment_id is not None:
        held = held.exclude(environment_id=excluding_environment_id)
    held = held.values_list("fqdn", "environment__product__slug", "environment__name")
    return {fqdn: f"{product}/{name}" for fqdn, product, name in held}


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


def account_by_id(pk: int):
    """A sandbox account with its department, or None."""
    return SandboxAccount.objects.select_related("department").filter(pk=pk).first()


def account_load(account) -> dict:
    """How busy an account is right now: running and queued runs, its slot count."""
    counts = dict(
        Run.objects.filter(account_id=account.pk, status__in=UNFINISHED)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return {
        "running": counts.get(RunStatus.RUNNING, 0),
        "queued": counts.get(RunStatus.QUEUED, 0),
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


def live_environment_names(product):
    """Names of the product's environments that are not deleted."""
    return Environment.objects.filter(product=product).exclude(status=EnvironmentStatus.DELETED).values_list("name", flat=True)


def environment_name_taken(product, name: str) -> bool:
    """Whether a live (not deleted) environment of `product` already has `name`."""
    return live_environment_names(product).filter(name=name).exists()


def change_plans():
    """Change plans, newest first, with what their API shape reads (not the saved plan file
    or the rendered code: only the worker needs those)."""
    return (
        ChangePlan.objects.select_related("environment__product", "plan_run", "requested_by", "confirmed_by")
        .defer("plan_file", "code_snapshot")
        .order_by("-created_at", "-id")
    )


def drift_checks():
    """Drift checks with what their list shows (environment and its product)."""
    from portal.models import DriftCheck

    return DriftCheck.objects.select_related("environment__product", "requested_by")
