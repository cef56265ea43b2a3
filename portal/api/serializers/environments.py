"""Environments: lists, details, the create body, the pre-flight answer and request results."""

from functools import partial

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.api.serializers.fields import SlugReference, StrictCharField, encodable_json, enum_field
from portal.api.serializers.refs import (
    AccountRefSerializer,
    DepartmentRefSerializer,
    ProductRefSerializer,
    UserRefSerializer,
)
from portal.api.serializers.runs import (
    GitHubLinksSerializer,
    ProgressSerializer,
    RunDetailSerializer,
    _progress,
    _queue_position,
)
from portal.models import DriftStatus, EnvironmentStatus, GitHubMirror, Product, RunKind, RunStage, RunStatus, SandboxAccount
from portal.models.runs import progress_percent
from provisioning.patterns import SLUG_RE as PATTERN_SLUG_RE
from portal.services.preflight import NAME_RE as ENVIRONMENT_NAME_RE
from portal.services.preflight import NAME_RULE as ENVIRONMENT_NAME_RULE


# --- Environments -----------------------------------------------------------------------------


# The serializers of the environment list are plain Serializers with explicit fields: a
# ModelSerializer introspects its model to build its fields on every request, which was a
# measurable share of a list request (bench/api_list_latency.py).


class EndpointRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    fqdn = serializers.CharField()
    url = serializers.CharField()
    kind = serializers.CharField()


class LatestRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = enum_field(RunKind)
    status = enum_field(RunStatus)
    stage = enum_field(RunStage)
    queued_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    explanation = serializers.CharField(help_text="What happened, for people.")
    progress = serializers.SerializerMethodField()

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, run):
        return _progress(run)


class LatestRunDetailSerializer(LatestRunSerializer):
    queue_position = serializers.SerializerMethodField()

    def get_queue_position(self, run) -> int | None:
        """1-based place in the account's FIFO queue while queued, else null."""
        return _queue_position(run)


class LatestRunField(serializers.Field):
    """The newest run of an environment, or null, shaped by `child`.

    Reads the prefetched `latest_runs` (see `selectors.environments`) and builds the child
    serializer once, not once per row (building a ModelSerializer's fields costs more than
    rendering them).
    """

    def __init__(self, child, **kwargs):
        self.child = child
        kwargs.update(source="*", read_only=True)
        super().__init__(**kwargs)

    def bind(self, field_name, parent):
        super().bind(field_name, parent)
        self.child.bind(field_name, self)

    def to_representation(self, environment):
        runs = getattr(environment, "latest_runs", None)
        if runs is None:  # not from selectors.environments(): one query
            runs = list(environment.runs.order_by("-queued_at", "-id")[:1])
        return self.child.to_representation(runs[0]) if runs else None


@extend_schema_field(LatestRunSerializer(allow_null=True))
class LatestRunSummaryField(LatestRunField):
    pass


@extend_schema_field(LatestRunDetailSerializer(allow_null=True))
class LatestRunDetailField(LatestRunField):
    pass


class DriftSummarySerializer(serializers.Serializer):
    status = enum_field(DriftStatus, source="drift_status")
    checked_at = serializers.DateTimeField(source="drift_checked_at", allow_null=True,
                                           help_text="When the latest drift check finished; null if never.")


class ExpirySerializer(serializers.Serializer):
    expires_at = serializers.DateTimeField(allow_null=True, help_text="Destroyed at this time; null = never.")
    kept = serializers.BooleanField(help_text="Staff keep it: it never expires.")
    expired_at = serializers.DateTimeField(allow_null=True, help_text="When expiry queued its destroy.")
    blocked = serializers.CharField(source="expiry_blocked", help_text="Why expiry could not destroy it; empty otherwise.")


