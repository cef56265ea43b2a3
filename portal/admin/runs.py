"""Admin for runs: read-only. A run's status moves only through `portal.services.runs`."""

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from portal.admin.base import ReadOnlyAdminMixin, admin_link, pretty_json
from portal.models import Run

# A run of a big pattern logs thousands of lines; the page shows the tail (newest last).
EVENTS_SHOWN = 500


@admin.register(Run)
class RunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "__str__",
        "environment",
        "kind",
        "status",
        "stage",
        "account",
        "progress",
        "requested_by",
        "queued_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "stage", ("account", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "environment__name", "environment__product__slug", "worker", "explanation"]
    list_select_related = ["environment__product", "account", "requested_by"]
    ordering = ["-queued_at", "-id"]
    date_hierarchy = "queued_at"
    fieldsets = [
        (None, {"fields": ["environment_link", "account", "kind", "status", "stage", "progress", "rollback_links"]}),
        ("Request", {"fields": ["requested_by", "pattern_slug", "pattern_version"]}),
        (
            "Timing",
            {
                "fields": [
                    "queued_at",
                    "dispatched_at",
                    "started_at",
                    "finished_at",
                    "lease_expires_at",
                    "worker",
                    "cancel_requested_at",
                    "cancel_requested_by",
                ]
            },
        ),
        ("Outcome", {"fields": ["explanation", "traceback_display", "plan_summary_display", "commands_display"]}),
        ("Events", {"fields": ["event_log"]}),
    ]
    # `state_token_hash` is deliberately absent: a credential hash has no business on a page.
    readonly_fields = flatten_fieldsets(fieldsets)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("environment__product", "account", "requested_by")

    @admin.display(description="environment")
    def environment_link(self, run):
        return admin_link(run.environment)

    @admin.display(description="progress")
    def progress(self, run):
        percent = run.progress_percent
        if percent is None:
            return "-"
        return f"{percent}% ({run.resources_done}/{run.resources_planned})"

    @admin.display(description="rollback")
    def rollback_links(self, run):
        if run.rollback_of_id:
            return format_html("rollback of {}", admin_link(run.rollback_of))
        rollback = Run.objects.filter(rollback_of=run).first()
        if rollback is not None:
            return format_html("rolled back by {}", admin_link(rollback))
        return "-"

    @admin.display(description="traceback")
    def traceback_display(self, run):
        if not run.traceback:
            return "-"
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', run.traceback)

    @admin.display(description="plan summary")
    def plan_summary_display(self, run):
        return pretty_json(run.plan_summary)

    @admin.display(description="commands")
    def commands_display(self, run):
        return pretty_json(run.commands)

    @admin.display(description="events (newest last)")
    def event_log(self, run):
        total = run.events.count()
        if not total:
            return "no events yet"
        events = list(run.events.order_by("-seq")[:EVENTS_SHOWN])[::-1]
        lines = format_html_join(
            "\n",
            "{:>5} {} {:<6} {:<6} {}",
            (
                (event.seq, localtime(event.created_at).strftime("%H:%M:%S"), event.kind, event.level, event.message)
                for event in events
            ),
        )
        note = f"showing the last {len(events)} of {total} events\n" if total > len(events) else ""
        return format_html(
            '<pre style="white-space: pre-wrap; max-height: 40em; overflow: auto">{}{}</pre>', note, lines
        )
