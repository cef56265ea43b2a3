"""Read-only admin of what the engine keeps for integrations: listener-rule priorities on
shared load balancers, and the GitHub mirror of each request."""

from django.contrib import admin

from portal.admin.base import ReadOnlyAdminMixin
from portal.models import GitHubMirror, ListenerPriority


@admin.register(ListenerPriority)
class ListenerPriorityAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["priority", "account", "environment", "listener_arn", "allocated_at", "released_at"]
    list_filter = ["account", ("released_at", admin.EmptyFieldListFilter)]
    search_fields = ["environment__name", "environment__product__slug", "listener_arn"]
    list_select_related = ["account", "environment__product"]
    ordering = ["account", "priority"]


@admin.register(GitHubMirror)
class GitHubMirrorAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["run", "repository", "issue_number", "closed", "attempts", "short_error", "updated_at"]
    list_filter = ["closed", "repository"]
    search_fields = ["repository", "issue_url", "commit_sha", "run__environment__name"]
    list_select_related = ["run__environment__product"]
    ordering = ["-updated_at"]

    @admin.display(description="last error")
    def short_error(self, mirror):
        return (mirror.last_error or "")[:120]
