"""Endpoints: FQDNs and who owns them."""

from rest_framework import serializers

from portal.api.serializers.refs import (
    AccountRefSerializer,
    DepartmentRefSerializer,
    PersonSerializer,
    ProductRefSerializer,
)
from portal.models import Endpoint


# --- Endpoints --------------------------------------------------------------------------------


class EndpointEnvironmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    pattern = serializers.CharField(source="pattern_slug")
    pattern_version = serializers.CharField()
    cidr = serializers.CharField()
    account = AccountRefSerializer()
    created_at = serializers.DateTimeField()


class EndpointSerializer(serializers.ModelSerializer):
    """An FQDN and who owns it: the environment, its product and department, the requester."""

    environment = EndpointEnvironmentSerializer()
    product = ProductRefSerializer(source="environment.product")
    department = DepartmentRefSerializer(source="environment.product.department")
    requester = PersonSerializer(source="environment.requested_by", allow_null=True)

    class Meta:
        model = Endpoint
        fields = ["id", "fqdn", "url", "kind", "created_at", "released_at", "environment", "product", "department", "requester"]
