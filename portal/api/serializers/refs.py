"""Small nested shapes shared by several resources: users, departments, products, accounts."""

from rest_framework import serializers


# --- References (small nested shapes) --------------------------------------------------------


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class PersonSerializer(UserRefSerializer):
    """Who asked for something: enough to contact them."""

    full_name = serializers.SerializerMethodField()
    # Not EmailField: a user may have no address, and "" is not `format: email` (issue 12).
    email = serializers.CharField(allow_blank=True, help_text="E-mail address; empty when the user has none.")

    def get_full_name(self, user) -> str:
        return user.get_full_name()


class DepartmentRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()


class ProductRefSerializer(DepartmentRefSerializer):
    pass


class AccountRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    account_id = serializers.CharField()
    kind = serializers.CharField()
    region = serializers.CharField()
    simulated = serializers.BooleanField(help_text="Its AWS API is a simulated one (the account's endpoint_url).")
