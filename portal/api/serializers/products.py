"""Products (admin-owned CMDB records)."""

from portal.api.serializers.fields import FullCleanModelSerializer, SlugReference
from portal.models import Department, Product


# --- Admin-owned CMDB records -----------------------------------------------------------------


class ProductSerializer(FullCleanModelSerializer):
    department = SlugReference(slug_field="slug", queryset=Department.objects.all())

    class Meta:
        model = Product
        fields = ["id", "department", "slug", "name", "description", "default_lifetime_hours", "max_lifetime_hours",
                  "drift_check_hours"]
