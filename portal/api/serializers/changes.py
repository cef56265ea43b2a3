"""Day two: change plans (a change's saved plan, for review) and the body that asks for one."""

from rest_framework import serializers

from portal.api.serializers.environments import EnvironmentDetailSerializer
from portal.api.serializers.fields import StrictCharField, encodable_json
from portal.api.serializers.refs import UserRefSerializer
from portal.api.serializers.runs import RunDetailSerializer, RunEnvironmentRefSerializer
from portal.models import ChangePlan


class ResourceChangeSerializer(serializers.Serializer):
    address = serializers.CharField()
    action = serializers.ChoiceField(choices=["create", "update", "replace", "delete", "move"])
    moved_from = serializers.CharField(allow_blank=True, help_text="Its address before a `moved` block; empty otherwise.")
    attributes = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Top-level attributes an update or replace changes."
    )
    forces_replacement = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Attributes that force a replacement."
    )


class ChangeSummarySerializer(serializers.Serializer):
    add = serializers.IntegerField()
    change = serializers.IntegerField()
    destroy = serializers.IntegerField()
    replace = serializers.IntegerField()
    move = serializers.IntegerField()


class ChangePlanSerializer(serializers.ModelSerializer):
    """A change plan in lists: what it changes and where it stands."""

    environment = RunEnvironmentRefSerializer()
    requested_by = UserRefSerializer(allow_null=True)
    confirmed_by = UserRefSerializer(allow_null=True)
    plan_run = serializers.IntegerField(source="plan_run_id", help_text="The plan-only run that made the plan.")
    apply_run = serializers.IntegerField(source="apply_run_id", allow_null=True, help_text="The update run, once confirmed.")
    summary = ChangeSummarySerializer(allow_null=True, help_text="Counts per action, once planned.")
    resource_changes = ResourceChangeSerializer(many=True, help_text="What the plan does per resource, once planned.")

    class Meta:
        model = ChangePlan
        fields = [
            "id", "environment", "plan_run", "apply_run", "pattern_version_before", "pattern_version", "parameters",
            "requested_by", "created_at", "planned_at", "state_serial", "summary", "resource_changes",
            "confirmed_at", "confirmed_by",
        ]


class ChangePlanDetailSerializer(ChangePlanSerializer):
    """One change plan, with whether it can still be confirmed and why not."""

    stale_reason = serializers.CharField(
        allow_null=True, help_text="Why it can no longer be confirmed; null while it can (see POST .../confirm/)."
    )

    class Meta(ChangePlanSerializer.Meta):
        fields = ChangePlanSerializer.Meta.fields + ["stale_reason"]


class ChangeRequestSerializer(serializers.Serializer):
    """The body of `POST /api/v1/environments/{id}/changes/`."""

    parameters = serializers.DictField(
        required=False, validators=[encodable_json],
        help_text="Parameters to change (merged over the current ones; the pattern's JSON Schema checks the result).",
    )
    pattern_version = StrictCharField(
        required=False, max_length=30, help_text="Pattern version to upgrade to; omitted = the version it runs."
    )


class ChangeResultSerializer(serializers.Serializer):
    """What a change or a confirm answers (202): the environment, the queued run and the plan."""

    environment = EnvironmentDetailSerializer()
    run = RunDetailSerializer()
    change = ChangePlanSerializer()
