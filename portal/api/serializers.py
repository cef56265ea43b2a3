"""Serializers of the REST API: shapes of rows, and parsing of request bodies. No rules.

- Admin-owned records (departments, sandbox accounts, products) are validated by the
  model's own `full_clean()`, so the API answers with the admin's messages
  (`FullCleanModelSerializer`).
- Requests that start work (create/delete/retry/cancel) only parse references here
  (product slug -> Product) and hand the values to `portal.services.environments`, which
  decides everything else.
- Relations in bodies are referred to by slug (departments, products), AWS account id
  (sandbox accounts) and username (users), the same keys the list filters take.
"""

import copy

from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS, ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import ProhibitNullCharactersValidator, RegexValidator
from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework.relations import MANY_RELATION_KWARGS
from rest_framework import serializers
from rest_framework.fields import ProhibitSurrogateCharactersValidator
from rest_framework.settings import api_settings

from portal.models import (
    ApiToken,
    CidrPool,
    Department,
    Endpoint,
    EnvironmentStatus,
    GitHubMirror,
    Product,
    Run,
    RunEvent,
    RunKind,
    RunStage,
    RunStatus,
    SandboxAccount,
)
from provisioning.patterns import SLUG_RE as PATTERN_SLUG_RE
from portal.services.preflight import NAME_RE as ENVIRONMENT_NAME_RE
from portal.services.preflight import NAME_RULE as ENVIRONMENT_NAME_RULE
from portal.services.tokens import NAME_MAX_LENGTH as TOKEN_NAME_MAX_LENGTH
from portal.services.tokens import is_usable

User = get_user_model()

# Kept on every field: they protect the database driver (PostgreSQL refuses NUL), not rules.
ENCODING_VALIDATORS = (ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator)


def enum_field(choices, **kwargs) -> serializers.ChoiceField:
    """A read-only choice field documented as an inline enum with its labels.

    Inline (wrapped in `allOf`, which drf-spectacular's enum hook leaves alone), because runs
    and environments both have a `status`, and runs, accounts and events a `kind`, with
    different choices: the shared components would be named `Status650Enum` and the like.
    (ENUM_NAME_OVERRIDES in SPECTACULAR_SETTINGS would be the other way.)
    """
    schema = {
        "allOf": [{"type": "string", "enum": [value for value, _ in choices.choices]}],
        "description": "; ".join(f"`{value}` {label}" for value, label in choices.choices),
    }
    field_class = extend_schema_field(schema)(type(f"{choices.__name__}Field", (serializers.ChoiceField,), {}))
    return field_class(choices=choices.choices, read_only=True, **kwargs)


def encodable_json(value) -> None:
    """Refuse NUL and lone surrogates anywhere in a JSON value (keys included): PostgreSQL's
    jsonb cannot store NUL and UTF-8 cannot encode a lone surrogate, so either would fail in
    the database driver instead of being a 400. The error names the nested path."""
    problem = _unencodable(value, "")
    if problem is not None:
        path, message = problem
        raise serializers.ValidationError({path: [message]} if path else [message])


