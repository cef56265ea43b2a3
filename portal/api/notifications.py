"""GET /api/v1/notifications/ (staff only): every notification and its delivery - status,
attempts, the last error (redacted) - and the target it went to, by name and scheme://host;
never the target's URL. Filters: `?status=`, `?event=`, `?environment=`."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAdminUser

from portal.api.views import ApiViewMixin, ListFiltersOnlyMixin
from portal.filters import NotificationFilterSet
from portal.models import Notification


class NotificationSerializer(serializers.ModelSerializer):
    target_name = serializers.CharField(source="target.name", read_only=True)
    target_hint = serializers.CharField(source="target.url_hint", read_only=True,
                                        help_text="The target's scheme and host; its URL is never shown.")

    class Meta:
        model = Notification
        fields = ["id", "event", "environment", "target", "target_name", "target_hint", "dedupe_key", "title", "body",
                  "status", "attempts", "last_error", "created_at", "sent_at"]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(summary="List notifications (staff)"),
    retrieve=extend_schema(summary="Show a notification (staff)"),
)
class NotificationViewSet(ApiViewMixin, ListFiltersOnlyMixin, viewsets.ReadOnlyModelViewSet):
    """Notifications and their deliveries, for staff: who was told what, and what failed."""

    serializer_class = NotificationSerializer
    permission_classes = [IsAdminUser]
    filterset_class = NotificationFilterSet

    def get_queryset(self):
        return Notification.objects.select_related("target").order_by("-created_at", "-id")
