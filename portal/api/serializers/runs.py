"""Runs: lists, details, events and cancel results."""

from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.api.serializers.fields import enum_field
from portal.api.serializers.refs import AccountRefSerializer, UserRefSerializer
from portal.models import GitHubMirror, Run, RunEvent, RunKind, RunStage, RunStatus


# --- Runs -------------------------------------------------------------------------------------


class ProgressSerializer(serializers.Serializer):
    resources_done = serializers.IntegerField()
    resources_planned = serializers.IntegerField()
    percent = serializers.IntegerField(allow_null=True, help_text="null until the plan is known.")


def _progress(run) -> dict:
    return {
        "resources_done": run.resources_done,
        "resources_planned": run.resources_planned,
        "percent": run.progress_percent,
    }


class GitHubLinksSerializer(serializers.ModelSerializer):
    run = serializers.IntegerField(source="run_id")

    class Meta:
        model = GitHubMirror
        fields = ["run", "repository", "issue_number", "issue_url", "commit_sha", "commit_url", "closed"]


class RunEnvironmentRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    product = serializers.CharField(source="product.slug")
    status = serializers.CharField()


class RunSerializer(serializers.ModelSerializer):
    """A run in lists: what, where, how far."""

    environment = RunEnvironmentRefSerializer()
    account = AccountRefSerializer()
    requested_by = UserRefSerializer(allow_null=True)
    pattern = serializers.CharField(source="pattern_slug")
    kind = enum_field(RunKind)
    status = enum_field(RunStatus)
    stage = enum_field(RunStage)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "environment",
            "account",
            "kind",
            "status",
            "stage",
            "pattern",
            "pattern_version",
            "requested_by",
            "queued_at",
            "dispatched_at",
            "started_at",
            "finished_at",
            "cancel_requested_at",
            "explanation",
            "progress",
            "rollback_of",
            "last_event_seq",
        ]

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, run):
        return _progress(run)


class RunDetailSerializer(RunSerializer):
    """A run on its own: plus the plan, the queue position, what ran and the GitHub links."""

    queue_position = serializers.SerializerMethodField()
    rollback_run = serializers.SerializerMethodField()
    cancel_requested_by = UserRefSerializer(allow_null=True)
    github = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = RunSerializer.Meta.fields + [
            "queue_position",
            "plan_summary",
            "traceback",
            "worker",
            "commands",
            "cancel_requested_by",
            "rollback_run",
            "github",
        ]

    def get_queue_position(self, run) -> int | None:
        """1-based place in the account's FIFO queue while queued, else null."""
        return _queue_position(run)

    def get_rollback_run(self, run) -> int | None:
        rollback = getattr(run, "rollback_run", None) if _has_related(run, "rollback_run") else None
        return rollback.pk if rollback else None

    @extend_schema_field(GitHubLinksSerializer(allow_null=True))
    def get_github(self, run):
        mirror = getattr(run, "github_mirror", None) if _has_related(run, "github_mirror") else None
        return GitHubLinksSerializer(mirror).data if mirror else None


def _has_related(obj, name: str) -> bool:
    """A reverse one-to-one that may be absent (accessing it raises DoesNotExist)."""
    try:
        return getattr(obj, name) is not None
    except ObjectDoesNotExist:
        return False


def _queue_position(run) -> int | None:
    from portal.services.dispatch import queue_position

    return queue_position(run)


class RunEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunEvent
        fields = ["seq", "created_at", "kind", "level", "message", "data"]


class RunEventsPageSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    status = serializers.CharField(help_text="The run's status now.")
    finished = serializers.BooleanField(help_text="The run is terminal: no more events will come.")
    events = RunEventSerializer(many=True)
    last_seq = serializers.IntegerField(help_text="Pass as `after` to get the next events.")
    has_more = serializers.BooleanField(help_text="More events exist beyond `limit`: ask again at once.")


class CancelResultSerializer(serializers.Serializer):
    result = serializers.ChoiceField(
        choices=["dropped", "requested", "finished"],
        help_text="`dropped`: it was queued and is cancelled; `requested`: it is running and is being "
        "stopped; `finished`: it had already ended, nothing to cancel.",
    )
    message = serializers.CharField()
    run = RunDetailSerializer()