def _unencodable(value, path: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        if "\x00" in value:
            return path, "Null characters are not allowed."
        if any("\ud800" <= char <= "\udfff" for char in value):
            return path, "Surrogate characters are not allowed."
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = _unencodable(key, path) or _unencodable(item, f"{path}.{key}" if path else str(key))
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _unencodable(item, f"{path}.{index}" if path else str(index))
            if problem:
                return problem
    return None


class _TextOnly:
    """Text, and only text: DRF's CharField turns `0` into "0", so `"name": 0` was accepted
    although the schema says string (issue 12)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(_TextOnly, serializers.CharField):
    """A CharField that takes only a JSON string, exactly as sent: no silent trimming, so its
    length and blankness are what the schema's minLength/maxLength say. `schema_pattern`: a
    form the schema states that a service checks later (see PortalAutoSchema)."""

    def __init__(self, *, schema_pattern: str | None = None, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        self.schema_pattern = schema_pattern
        super().__init__(**kwargs)


class StrictSlugField(_TextOnly, serializers.SlugField):
    """A SlugField that takes only a JSON string, exactly as sent."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


@extend_schema_field({"type": "object", "additionalProperties": True})
class JsonObjectField(serializers.JSONField):
    """A JSON object (not null, not a list): what the model's dict-valued column holds."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("invalid")
        return super().to_internal_value(data)


class ListOfReferences(serializers.ManyRelatedField):
    """Several references: a JSON list, nothing else (DRF iterated a dict's keys, so
    `"members": {}` was accepted as "no members" - issue 12)."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class SlugReference(serializers.SlugRelatedField):
    """A SlugRelatedField that refuses NUL before the lookup: PostgreSQL cannot even compare
    a text containing NUL (the driver raises DataError, which would be a 500)."""

    @classmethod
    def many_init(cls, *args, **kwargs):
        """As DRF's RelatedField.many_init, with ListOfReferences for the list."""
        list_kwargs = {"child_relation": cls(*args, **kwargs)}
        list_kwargs.update({key: value for key, value in kwargs.items() if key in MANY_RELATION_KWARGS})
        return ListOfReferences(**list_kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)


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


# --- Admin-owned CMDB records -----------------------------------------------------------------


class FullCleanModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose checks are the model's `full_clean()` (field validators,
    uniqueness, `clean()`), so the API says exactly what the admin says.

    The validators DRF derives from the model are dropped (they would answer first, in DRF's
    wording); type conversion and the encoding validators stay. The schema still states the
    model's constraints (`full_clean_schema`, read by api.schema.PortalAutoSchema).
    """

    full_clean_schema = True
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
    }

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            if field.read_only:
                continue
            field.validators = [v for v in field.validators if isinstance(v, ENCODING_VALIDATORS)]
            if isinstance(field, serializers.JSONField):
                field.validators.append(encodable_json)
            if isinstance(field, serializers.CharField):
                field.allow_blank = True  # "This field cannot be blank." comes from full_clean
        return fields

    def get_validators(self):
        return []

    def validate(self, attrs):
        model = self.Meta.model
        many_to_many = {field.name for field in model._meta.many_to_many}
        instance = copy.copy(self.instance) if self.instance is not None else model()
        for name, value in attrs.items():
            if name not in many_to_many:
                setattr(instance, name, value)
        errors = {}
        try:
            instance.full_clean()
        except DjangoValidationError as exc:
            errors = {
                (api_settings.NON_FIELD_ERRORS_KEY if key == NON_FIELD_ERRORS else key): messages
                for key, messages in exc.message_dict.items()
            }
        # full_clean skips empty values of blank=True fields, so a `null` (e.g. "null" in a
        # form-encoded JSON field) would reach a NOT NULL column; say it as Django would.
        for name, value in attrs.items():
            field = model._meta.get_field(name) if name not in many_to_many else None
            if value is None and field is not None and not field.null and name not in errors:
                errors[name] = [field.error_messages["null"]]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class DepartmentSerializer(FullCleanModelSerializer):
    members = SlugReference(
        many=True,
        slug_field="username",
        queryset=User.objects.all(),
        required=False,
        help_text="Usernames of the members (they may request environments of its products).",
    )

    class Meta:
        model = Department
        fields = ["id", "slug", "name", "members"]


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
            "max_concurrent_runs",
            "is_active",
            "shared_infrastructure",
            "cidr_pools",
            "created_at",
        ]

    def get_has_external_id(self, account) -> bool:
        return bool(account.external_id)


class ProductSerializer(FullCleanModelSerializer):
    department = SlugReference(slug_field="slug", queryset=Department.objects.all())

    class Meta:
        model = Product
        fields = ["id", "department", "slug", "name", "description"]


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
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    deleted_at = serializers.DateTimeField(allow_null=True)


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
