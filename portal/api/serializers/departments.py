"""Departments (admin-owned CMDB records)."""

from django.contrib.auth import get_user_model

from portal.api.serializers.fields import FullCleanModelSerializer, SlugReference
from portal.models import Department

User = get_user_model()


# --- Admin-owned CMDB records -----------------------------------------------------------------


class DepartmentSerializer(FullCleanModelSerializer):
    members = SlugReference(
        many=True,
        slug_field="username",
        queryset=User.objects.all(),
        required=False,
        help_text="Usernames of the members (they may request environments of its products).",
    )

    class Meta:
        model = Department
        fields = ["id", "slug", "name", "members"]
