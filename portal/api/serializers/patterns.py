"""Design patterns (from the catalog, not the database)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


# --- Design patterns (from the catalog, not the database) -------------------------------------


class PatternEndpointSerializer(serializers.Serializer):
    output = serializers.CharField(help_text="Terraform output holding the FQDN.")
    kind = serializers.CharField()
    url_output = serializers.CharField(allow_null=True, help_text="Terraform output holding a full URL, if any.")


class PatternSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    version = serializers.CharField()
    description = serializers.CharField()
    cloud = serializers.CharField(help_text="`aws`, or `none` for patterns that need no cloud (the offline demo).")
    expected_duration_seconds = serializers.IntegerField()
    endpoints = PatternEndpointSerializer(many=True)
    parameters = serializers.DictField(help_text="The parameters' JSON Schema (draft 2020-12).")
    defaults = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_defaults(self, pattern):
        return pattern.defaults()


class FleetRowSerializer(serializers.Serializer):
    """One pattern version: how many live environments run it and what they could upgrade to."""

    pattern = serializers.CharField()
    version = serializers.CharField()
    environments = serializers.IntegerField(help_text="Live (not deleted) environments on this version.")
    in_catalog = serializers.BooleanField(help_text="False: environments run a version the catalog no longer holds.")
    source = serializers.CharField(help_text="bundled, or `git <tag>`; empty when not in the catalog.")
    latest = serializers.BooleanField()
    upgrade_available = serializers.CharField(allow_null=True, help_text="The newest version to upgrade to, if newer.")
