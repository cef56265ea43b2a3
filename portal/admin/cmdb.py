"""Admin for the CMDB: what admins manage (departments, sandbox accounts, CIDR pools,
products) and what they look at (environments, endpoints, allocations - read-only)."""

import ipaddress

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.db import models
from django.db.models import Count, IntegerField, OuterRef, ProtectedError, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from portal.admin.base import ReadOnlyAdminMixin, ReadOnlyInlineMixin, admin_link, pretty_json
from portal.admin.pools import (
    CidrPoolForm,
    CidrPoolInlineFormSet,
    pool_deletion_blocker,
    pools_deletion_blockers,
    with_allocation_counts,
)
from portal.models import (
    CidrAllocation,
    CidrPool,
    Department,
    Endpoint,
    Environment,
    EnvironmentStatus,
    Product,
    Run,
    SandboxAccount,
    StateVersion,
)

LIVE_ENVIRONMENTS = ~Q(environments__status=EnvironmentStatus.DELETED)


def _changelist_link(model, count: int, **filters):
    """`count` as a link to `model`'s changelist filtered by `filters`."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, count)


def _count(queryset, fk: str):
    """The number of rows of `queryset` whose `fk` points at the outer row, as a subquery."""
    counted = queryset.filter(**{fk: OuterRef("pk")}).order_by().values(fk).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


# --- Departments ----------------------------------------------------------------------------


@admin.register(Department)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "member_count", "account_count", "product_count"]
    search_fields = ["name", "slug"]
    ordering = ["name"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["members"]

    def get_queryset(self, request):
        # Subqueries, not three joined Counts: joins would multiply members x products x accounts.
        return (
            super()
            .get_queryset(request)
            .annotate(
                _members=_count(Department.members.through.objects.all(), "department"),
                _accounts=_count(SandboxAccount.objects.all(), "department"),
                _products=_count(Product.objects.all(), "department"),
            )
        )

    @admin.display(description="members", ordering="_members")
    def member_count(self, department):
        return department._members

    @admin.display(description="sandbox accounts", ordering="_accounts")
    def account_count(self, department):
        return _changelist_link(SandboxAccount, department._accounts, department__id__exact=department.pk)

    @admin.display(description="products", ordering="_products")
    def product_count(self, department):
        return _changelist_link(Product, department._products, department__id__exact=department.pk)


# --- Sandbox accounts and their CIDR pools ---------------------------------------------------


class CidrPoolInline(admin.TabularInline):
    """The account's pools, validated together (see `CidrPoolInlineFormSet`)."""

    model = CidrPool
    form = CidrPoolForm
    formset = CidrPoolInlineFormSet
    fields = ["cidr", "prefix_length", "description", "allocated"]
    readonly_fields = ["allocated"]
    extra = 1
    ordering = ["cidr"]

    def get_queryset(self, request):
        return with_allocation_counts(super().get_queryset(request))

    @admin.display(description="allocated blocks")
    def allocated(self, pool):
        if pool.pk is None:
            return "-"
        return _pool_usage(pool)


def _pool_capacity(pool) -> int | None:
    try:
        network = ipaddress.IPv4Network(pool.cidr)
    except ValueError:
        return None
    if pool.prefix_length < network.prefixlen:
        return None
    return 2 ** (pool.prefix_length - network.prefixlen)


def _pool_usage(pool) -> str:
    live = getattr(pool, "live_allocations", None)
    if live is None:
        live = pool.allocations.filter(released_at__isnull=True).count()
    capacity = _pool_capacity(pool)
    return f"{live} of {capacity}" if capacity is not None else str(live)


@admin.register(SandboxAccount)
class SandboxAccountAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "account_id",
        "kind",
        "aws_api",
        "department",
        "region",
        "dns_zone",
        "max_concurrent_runs",
        "pools",
        "live_environments",
        "is_active",
    ]
    list_filter = ["kind", "is_active", "region", "department"]
    search_fields = ["name", "account_id", "dns_zone", "department__name"]
    list_select_related = ["department"]
    ordering = ["name"]
    autocomplete_fields = ["department"]
    readonly_fields = ["created_at"]
    inlines = [CidrPoolInline]
    fieldsets = [
        (None, {"fields": ["name", "department", "kind", "is_active"]}),
        ("AWS", {"fields": ["account_id", "region", "role_arn", "external_id", "dns_zone", "endpoint_url"]}),
        ("Runs", {"fields": ["max_concurrent_runs", "created_at"]}),
        ("Drift", {"fields": ["drift_check_hours"]}),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_live_environments=Count("environments", filter=LIVE_ENVIRONMENTS, distinct=True))
            .prefetch_related("cidr_pools")
        )

    @admin.display(description="AWS API", ordering="endpoint_url")
    def aws_api(self, account):
        if account.kind != SandboxAccount.Kind.AWS:
            return "-"
        return f"simulated: {account.endpoint_url}" if account.simulated else "AWS"

    @admin.display(description="CIDR pools")
    def pools(self, account):
        return ", ".join(str(pool) for pool in account.cidr_pools.all()) or "-"

    @admin.display(description="environments", ordering="_live_environments")
    def live_environments(self, account):
        return _changelist_link(Environment, account._live_environments, account__id__exact=account.pk)


