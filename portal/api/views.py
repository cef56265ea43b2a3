"""REST API views: thin. They parse, call the same service or selector the browser UI calls,
and shape the answer. No rule lives here (STYLE: "UI view, API view, admin action and
management command call the same service").

The environment, run and endpoint querysets come from `portal.selectors` (the browser UI's
lists read the same ones), with every relation a serializer touches joined or prefetched.
Detail routes do not apply the list filters: a deleted environment or a released endpoint
stays reachable by id (the CMDB keeps them for audit).
"""

from django.contrib.auth import get_user_model
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from django_filters import MultipleChoiceFilter
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from portal.api import serializers as s
from portal.api.filters import DepartmentFilterSet, ProductFilterSet, SandboxAccountFilterSet
from portal.api.idempotency import idempotent
from portal.api.pagination import IdsFirstPagination
from portal.api.permissions import ReadForAllStaffWrites
from portal.api.schema import PortalAutoSchema
from portal.filters import ChangePlanFilterSet, DriftCheckFilterSet, EndpointFilterSet, EnvironmentFilterSet, RunFilterSet
from portal.models import Department, Product, Run, SandboxAccount
from portal import selectors
from portal.services import catalog, changes, drift, environments, expiry, tokens
from portal.services.catalog import get_catalog
from portal.services.permissions import require_product
from portal.services.preflight import check_request
from portal.throttles import EnvironmentCreateThrottle

User = get_user_model()

EVENTS_DEFAULT_LIMIT = 500
EVENTS_MAX_LIMIT = 1000
CANCEL_MESSAGES = {
    "dropped": "The run was still queued: it is cancelled and nothing ran.",
    "requested": "The run is being stopped: Terraform is interrupted and the run ends as cancelled.",
    "finished": "The run had already finished; there was nothing to cancel.",
}


class ApiViewMixin:
    """What every API view shares: the schema generator that documents the error shape, and
    query parameters given at most once (`?offset=1&offset=2` was silently read as one of them;
    the schema describes single values) - except the filters that take a list (`?status=a&status=b`)."""

    schema = PortalAutoSchema()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # credentials first: 401 before 400
        filterset = getattr(self, "filterset_class", None)
        lists = {name for name, f in (filterset.base_filters.items() if filterset else ()) if isinstance(f, MultipleChoiceFilter)}
        repeated = sorted(key for key, values in request.query_params.lists() if len(values) > 1 and key not in lists)
        if repeated:
            raise ValidationError({key: ["give this query parameter once"] for key in repeated})


class ListFiltersOnlyMixin:
    """Apply the FilterSet to lists only: detail routes find any row by id."""

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)


# --- Querysets ------------------------------------------------------------------------------


def normalise_fqdn(value: str) -> str:
    """As `EndpointFilterSet` does: case-insensitive, trailing dot ignored."""
    return value.strip().lower().rstrip(".")


# --- Admin-owned CMDB records -----------------------------------------------------------------


class DepartmentViewSet(ApiViewMixin, viewsets.ModelViewSet):
    """Departments: read by everyone signed in, changed by staff (validated as in the admin)."""

    queryset = Department.objects.prefetch_related(
        Prefetch("members", queryset=User.objects.only("id", "username").order_by("username"))
    ).order_by("name", "id")
    serializer_class = s.DepartmentSerializer
    permission_classes = [ReadForAllStaffWrites]
    filterset_class = DepartmentFilterSet


class SandboxAccountViewSet(ApiViewMixin, viewsets.ModelViewSet):
    """Sandbox accounts (with their CIDR pools, read-only here): staff write."""

    queryset = (
        SandboxAccount.objects.select_related("department").prefetch_related("cidr_pools").order_by("name", "id")
    )
    serializer_class = s.SandboxAccountSerializer
    permission_classes = [ReadForAllStaffWrites]
    filterset_class = SandboxAccountFilterSet


class ProductViewSet(ApiViewMixin, viewsets.ModelViewSet):
    """Products: staff write."""

    queryset = Product.objects.select_related("department").order_by("name", "id")
    serializer_class = s.ProductSerializer
    permission_classes = [ReadForAllStaffWrites]
    filterset_class = ProductFilterSet