class ExtendSerializer(serializers.Serializer):
    """The body of `POST /api/v1/environments/{id}/extend/`: `hours` later, or `until` a time."""

    hours = serializers.IntegerField(required=False, min_value=1, max_value=87600,
                                     help_text="Hours later than now or than the current expiry, whichever is later.")
    until = serializers.DateTimeField(required=False, help_text="The new expiry (ISO 8601).")

    def validate(self, data):
        if ("hours" in data) == ("until" in data):
            raise serializers.ValidationError({"hours": "Give either hours or until."})
        return data


class KeepSerializer(serializers.Serializer):
    kept = serializers.BooleanField(help_text="true: never expires; false: expires at expires_at again.")


class EnvironmentSerializer(serializers.Serializer):
    """An environment in lists. Expects the queryset of `EnvironmentViewSet` (live endpoints
    and the latest run prefetched), so a page costs the same number of queries at any size."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    product = ProductRefSerializer()
    department = DepartmentRefSerializer(source="product.department")
    account = AccountRefSerializer()
    pattern = serializers.CharField(source="pattern_slug", help_text="Design pattern slug.")
    pattern_version = serializers.CharField()
    status = enum_field(EnvironmentStatus)
    status_reason = serializers.CharField(help_text="Why the environment is in its status, for people.")
    cidr = serializers.CharField(help_text="The allocated network, empty until allocated.")
    endpoints = EndpointRefSerializer(many=True, source="live_endpoints", help_text="Live endpoints.")
    requested_by = UserRefSerializer(allow_null=True)
    latest_run = LatestRunSummaryField(LatestRunSerializer())
    drift = DriftSummarySerializer(source="*", help_text="What the latest drift check found.")
    expiry = ExpirySerializer(source="*", help_text="When it expires (and is then destroyed), unless kept.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    deleted_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, environment):
        """A list row (a dict from `selectors.environment_list_rows`) is built directly into
        the row the declared fields describe (they are the schema): running some 40 field
        objects per row over model instances was the largest part of a list page's time at
        100,000 environments (issue 14). An instance is rendered field by field, as DRF does;
        tests/api/test_environments.py checks both give the same row."""
        if not isinstance(environment, dict):
            return super().to_representation(environment)
        row = environment
        run = row["latest_run"]
        zone = timezone.get_current_timezone()  # once per row, not once per date-time field
        when = partial(_when_in, zone)
        return {
            "id": row["id"],
            "name": row["name"],
            "product": {"id": row["product__id"], "slug": row["product__slug"], "name": row["product__name"]},
            "department": {"id": row["product__department__id"], "slug": row["product__department__slug"],
                           "name": row["product__department__name"]},
            "account": {"id": row["account__id"], "name": row["account__name"], "account_id": row["account__account_id"],
                        "kind": row["account__kind"], "region": row["account__region"],
                        "simulated": bool(row["account__endpoint_url"])},
            "pattern": row["pattern_slug"],
            "pattern_version": row["pattern_version"],
            "status": row["status"],
            "status_reason": row["status_reason"],
            "cidr": row["cidr"],
            "endpoints": row["live_endpoints"],  # already {id, fqdn, url, kind}
            "requested_by": None if row["requested_by__id"] is None else {
                "id": row["requested_by__id"], "username": row["requested_by__username"]},
            "latest_run": None if run is None else {
                "id": run["id"],
                "kind": run["kind"],
                "status": run["status"],
                "stage": run["stage"],
                "queued_at": when(run["queued_at"]),
                "started_at": when(run["started_at"]),
                "finished_at": when(run["finished_at"]),
                "explanation": run["explanation"],
                "progress": {"resources_done": run["resources_done"], "resources_planned": run["resources_planned"],
                             "percent": progress_percent(run["resources_done"], run["resources_planned"])},
            },
            "drift": {"status": row["drift_status"], "checked_at": when(row["drift_checked_at"])},
            "expiry": {"expires_at": when(row["expires_at"]), "kept": row["kept"], "expired_at": when(row["expired_at"]),
                       "blocked": row["expiry_blocked"]},
            "created_at": when(row["created_at"]),
            "updated_at": when(row["updated_at"]),
            "deleted_at": when(row["deleted_at"]),
        }


def _when_in(zone, value):
    """DRF's rendering of a date-time (ISO 8601 in the current time zone, `Z` for UTC)."""
    if value is None:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class EnvironmentDetailSerializer(EnvironmentSerializer):
    """An environment on its own: plus parameters, outputs, orphans, the latest run with its
    queue position, and the GitHub issues/commits of its requests."""

    latest_run = LatestRunDetailField(LatestRunDetailSerializer())
    parameters = serializers.JSONField(help_text="The request's parameter values, defaults filled in.")
    outputs = serializers.JSONField(help_text="Terraform outputs after apply.")
    orphans = serializers.JSONField(help_text="Resources still tagged with this environment after destroy.")
    orphans_checked_at = serializers.DateTimeField(allow_null=True)
    code_files = serializers.SerializerMethodField()
    github = serializers.SerializerMethodField()

    @extend_schema_field(GitHubLinksSerializer(many=True))
    def get_github(self, environment):
        mirrors = GitHubMirror.objects.filter(run__environment=environment).order_by("run_id")
        return GitHubLinksSerializer(mirrors, many=True).data

    def get_code_files(self, environment) -> list[str]:
        """Names of the rendered Terraform files kept for delete (contents via the admin)."""
        return sorted(environment.code_snapshot or {})