@admin.register(CidrPool)
class CidrPoolAdmin(admin.ModelAdmin):
    """Every pool across accounts; deleting one that handed out networks is refused in words."""

    form = CidrPoolForm
    list_display = ["cidr", "prefix_length", "account", "usage", "description"]
    list_filter = [("account", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["cidr", "description", "account__name", "account__account_id"]
    list_select_related = ["account"]
    ordering = ["account__name", "cidr"]
    autocomplete_fields = ["account"]
    readonly_fields = ["usage"]
    fields = ["account", "cidr", "prefix_length", "description", "usage"]

    def get_queryset(self, request):
        return with_allocation_counts(super().get_queryset(request))

    def get_inlines(self, request, obj):
        return [CidrAllocationInline] if obj is not None else []

    @admin.display(description="allocated blocks")
    def usage(self, pool):
        if pool.pk is None:
            return "-"
        return _pool_usage(pool)

    def delete_view(self, request, object_id, extra_context=None):
        pool = self.get_object(request, unquote(object_id))
        if pool is not None and self.has_delete_permission(request, pool):
            blocker = pool_deletion_blocker(pool)
            if blocker:
                self.message_user(request, blocker, messages.ERROR)
                return HttpResponseRedirect(reverse("admin:portal_cidrpool_change", args=[pool.pk]))
        try:
            return super().delete_view(request, object_id, extra_context)
        except ProtectedError:
            if pool is None:
                raise
            # An environment was allocated a block between the check and the delete.
            self.message_user(request, pool_deletion_blocker(pool) or f"{pool.cidr} is in use.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:portal_cidrpool_change", args=[pool.pk]))

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions["delete_selected"] = (guarded_delete_selected_pools, name, description)
        return actions


def guarded_delete_selected_pools(modeladmin, request, queryset):
    """Django's bulk delete, refused with a clear message when a selected pool is in use."""
    blockers = pools_deletion_blockers(queryset)
    if blockers:
        for blocker in blockers:
            modeladmin.message_user(request, blocker, messages.ERROR)
        return None
    try:
        return delete_selected(modeladmin, request, queryset)
    except ProtectedError:
        for blocker in pools_deletion_blockers(queryset) or ["A selected pool is in use."]:
            modeladmin.message_user(request, blocker, messages.ERROR)
        return None


class CidrAllocationInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = CidrAllocation
    fields = ["cidr", "environment_link", "allocated_at", "released_at"]
    readonly_fields = fields
    ordering = ["released_at", "cidr"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("environment__product")

    @admin.display(description="environment")
    def environment_link(self, allocation):
        return admin_link(allocation.environment)


# --- Products -------------------------------------------------------------------------------


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    """Products, with their environments' lifetimes (`services.expiry`; `Product.clean`
    keeps the default within the maximum) and drift schedule."""

    list_display = [
        "name", "slug", "department", "default_lifetime_hours", "max_lifetime_hours", "drift_check_hours",
        "live_environments",
    ]
    list_filter = ["department"]
    search_fields = ["name", "slug", "description", "department__name"]
    list_select_related = ["department"]
    ordering = ["name"]
    autocomplete_fields = ["department"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "department", "description"]}),
        ("Lifetime of its environments", {
            "fields": ["default_lifetime_hours", "max_lifetime_hours"],
            "description": "Empty default: new environments never expire. Empty maximum: owners may extend without limit.",
        }),
        ("Drift", {"fields": ["drift_check_hours"]}),
    ]

    def get_queryset(self, request):
        return (
            super().get_queryset(request).annotate(_live_environments=Count("environments", filter=LIVE_ENVIRONMENTS))
        )

    @admin.display(description="environments", ordering="_live_environments")
    def live_environments(self, product):
        return _changelist_link(Environment, product._live_environments, product__id__exact=product.pk)


# --- Environments (written by the engine: read-only) -----------------------------------------


