"""API tokens: lists, the create body and the created token (with its key)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.api.serializers.fields import StrictCharField
from portal.models import ApiToken
from portal.services.tokens import NAME_MAX_LENGTH as TOKEN_NAME_MAX_LENGTH
from portal.services.tokens import is_usable


# --- API tokens -------------------------------------------------------------------------------


class ApiTokenSerializer(serializers.ModelSerializer):
    is_usable = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at", "is_usable"]
        read_only_fields = fields

    def get_is_usable(self, token) -> bool:
        """Neither revoked nor expired."""
        return is_usable(token)


# At least one character that is not NUL and not whitespace as Python's str.strip() sees it
# (the service strips; ECMA's \s is a slightly different set, so the class is spelled out).
_PY_SPACE = r"\t\n\u000b\f\r \u001c-\u001f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TOKEN_NAME_PATTERN = rf"^[^\u0000]*[^{_PY_SPACE}\u0000][^\u0000]*$"


@extend_schema_field({"type": "string", "pattern": TOKEN_NAME_PATTERN, "maxLength": TOKEN_NAME_MAX_LENGTH})
class TokenNameField(StrictCharField):
    """The token's name; the service refuses a blank one (in its own words): the schema says so."""

    schema_refuses_blank = True


class ApiTokenCreateSerializer(serializers.Serializer):
    name = TokenNameField(allow_blank=True, help_text="What the token is for, e.g. 'CI pipeline'.")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Omitted = never expires.")


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    key = serializers.CharField(help_text="The key, shown this once: only its hash is stored.")

    class Meta(ApiTokenSerializer.Meta):
        fields = ApiTokenSerializer.Meta.fields + ["key"]
        read_only_fields = fields
