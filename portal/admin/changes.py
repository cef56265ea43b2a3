"""Admin for day two - change plans, drift checks and the fleet of pattern versions: read-only. A plan is made by `services.changes.request_change`
and confirmed by `confirm_change`; editing one here would apply something nobody reviewed.

Must not import `portal.services` writers; `stale_reason` only reads.
"""

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce, Length
from django.utils.html import format_html, format_html_join

from portal.admin.base import ReadOnlyAdminMixin, admin_link, pretty_json
from portal.models import ChangePlan, DriftCheck, Environment, EnvironmentStatus, PatternVersion
from portal.services.catalog import get_versions, upgrade_available
from portal.services.changes import stale_reason


@admin.register(ChangePlan)
class ChangePlanAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "__str__",
        "environment",
        "versions",
        "summary_counts",
        "plan_run_status",
        "requested_by",
        "planned_at",
        "confirmed_at",
        "stale",
    ]
    list_filter = [("confirmed_at", admin.EmptyFieldListFilter), "plan_run__status", "pattern_version"]
    search_fields = ["=id", "environment__name", "environment__product__slug", "requested_by__username"]
    list_select_related = ["environment__product", "plan_run", "apply_run", "requested_by"]
    ordering = ["-created_at", "-id"]
    date_hierarchy = "created_at"
    fieldsets = [
        (None, {"fields": ["environment_link", "plan_run_link", "apply_run_link", "stale"]}),
        ("Request", {"fields": ["requested_by", "created_at", "pattern_version_before", "pattern_version", "parameters_display"]}),
        ("Plan", {"fields": ["planned_at", "state_serial", "summary_counts", "plan_file_size", "resource_changes_display"]}),
        ("Confirmation", {"fields": ["confirmed_at", "confirmed_by"]}),
    ]
    # `plan_file` (a binary) and `code_snapshot` (the rendered code) are left out: the size of
    # the one and the run page's commands say enough, and neither is to be edited.
    readonly_fields = flatten_fieldsets(fieldsets)

    def get_queryset(self, request):
        return (
            super().get_queryset(request)
            .select_related("environment__product", "plan_run", "apply_run", "requested_by", "confirmed_by")
            .defer("plan_file", "code_snapshot")
        )

    @admin.display(description="versions")
    def versions(self, plan):
        if plan.is_upgrade:
            return f"{plan.pattern_version_before} → {plan.pattern_version}"
        return plan.pattern_version

    @admin.display(description="summary")
    def summary_counts(self, plan):
        summary = plan.summary
        if not summary:
            return "-"
        text = f"+{summary.get('add', 0)} ~{summary.get('change', 0)} -{summary.get('destroy', 0)}"
        extras = [f"{summary[key]} {word}" for key, word in (("replace", "replaced"), ("move", "moved")) if summary.get(key)]
        return f"{text} ({', '.join(extras)})" if extras else text

    @admin.display(description="plan run status", ordering="plan_run__status")
    def plan_run_status(self, plan):
        return plan.plan_run.get_status_display()

    @admin.display(description="stale reason")
    def stale(self, plan):
        return stale_reason(plan) or "- (can be confirmed)"

    @admin.display(description="environment")
    def environment_link(self, plan):
        return admin_link(plan.environment)

    @admin.display(description="plan run")
    def plan_run_link(self, plan):
        return admin_link(plan.plan_run)

    @admin.display(description="update run")
    def apply_run_link(self, plan):
        return admin_link(plan.apply_run)

    @admin.display(description="parameters")
    def parameters_display(self, plan):
        return pretty_json(plan.parameters)

    @admin.display(description="saved plan file")
    def plan_file_size(self, plan):
        # Its length only: the file itself stays in the database (deferred above).
        size = ChangePlan.objects.filter(pk=plan.pk).annotate(size=Length("plan_file")).values_list("size", flat=True).first()
        return f"{size} bytes" if size else "-"

    @admin.display(description="per resource")
    def resource_changes_display(self, plan):
        if not plan.resource_changes:
            return "-"
        rows = format_html_join(
            "\n",
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            (
                (
                    change.get("action", ""),
                    change.get("address", ""),
                    ", ".join(str(a) for a in change.get("attributes") or []) or "-",
                    f"moved from {change['moved_from']}" if change.get("moved_from") else "",
                )
                for change in plan.resource_changes
            ),
        )
        return format_html(
            "<table><thead><tr><th>action</th><th>address</th><th>attributes</th><th></th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )


@admin.register(DriftCheck)
class DriftCheckAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Drift checks are made by `services.drift` (the schedule, "Check now"); read-only here."""

    list_display = ["__str__", "environment", "status", "drifted_count", "requested_by", "queued_at", "finished_at"]
    list_filter = ["status", ("requested_by", admin.EmptyFieldListFilter)]
    search_fields = ["=id", "environment__name", "environment__product__slug"]
    list_select_related = ["environment__product", "requested_by"]
    ordering = ["-queued_at", "-id"]
    date_hierarchy = "queued_at"
    fieldsets = [
        (None, {"fields": ["environment_link", "status", "explanation", "requested_by"]}),
        ("When", {"fields": ["queued_at", "started_at", "finished_at", "worker", "state_serial"]}),
        ("Found", {"fields": ["resources_display", "log"]}),
    ]
    readonly_fields = flatten_fieldsets(fieldsets)

    @admin.display(description="drifted resources")
    def drifted_count(self, check):
        return len(check.resources or [])

    @admin.display(description="environment")
    def environment_link(self, check):
        return admin_link(check.environment)

    @admin.display(description="resources")
    def resources_display(self, check):
        return pretty_json(check.resources)


@admin.register(PatternVersion)
class PatternVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The fleet: every pattern version an environment was built with or changed to, how many
    live environments run it, what they could upgrade to, and whether its files still match
    what was recorded when it was first used (a used version is immutable)."""

    list_display = ["__str__", "source", "live_environments", "upgrade", "unchanged", "first_used_at"]
    search_fields = ["slug", "version"]
    ordering = ["slug", "version"]
    readonly_fields = ["slug", "version", "digest", "source", "first_used_at"]

    def get_queryset(self, request):
        live = (
            Environment.objects.exclude(status=EnvironmentStatus.DELETED)
            .filter(pattern_slug=OuterRef("slug"), pattern_version=OuterRef("version"))
            .order_by().values("pattern_slug").annotate(n=Count("id")).values("n")
        )
        return super().get_queryset(request).annotate(live=Coalesce(Subquery(live), 0))

    @admin.display(description="live environments", ordering="live")
    def live_environments(self, record):
        return record.live

    @admin.display(description="upgrade available")
    def upgrade(self, record):
        return upgrade_available(record.slug, record.version) or "-"

    @admin.display(description="files unchanged", boolean=True)
    def unchanged(self, record):
        """False: the catalog's files for this used version differ (it is refused); empty: no longer held."""
        held = next((p for p in get_versions(record.slug) if p.version == record.version), None)
        return None if held is None else held.digest == record.digest