# --- Design patterns --------------------------------------------------------------------------


@extend_schema_view(
    retrieve=extend_schema(parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH, description="Pattern slug.")])
)
class PatternViewSet(ApiViewMixin, viewsets.GenericViewSet):
    """The design-pattern catalog (read-only; patterns are files under `patterns/`)."""

    serializer_class = s.PatternSerializer
    filter_backends = []
    lookup_field = "slug"
    lookup_value_regex = r"[^/]+"

    def list(self, request):
        patterns = sorted(get_catalog().values(), key=lambda pattern: pattern.slug)
        page = self.paginate_queryset(patterns)
        return self.get_paginated_response(s.PatternSerializer(page, many=True).data)

    def retrieve(self, request, slug=None):
        pattern = get_catalog().get(slug)
        if pattern is None:
            raise NotFound(f"There is no design pattern {slug!r}.")
        return Response(s.PatternSerializer(pattern).data)

    @extend_schema(
        summary="The fleet: which environments run which pattern version",
        description="One row per pattern version in the catalog or in use by a live environment, with "
        "how many live environments run it and the newest version they could upgrade to.",
        responses={200: s.FleetRowSerializer(many=True)},
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def fleet(self, request):
        return Response(s.FleetRowSerializer(catalog.fleet(), many=True).data)


# --- Environments -----------------------------------------------------------------------------


class EnvironmentViewSet(ApiViewMixin, ListFiltersOnlyMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         viewsets.GenericViewSet):
    """Environments: list/search (the browser list page's filters), detail, request create,
    delete and retry. Who may request what is decided by `portal.services.environments`."""

    filterset_class = EnvironmentFilterSet
    pagination_class = IdsFirstPagination

    def get_queryset(self):
        if self.action == "list":
            return selectors.environments_for_list()
        return selectors.environments()

    def get_serializer_class(self):
        return s.EnvironmentSerializer if self.action == "list" else s.EnvironmentDetailSerializer

    def page_rows(self, ids):
        """A list page as plain rows (see IdsFirstPagination), rendered by EnvironmentSerializer."""
        return selectors.environment_list_rows(ids)

    def get_throttles(self):
        """Requests for environments are limited per user (portal/throttles.py); reads are not."""
        return [EnvironmentCreateThrottle()] if self.action == "create" else super().get_throttles()

    def accepted(self, run: Run) -> Response:
        """202 with the environment and the queued run, read back through the API querysets."""
        result = {
            "environment": selectors.environments().get(pk=run.environment_id),
            "run": selectors.runs(detail=True).get(pk=run.pk),
        }
        return Response(s.EnvironmentRequestResultSerializer(result).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Request a new environment",
        description="Validates the request and queues a create run (dispatched to a worker once "
        "committed). Answers 202 with the environment (`provisioning`) and its run; follow the run "
        "at /api/v1/runs/{id}/ and its events. Members of the product's department and staff may.",
        request=s.EnvironmentCreateSerializer,
        responses={202: s.EnvironmentRequestResultSerializer,
                   429: OpenApiResponse(description="Too many environment requests by this user (ENVIRONMENT_CREATE_RATE); "
                                                    "try again after `Retry-After` seconds.")},
    )
    @idempotent
    def create(self, request):
        values = self._request_body(request)
        run = environments.request_create(
            user=request.user,
            product=values["product"],
            pattern_slug=values["pattern"],
            name=values.get("name"),
            parameters=values.get("parameters"),
            account=values.get("account"),
        )
        return self.accepted(run)

    @extend_schema(
        summary="Check a request without creating anything (dry run)",
        description="Runs the pre-flight check `POST /api/v1/environments/` runs, and answers "
        "200 with every problem at once (`ok` false and `problems` keyed like error `fields`) "
        "or `ok` true; plus the name, the account it would use, its queue, free networks and "
        "the FQDNs it would get. Nothing is written.",
        request=s.EnvironmentCreateSerializer,
        responses={200: s.PreflightSerializer},
    )
    @action(detail=False, methods=["post"])
    def preflight(self, request):
        values = self._request_body(request)
        require_product(request.user, values["product"], "create")
        check = check_request(
            product=values["product"],
            pattern_slug=values["pattern"],
            name=values.get("name"),
            parameters=values.get("parameters"),
            account=values.get("account"),
        )
        return Response(s.PreflightSerializer(check).data)

    def _request_body(self, request) -> dict:
        body = s.EnvironmentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return body.validated_data

    @extend_schema(
        summary="Delete an environment",
        description="Queues a destroy run with the environment's stored code (202). The row is "
        "kept for audit with status `deleted` once the destroy succeeds.",
        request=None,
        responses={202: s.EnvironmentRequestResultSerializer},
    )
    @idempotent
    def destroy(self, request, pk=None):
        run = environments.request_delete(user=request.user, environment=self.get_object())
        return self.accepted(run)

    @extend_schema(
        summary="Retry an incomplete environment",
        description="Runs the create again from the same code and state (after a cancel or a lost worker).",
        request=None,
        responses={202: s.EnvironmentRequestResultSerializer},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def retry(self, request, pk=None):
        run = environments.request_retry(user=request.user, environment=self.get_object())
        return self.accepted(run)

    @extend_schema(
        summary="Plan a change (new parameters and/or pattern version)",
        description="Renders the change and queues a plan-only run (202 with the environment, the "
        "run and the change plan). Nothing is applied: read the plan at /api/v1/changes/{id}/ once "
        "the run has succeeded, then `POST /api/v1/changes/{id}/confirm/`. Only a ready environment "
        "(or one whose update failed) can be changed; parameters are merged over the current ones.",
        request=s.ChangeRequestSerializer,
        responses={202: s.ChangeResultSerializer},
    )
    @action(detail=True, methods=["post"], url_path="changes", filter_backends=[])
    @idempotent
    def plan_change(self, request, pk=None):
        body = s.ChangeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        plan = changes.request_change(
            user=request.user, environment=self.get_object(), parameters=body.validated_data.get("parameters"),
            pattern_version=body.validated_data.get("pattern_version"),
        )
        return change_accepted(plan.plan_run_id, plan.pk)

    @extend_schema(
        summary="Extend an environment's expiry",
        description="Moves the expiry `hours` later (than now or than the current expiry, whichever is "
        "later) or to `until`. 400 beyond the product's maximum lifetime (counted from creation) or in "
        "the past; 409 when the environment is deleted or being deleted.",
        request=s.ExtendSerializer,
        responses={200: s.EnvironmentDetailSerializer},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def extend(self, request, pk=None):
        body = s.ExtendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        environment = expiry.extend(user=request.user, environment=self.get_object(), **body.validated_data)
        return Response(s.EnvironmentDetailSerializer(selectors.environments().get(pk=environment.pk)).data)

    @extend_schema(
        summary="Keep an environment from expiring (staff)",
        description="`kept: true` - it never expires; `false` - it expires at `expires_at` again. Staff only (403).",
        request=s.KeepSerializer,
        responses={200: s.EnvironmentDetailSerializer},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def keep(self, request, pk=None):
        body = s.KeepSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        environment = expiry.set_kept(user=request.user, environment=self.get_object(), kept=body.validated_data["kept"])
        return Response(s.EnvironmentDetailSerializer(selectors.environments().get(pk=environment.pk)).data)

    @extend_schema(
        summary="Check an environment for drift now",
        description="Queues a drift check (202): a refreshing `terraform plan` on a copy of the stored "
        "state, which locks and changes nothing. 409 while one is queued or running, or when the "
        "environment is not ready. Read the result at /api/v1/drift-checks/{id}/.",
        request=None,
        responses={202: s.DriftCheckSerializer},
    )
    @action(detail=True, methods=["post"], url_path="drift-checks", filter_backends=[])
    @idempotent
    def check_drift(self, request, pk=None):
        check = drift.request_check(user=request.user, environment=self.get_object())
        check = selectors.drift_checks().get(pk=check.pk)
        return Response(s.DriftCheckSerializer(check).data, status=status.HTTP_202_ACCEPTED)


# --- Runs -------------------------------------------------------------------------------------


class EventsQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(required=False, default=0, min_value=0, help_text="Return events with seq > after.")
    limit = serializers.IntegerField(
        required=False, default=EVENTS_DEFAULT_LIMIT, min_value=1, max_value=EVENTS_MAX_LIMIT
    )


class RunViewSet(ApiViewMixin, ListFiltersOnlyMixin, viewsets.ReadOnlyModelViewSet):
    """Runs: the source of truth for progress. Tail `events/?after=` and `cancel/`."""

    filterset_class = RunFilterSet

    def get_queryset(self):
        return selectors.runs(detail=self.action != "list")

    def get_serializer_class(self):
        return s.RunSerializer if self.action == "list" else s.RunDetailSerializer

    @extend_schema(
        summary="Tail a run's events",
        description="Events with `seq > after`, oldest first, at most `limit`. Poll again with "
        "`after=last_seq` until `finished` is true and `has_more` is false.",
        parameters=[EventsQuerySerializer],
        responses={200: s.RunEventsPageSerializer},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def events(self, request, pk=None):
        run = self.get_object()
        query = EventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        events = selectors.run_events_after(run.pk, after=after, limit=limit + 1)
        has_more = len(events) > limit
        events = events[:limit]
        page = {
            "run": run.pk,
            "status": run.status,
            "finished": run.is_terminal,
            "events": events,
            "last_seq": events[-1].seq if events else after,
            "has_more": has_more,
        }
        return Response(s.RunEventsPageSerializer(page).data)

    @extend_schema(
        summary="Cancel a run",
        description="A queued run is dropped at once (200, `dropped`); a running one is asked to "
        "stop (202, `requested`): Terraform gets an interrupt and the run ends `cancelled`. A run "
        "that already ended answers 200 `finished`.",
        request=None,
        responses={200: s.CancelResultSerializer, 202: s.CancelResultSerializer},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def cancel(self, request, pk=None):
        run = self.get_object()
        result = environments.request_cancel(user=request.user, run=run)
        body = {
            "result": result,
            "message": CANCEL_MESSAGES.get(result, result),
            "run": selectors.runs(detail=True).get(pk=run.pk),
        }
        http_status = status.HTTP_202_ACCEPTED if result == "requested" else status.HTTP_200_OK
        return Response(s.CancelResultSerializer(body).data, status=http_status)


# --- Change plans (day two) --------------------------------------------------------------------


def change_accepted(run_id: int, plan_id: int) -> Response:
    """202 with the environment, the queued run and the change plan, read back through the API querysets."""
    run = selectors.runs(detail=True).get(pk=run_id)
    result = {
        "environment": selectors.environments().get(pk=run.environment_id),
        "run": run,
        "change": selectors.change_plans().get(pk=plan_id),
    }
    return Response(s.ChangeResultSerializer(result).data, status=status.HTTP_202_ACCEPTED)


class ChangePlanViewSet(ApiViewMixin, ListFiltersOnlyMixin, viewsets.ReadOnlyModelViewSet):
    """Change plans: what a planned change would do per resource, and `confirm/` to apply
    exactly that plan. `?environment=` filters the list."""

    filterset_class = ChangePlanFilterSet

    def get_queryset(self):
        return selectors.change_plans()

    def get_serializer_class(self):
        return s.ChangePlanSerializer if self.action == "list" else s.ChangePlanDetailSerializer

    def retrieve(self, request, pk=None):
        plan = self.get_object()
        plan.stale_reason = changes.stale_reason(plan)
        return Response(s.ChangePlanDetailSerializer(plan).data)

    @extend_schema(
        summary="Confirm a change plan",
        description="Queues the update run that applies exactly this saved plan (202). Refused with "
        "409 when the plan is stale: the state moved, the environment had another run, it was "
        "already confirmed, or it is older than the portal's CHANGE_PLAN_MAX_AGE_SECONDS.",
        request=None,
        responses={202: s.ChangeResultSerializer},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def confirm(self, request, pk=None):
        plan = self.get_object()
        run = changes.confirm_change(user=request.user, plan=plan)
        return change_accepted(run.pk, plan.pk)


class DriftCheckViewSet(ApiViewMixin, ListFiltersOnlyMixin, viewsets.ReadOnlyModelViewSet):
    """Drift checks: what changed outside Terraform, per resource and attribute, and
    `plan-fix/` to plan the change that puts it back. `?environment=` and `?status=` filter."""

    filterset_class = DriftCheckFilterSet

    def get_queryset(self):
        return selectors.drift_checks()

    def get_serializer_class(self):
        return s.DriftCheckSerializer if self.action == "list" else s.DriftCheckDetailSerializer

    @extend_schema(
        summary="Plan the fix of a drift",
        description="Plans the environment's own code again (same parameters and version), which puts "
        "back what changed outside Terraform: a plan-only run and a change plan to review and confirm "
        "like any change (202). 400 when the check found no drift, 409 when it is not the latest.",
        request=None,
        responses={202: s.ChangeResultSerializer},
    )
    @action(detail=True, methods=["post"], url_path="plan-fix", filter_backends=[])
    @idempotent
    def plan_fix(self, request, pk=None):
        plan = drift.plan_fix(user=request.user, check=self.get_object())
        return change_accepted(plan.plan_run_id, plan.pk)


# --- Endpoints --------------------------------------------------------------------------------


class EndpointViewSet(ApiViewMixin, ListFiltersOnlyMixin, viewsets.ReadOnlyModelViewSet):
    """Endpoints (FQDNs) and who owns them. `?fqdn=` filters the list; `by-fqdn/{fqdn}/`
    answers "which environment owns this FQDN and who asked for it"."""

    serializer_class = s.EndpointSerializer
    filterset_class = EndpointFilterSet

    def get_queryset(self):
        return selectors.endpoints()

    @extend_schema(
        summary="Who owns an FQDN",
        description="The live endpoint with this FQDN (case-insensitive, trailing dot ignored): its "
        "environment, product, department and requester. 404 when no live environment owns it.",
        parameters=[OpenApiParameter("fqdn", str, OpenApiParameter.PATH, description="e.g. app.dev.shop.sandbox.example.com")],
        responses={200: s.EndpointSerializer},
    )
    @action(detail=False, methods=["get"], url_path=r"by-fqdn/(?P<fqdn>[^/]+)", filter_backends=[], pagination_class=None)
    def by_fqdn(self, request, fqdn=None):
        if "\x00" in fqdn:
            raise ValidationError({"fqdn": ["Null characters are not allowed."]})
        fqdn = normalise_fqdn(fqdn)
        endpoint = selectors.endpoint_owning(fqdn)
        if endpoint is None:
            previous = selectors.endpoint_last_released(fqdn)
            message = f"No live environment owns {fqdn}."
            if previous is not None:
                message += (
                    f" It belonged to {previous.environment} until "
                    f"{previous.released_at:%Y-%m-%d %H:%M} UTC (environment #{previous.environment_id})."
                )
            raise NotFound(message)
        return Response(s.EndpointSerializer(endpoint).data)


# --- API tokens -------------------------------------------------------------------------------


class TokenViewSet(ApiViewMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The caller's own API tokens. The key is returned once, by `POST`; `DELETE` revokes
    (the row stays, marked revoked). Staff revoke other people's tokens in the admin."""

    serializer_class = s.ApiTokenSerializer
    filter_backends = []

    def get_queryset(self):
        return tokens.list_tokens(self.request.user)

    @extend_schema(
        summary="Create an API token",
        description="Answers 201 with the token and its `key`. The key is shown this once: only "
        "its SHA-256 is stored. Use it as `Authorization: Token <key>`.",
        request=s.ApiTokenCreateSerializer,
        responses={201: s.ApiTokenCreatedSerializer},
    )
    def create(self, request):
        body = s.ApiTokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, key = tokens.create_token(
            user=request.user, name=body.validated_data["name"], expires_at=body.validated_data.get("expires_at")
        )
        token.key = key
        return Response(s.ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Revoke an API token",
        request=None,
        responses={200: OpenApiResponse(s.ApiTokenSerializer, description="The token, now revoked.")},
    )
    def destroy(self, request, pk=None):
        token = tokens.revoke_token(user=request.user, token_id=self.get_object().pk)
        return Response(s.ApiTokenSerializer(token).data)
