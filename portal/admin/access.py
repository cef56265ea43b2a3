"""Admin for API access: tokens (read-only, with a "revoke" action) and idempotency records
(read-only). Tokens are made by their owners (browser UI or API); the admin never sees a key,
only its prefix, and revokes through `portal.services.tokens` like everyone else.
"""

from django.contrib import admin, messages
from django.utils import timezone

from portal.admin.base import ReadOnlyAdminMixin, pretty_json
from portal.models import ApiToken, IdempotencyRecord
from portal.services import tokens
from portal.services.errors import ServiceError


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who holds which token, when it was last used; revoke a lost or leaked one here."""

    list_display = ["name", "shown_prefix", "user", "created_at", "last_used_at", "expires_at", "revoked_at", "usable"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), ("expires_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username", "user__email"]
    list_select_related = ["user"]
    ordering = ["-created_at", "-id"]
    date_hierarchy = "created_at"
    actions = ["revoke_action"]
    # `key_hash` is deliberately absent: even a hash of a credential has no business on a page.
    fields = ["name", "user", "shown_prefix", "created_at", "last_used_at", "expires_at", "revoked_at", "usable"]
    readonly_fields = fields

    @admin.display(description="key starts with")
    def shown_prefix(self, token):
        return f"{token.prefix}…"

    @admin.display(description="usable", boolean=True)
    def usable(self, token):
        return tokens.is_usable(token, timezone.now())

    @admin.action(description="Revoke the selected API tokens")
    def revoke_action(self, request, queryset):
        revoked = 0
        for token in queryset:
            if token.revoked_at is not None:
                continue
            try:
                tokens.revoke_token(user=request.user, token_id=token.pk)
            except ServiceError as exc:
                self.message_user(request, f"{token}: {exc.message}", messages.ERROR)
            else:
                revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s); they stop working at once.", messages.SUCCESS)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The first answer to POSTs sent with an Idempotency-Key (kept 24 hours); for debugging
    "why did my retry not create anything"."""

    list_display = ["key", "user", "method", "path", "response_status", "created_at", "completed_at"]
    list_filter = ["method", "response_status"]
    search_fields = ["=key", "user__username", "path"]
    list_select_related = ["user"]
    ordering = ["-created_at", "-id"]
    date_hierarchy = "created_at"
    fields = ["key", "user", "method", "path", "request_hash", "response_status", "body_display", "created_at", "completed_at"]
    readonly_fields = fields

    @admin.display(description="response body")
    def body_display(self, record):
        return pretty_json(record.response_body)
