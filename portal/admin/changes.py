"""Admin for change plans (day two): read-only. A plan is made by `services.changes.request_change`
and confirmed by `confirm_change`; editing one here would apply something nobody reviewed.

Must not import `portal.services` writers; `stale_reason` only reads.
"""

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models.functions import Length
from django.utils.html import format_html, format_html_join

from portal.admin.base import ReadOnlyAdminMixin, admin_link, pretty_json
from portal.models import ChangePlan
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
