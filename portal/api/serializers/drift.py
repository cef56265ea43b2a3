"""Drift checks: what changed outside Terraform, per resource."""

from rest_framework import serializers

from portal.api.serializers.fields import enum_field
from portal.api.serializers.refs import UserRefSerializer
from portal.api.serializers.runs import RunEnvironmentRefSerializer
from portal.models import DriftCheck


class DriftAttributeSerializer(serializers.Serializer):
    attribute = serializers.CharField()
    before = serializers.JSONField(allow_null=True, help_text="As the Terraform state has it.")
    after = serializers.JSONField(allow_null=True, help_text="As the real resource is now.")


class DriftedResourceSerializer(serializers.Serializer):
    address = serializers.CharField()
    type = serializers.CharField()
    action = serializers.ChoiceField(choices=["update", "delete"], help_text="update: changed; delete: gone.")
    attributes = DriftAttributeSerializer(many=True)


class DriftCheckSerializer(serializers.ModelSerializer):
    environment = RunEnvironmentRefSerializer()
    status = enum_field(DriftCheck.Status)
    requested_by = UserRefSerializer(allow_null=True, help_text="Null for a scheduled check.")
    resources = DriftedResourceSerializer(many=True, help_text="The drifted resources (empty unless drifted).")

    class Meta:
        model = DriftCheck
        fields = ["id", "environment", "status", "requested_by", "queued_at", "started_at", "finished_at",
                  "state_serial", "resources", "explanation"]


class DriftCheckDetailSerializer(DriftCheckSerializer):
    class Meta(DriftCheckSerializer.Meta):
        fields = DriftCheckSerializer.Meta.fields + ["log"]