# Silences Django 5.2's "default scheme will change" warning; endpoints are HTTPS anyway.
URL_FIELDS = {models.URLField: {"assume_scheme": "https"}}


class EndpointInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = Endpoint
    formfield_overrides = URL_FIELDS
    fields = ["fqdn", "url", "kind", "created_at", "released_at"]
    readonly_fields = fields
    ordering = ["released_at", "fqdn"]


class RunInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = Run
    fk_name = "environment"
    fields = ["run_link", "kind", "status", "stage", "requested_by", "queued_at", "finished_at", "explanation"]
    readonly_fields = fields
    ordering = ["-queued_at", "-id"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("requested_by")

    @admin.display(description="run")
    def run_link(self, run):
        return admin_link(run, f"#{run.pk}")


class EnvironmentCidrAllocationInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = CidrAllocation
    verbose_name_plural = "CIDR allocations"
    fields = ["cidr", "pool", "allocated_at", "released_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("pool")


@admin.register(Environment)
class EnvironmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Environments change only through their runs (create, delete, retry in the portal);
    the admin shows them, their endpoints, allocations and runs."""

    list_display = ["__str__", "status", "product", "account", "pattern", "cidr", "requested_by", "created_at"]
    list_filter = [
        "status",
        "pattern_slug",
        ("account", admin.RelatedOnlyFieldListFilter),
        ("product__department", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["name", "product__slug", "product__name", "cidr", "endpoints__fqdn", "pattern_slug"]
    list_select_related = ["product", "account", "requested_by"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    inlines = [EndpointInline, EnvironmentCidrAllocationInline, RunInline]
    fieldsets = [
        (None, {"fields": ["name", "product", "account", "status", "status_reason", "requested_by"]}),
        ("Pattern", {"fields": ["pattern", "parameters_display", "code_files"]}),
        ("Result", {"fields": ["cidr", "outputs_display", "state"]}),
        ("Expiry", {"fields": ["expires_at", "kept", "expired_at", "expiry_blocked", "expiry_warnings_sent"]}),
        ("Dates", {"fields": ["created_at", "updated_at", "deleted_at"]}),
    ]
    readonly_fields = flatten_fieldsets(fieldsets)

    @admin.display(description="pattern", ordering="pattern_slug")
    def pattern(self, environment):
        return f"{environment.pattern_slug} {environment.pattern_version}".strip()

    @admin.display(description="parameters")
    def parameters_display(self, environment):
        return pretty_json(environment.parameters)

    @admin.display(description="outputs")
    def outputs_display(self, environment):
        return pretty_json(environment.outputs)

    @admin.display(description="rendered code")
    def code_files(self, environment):
        files = environment.code_snapshot or {}
        if not files:
            return "-"
        return format_html_join(
            "",
            '<details><summary>{} ({} bytes)</summary><pre style="white-space: pre-wrap">{}</pre></details>',
            ((name, len(str(content)), content) for name, content in sorted(files.items())),
        )

    @admin.display(description="Terraform state")
    def state(self, environment):
        versions = StateVersion.objects.filter(environment=environment)
        count = versions.count()
        if not count:
            return "no state yet"
        latest = versions.latest()
        link = _changelist_link(StateVersion, count, environment__id__exact=environment.pk)
        return format_html(
            "{} {}; latest serial {} with {} resources",
            link,
            "version" if count == 1 else "versions",
            latest.serial,
            latest.resource_count,
        )


@admin.register(Endpoint)
class EndpointAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who owns this FQDN? Written after apply, released on delete."""

    formfield_overrides = URL_FIELDS
    list_display = ["fqdn", "url", "kind", "environment", "created_at", "released_at"]
    list_filter = [("released_at", admin.EmptyFieldListFilter), "kind"]
    search_fields = ["fqdn", "url", "environment__name", "environment__product__slug"]
    list_select_related = ["environment__product"]
    ordering = ["fqdn", "-created_at"]


@admin.register(CidrAllocation)
class CidrAllocationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Which environment holds (or held) which network."""

    list_display = ["cidr", "pool", "account", "environment", "allocated_at", "released_at"]
    list_filter = [("released_at", admin.EmptyFieldListFilter), ("pool__account", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["cidr", "pool__cidr", "environment__name", "environment__product__slug"]
    list_select_related = ["pool__account", "environment__product"]
    ordering = ["pool__account__name", "pool__cidr", "cidr", "-allocated_at"]

    @admin.display(description="account", ordering="pool__account__name")
    def account(self, allocation):
        return allocation.pool.account
