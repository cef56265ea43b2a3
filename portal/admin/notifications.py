"""Admin of notifications: staff manage department and personal targets (the URL is a
write-only field, stored encrypted, shown back as its scheme and host only) and see every
notification and its delivery attempts, read-only, with the last error (redacted)."""

from django import forms
from django.contrib import admin, messages

from portal.admin.base import ReadOnlyAdminMixin
from portal.models import Notification, NotificationEvent, NotificationTarget
from portal.services import notifications
from portal.services.errors import ServiceError


class NotificationTargetForm(forms.ModelForm):
    """The URL is typed, never shown: PasswordInput renders no value, and the model keeps
    only its encrypted form and hint. On change, empty keeps the URL there is."""

    url = forms.CharField(
        label="Apprise URL", required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 80}),
        help_text="e.g. mailto://user:password@smtp.example.com?to=team@example.com, slack://..., msteams://..., "
        "json://host/path. Stored encrypted and never shown again; on change, leave empty to keep the current one.",
    )
    events = forms.MultipleChoiceField(
        choices=NotificationEvent.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked = every event.",
    )

    class Meta:
        model = NotificationTarget
        fields = ["name", "department", "user", "url", "events", "is_active"]

    def clean_url(self):
        url = self.cleaned_data.get("url", "")
        if not url and self.instance.pk is None:
            raise forms.ValidationError("Enter the target's Apprise URL.")
        return url

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("department")) == bool(cleaned.get("user")):
            raise forms.ValidationError("A target belongs to one department or one person: choose exactly one.")
        url = cleaned.get("url")
        if url:
            try:
                notifications.set_target_url(self.instance, url)
            except ServiceError as exc:
                self.add_error("url", exc.message)
        return cleaned


@admin.register(NotificationTarget)
class NotificationTargetAdmin(admin.ModelAdmin):
    form = NotificationTargetForm
    list_display = ["name", "owner", "url_hint", "event_list", "is_active", "created_at"]
    list_filter = ["is_active", "department"]
    search_fields = ["name", "url_hint", "user__username", "department__name"]
    list_select_related = ["department", "user"]
    readonly_fields = ["url_hint", "created_at"]
    fieldsets = [(None, {"fields": ["name", "department", "user", "url", "url_hint", "events", "is_active", "created_at"]})]

    @admin.display(description="belongs to")
    def owner(self, target):
        return target.department or target.user

    @admin.display(description="events")
    def event_list(self, target):
        return ", ".join(target.events) if target.events else "all"


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "event", "environment", "target", "status", "attempts", "short_error", "sent_at"]
    list_filter = ["status", "event"]
    search_fields = ["title", "environment__name", "environment__product__slug", "target__name"]
    list_select_related = ["environment__product", "target"]
    ordering = ["-created_at", "-id"]
    fields = ["event", "environment", "target", "target_hint", "dedupe_key", "title", "body", "status", "attempts",
              "last_error", "created_at", "sent_at"]
    readonly_fields = fields
    actions = ["send_again_action"]

    @admin.display(description="target address")
    def target_hint(self, notification):
        return notification.target.url_hint

    @admin.display(description="last error")
    def short_error(self, notification):
        return (notification.last_error or "")[:120]

    def get_actions(self, request):
        # The read-only mixin forbids delete, which hides actions; sending again is the one write.
        actions = super().get_actions(request)
        if not request.user.is_staff:
            actions.pop("send_again_action", None)
        return actions

    @admin.action(description="Send the selected failed notifications again")
    def send_again_action(self, request, queryset):
        queued = notifications.send_again(queryset.values_list("pk", flat=True))
        self.message_user(request, f"Queued {queued} failed notification(s) again.", messages.SUCCESS)
