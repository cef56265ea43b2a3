"""Sandbox accounts and their CIDR pools (admin-owned CMDB records)."""

from rest_framework import serializers

from portal.api.serializers.fields import FullCleanModelSerializer, JsonObjectField, SlugReference
from portal.models import CidrPool, Department, SandboxAccount


# --- Admin-owned CMDB records -----------------------------------------------------------------


class CidrPoolSerializer(serializers.ModelSerializer):
    class Meta:
        model = CidrPool
        fields = ["id", "cidr", "prefix_length", "description"]
        read_only_fields = fields


class SandboxAccountSerializer(FullCleanModelSerializer):
    department = SlugReference(slug_field="slug", queryset=Department.objects.all())
    external_id = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=SandboxAccount._meta.get_field("external_id").max_length,
        help_text="Write-only: the external id the role's trust policy expects.",
    )
    has_external_id = serializers.SerializerMethodField()
    simulated = serializers.BooleanField(
        read_only=True, help_text="True when endpoint_url points Terraform and the checks at a simulated AWS."
    )
    cidr_pools = CidrPoolSerializer(many=True, read_only=True)
    shared_infrastructure = JsonObjectField(
        required=False, help_text=SandboxAccount._meta.get_field("shared_infrastructure").help_text
    )

    class Meta:
        model = SandboxAccount
        fields = [
            "id",
            "department",
            "name",
            "account_id",
            "kind",
            "region",
            "role_arn",
            "external_id",
            "has_external_id",
            "dns_zone",
            "endpoint_url",
            "simulated",
            "max_concurrent_runs",
            "drift_check_hours",
            "is_active",
            "shared_infrastructure",
            "cidr_pools",
            "created_at",
        ]

    def get_has_external_id(self, account) -> bool:
        return bool(account.external_id)