class EnvironmentCreateSerializer(serializers.Serializer):
    """The body of `POST /api/v1/environments/`: what the Create form asks for."""

    product = SlugReference(
        slug_field="slug", queryset=Product.objects.all(), help_text="Product slug, e.g. `shop`."
    )
    pattern = StrictCharField(
        help_text="Design pattern slug (see /api/v1/patterns/).",
        validators=[RegexValidator(PATTERN_SLUG_RE, "A design pattern slug: lowercase letters, digits and hyphens.")],
    )
    name = StrictCharField(
        required=False, allow_blank=True, max_length=200,
        # Checked by the pre-flight check with the parameters, so every problem is answered at
        # once; the schema states the rule as a pattern (see PortalAutoSchema).
        schema_pattern=f"^$|{ENVIRONMENT_NAME_RE.pattern}",
        help_text=f"Environment name; omitted or blank = the next free `sandbox-N`. {ENVIRONMENT_NAME_RULE}",
    )
    parameters = serializers.DictField(
        required=False, validators=[encodable_json], help_text="Values for the pattern's parameters (its JSON Schema); defaults fill the rest."
    )
    account = SlugReference(
        slug_field="account_id",
        queryset=SandboxAccount.objects.all(),
        required=False,
        allow_null=True,
        help_text="AWS account id of the sandbox account; omitted = the department's first active one.",
    )


@extend_schema_field({"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}})
class PreflightProblemsField(serializers.Field):
    def to_representation(self, check):
        from portal.api.errors import api_field_name

        problems: dict[str, list[str]] = {}
        for problem in check.problems:
            problems.setdefault(api_field_name(problem.key), []).append(problem.message)
        return problems


class PreflightSerializer(serializers.Serializer):
    """The dry run's answer: every problem of the request at once, and what it would meet."""

    ok = serializers.BooleanField()
    problems = PreflightProblemsField(
        source="*", help_text="Body path -> messages, like an error's `fields`; empty when `ok`."
    )
    name = serializers.CharField(help_text="The name it would get (a suggestion when none was given).")
    account = AccountRefSerializer(allow_null=True)
    fqdns = serializers.ListField(child=serializers.CharField(), help_text="FQDNs the pattern says it would get.")
    queue = serializers.DictField(source="load", allow_null=True, help_text="running, queued and slots of the account.")
    free_networks = serializers.IntegerField(allow_null=True, help_text="Free CIDR blocks; null when the account has no pools.")


class EnvironmentRequestResultSerializer(serializers.Serializer):
    """What a create/delete/retry request answers (202): the environment and the queued run."""

    environment = EnvironmentDetailSerializer()
    run = RunDetailSerializer()
