"""Admin for the hosted Terraform state: read-only, and the state itself is never shown.

A state document holds every attribute Terraform knows, secrets included, so the admin shows
its metadata (serial, lineage, size, resource count) only. Locks are force-released through
the portal's service (which records a StateLockRelease), not by deleting rows here.
"""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse

from portal.admin.base import ReadOnlyAdminMixin, pretty_json
from portal.models import StateLock, StateLockRelease, StateVersion
from portal.services.state import force_unlock


@admin.register(StateVersion)
class StateVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["environment", "serial", "resource_count", "size", "lineage", "md5", "run", "created_at"]
    search_fields = ["environment__name", "environment__product__slug", "lineage", "md5"]
    list_select_related = ["environment__product", "run"]
    ordering = ["-id"]
    date_hierarchy = "created_at"
    fields = ["environment", "run", "serial", "lineage", "md5", "size", "resource_count", "content_note", "created_at"]
    readonly_fields = fields

    @admin.display(description="content")
    def content_note(self, version):
        return f"{version.size} bytes, not shown (Terraform state can contain secrets)."


def _lock_field(key):
    @admin.display(description=key.lower())
    def field(self, lock):
        return (lock.info or {}).get(key, "") if isinstance(lock.info, dict) else ""

    return field


class ForceUnlockForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded with your name. Only release a lock whose holder is gone: a live Terraform would lose its lock.",
    )


@admin.register(StateLock)
class StateLockAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    actions = ["force_unlock_action"]

    def has_change_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        # The read-only mixin forbids delete, which hides actions; force-unlock is the one
        # write admins may do here, and only superusers.
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("force_unlock_action", None)
        return actions

    @admin.action(description="Force-unlock the selected state locks")
    def force_unlock_action(self, request, queryset):
        form = ForceUnlockForm(request.POST if "reason" in request.POST else None)
        if form.is_valid():
            released = sum(
                force_unlock(lock.environment_id, user=request.user, reason=form.cleaned_data["reason"])
                for lock in queryset
            )
            self.message_user(request, f"Released {released} lock(s); recorded with your name and reason.", messages.SUCCESS)
            return HttpResponseRedirect(request.get_full_path())
        return TemplateResponse(
            request,
            "admin/portal/statelock/force_unlock.html",
            {
                **self.admin_site.each_context(request),
                "title": "Force-unlock Terraform state",
                "locks": queryset,
                "form": form,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    list_display = ["environment", "lock_id", "operation", "who", "run", "created_at"]
    search_fields = ["environment__name", "environment__product__slug", "lock_id"]
    list_select_related = ["environment__product", "run"]
    ordering = ["-created_at"]
    fields = ["environment", "lock_id", "run", "info_display", "created_at"]
    readonly_fields = fields

    operation = _lock_field("Operation")
    who = _lock_field("Who")

    @admin.display(description="lock info")
    def info_display(self, lock):
        return pretty_json(lock.info)


@admin.register(StateLockRelease)
class StateLockReleaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["environment", "lock_id", "released_by", "reason", "released_at"]
    search_fields = ["environment__name", "environment__product__slug", "lock_id", "reason"]
    list_select_related = ["environment__product", "released_by"]
    ordering = ["-released_at"]
    fields = ["environment", "lock_id", "released_by", "reason", "info_display", "released_at"]
    readonly_fields = fields

    @admin.display(description="lock info")
    def info_display(self, release):
        return pretty_json(release.info)
