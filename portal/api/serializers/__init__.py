"""Serializers of the REST API: shapes of rows, and parsing of request bodies. No rules.

- Admin-owned records (departments, sandbox accounts, products) are validated by the
  model's own `full_clean()`, so the API answers with the admin's messages
  (`FullCleanModelSerializer`).
- Requests that start work (create/delete/retry/cancel) only parse references here
  (product slug -> Product) and hand the values to `portal.services.environments`, which
  decides everything else.
- Relations in bodies are referred to by slug (departments, products), AWS account id
  (sandbox accounts) and username (users), the same keys the list filters take.

One module per resource; the names are re-exported here (`from portal.api import serializers
as s`, then `s.RunSerializer`):

- `fields`: shared field classes and helpers (StrictCharField, StrictSlugField, JsonObjectField,
  SlugReference, ListOfReferences, enum_field, encodable_json, ENCODING_VALIDATORS) and
  FullCleanModelSerializer, the base of the admin-owned records' serializers.
- `refs`: small nested shapes (UserRefSerializer, PersonSerializer, DepartmentRefSerializer,
  ProductRefSerializer, AccountRefSerializer).
- `departments`: DepartmentSerializer.
- `accounts`: SandboxAccountSerializer, CidrPoolSerializer.
- `products`: ProductSerializer.
- `patterns`: PatternSerializer, PatternEndpointSerializer (from the catalog).
- `runs`: RunSerializer, RunDetailSerializer, RunEventSerializer, RunEventsPageSerializer,
  CancelResultSerializer, ProgressSerializer, GitHubLinksSerializer, RunEnvironmentRefSerializer.
- `environments`: EnvironmentSerializer, EnvironmentDetailSerializer, EnvironmentCreateSerializer,
  PreflightSerializer, PreflightProblemsField, EnvironmentRequestResultSerializer, the
  latest-run shapes and fields, EndpointRefSerializer.
- `endpoints`: EndpointSerializer, EndpointEnvironmentSerializer.
- `changes`: ChangePlanSerializer, ChangePlanDetailSerializer, ChangeRequestSerializer,
  ChangeResultSerializer, ResourceChangeSerializer, ChangeSummarySerializer (day two).
- `drift`: DriftCheckSerializer, DriftCheckDetailSerializer, DriftedResourceSerializer.
- `tokens`: ApiTokenSerializer, ApiTokenCreateSerializer, ApiTokenCreatedSerializer,
  TokenNameField, TOKEN_NAME_PATTERN.

Imports go one way: fields <- refs <- resources; environments also uses runs.
"""

from portal.api.serializers.accounts import CidrPoolSerializer, SandboxAccountSerializer
from portal.api.serializers.changes import (
    ChangePlanDetailSerializer,
    ChangePlanSerializer,
    ChangeRequestSerializer,
    ChangeResultSerializer,
    ChangeSummarySerializer,
    ResourceChangeSerializer,
)
from portal.api.serializers.departments import DepartmentSerializer
from portal.api.serializers.drift import DriftCheckDetailSerializer, DriftCheckSerializer, DriftedResourceSerializer
from portal.api.serializers.endpoints import EndpointEnvironmentSerializer, EndpointSerializer
from portal.api.serializers.environments import (
    EndpointRefSerializer,
    EnvironmentCreateSerializer,
    EnvironmentDetailSerializer,
    EnvironmentRequestResultSerializer,
    EnvironmentSerializer,
    ExtendSerializer,
    KeepSerializer,
    LatestRunDetailField,
    LatestRunDetailSerializer,
    LatestRunField,
    LatestRunSerializer,
    LatestRunSummaryField,
    PreflightProblemsField,
    PreflightSerializer,
)
from portal.api.serializers.fields import (
    ENCODING_VALIDATORS,
    FullCleanModelSerializer,
    JsonObjectField,
    ListOfReferences,
    SlugReference,
    StrictCharField,
    StrictSlugField,
    encodable_json,
    enum_field,
)
from portal.api.serializers.patterns import FleetRowSerializer, PatternEndpointSerializer, PatternSerializer
from portal.api.serializers.products import ProductSerializer
from portal.api.serializers.refs import (
    AccountRefSerializer,
    DepartmentRefSerializer,
    PersonSerializer,
    ProductRefSerializer,
    UserRefSerializer,
)
from portal.api.serializers.runs import (
    CancelResultSerializer,
    GitHubLinksSerializer,
    ProgressSerializer,
    RunDetailSerializer,
    RunEnvironmentRefSerializer,
    RunEventSerializer,
    RunEventsPageSerializer,
    RunSerializer,
)
from portal.api.serializers.tokens import (
    TOKEN_NAME_PATTERN,
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    TokenNameField,
)

__all__ = [
    # changes
    "ChangePlanDetailSerializer",
    "ChangePlanSerializer",
    "ChangeRequestSerializer",
    "ChangeResultSerializer",
    "ChangeSummarySerializer",
    "ResourceChangeSerializer",
    # fields
    "ENCODING_VALIDATORS",
    "FullCleanModelSerializer",
    "JsonObjectField",
    "ListOfReferences",
    "SlugReference",
    "StrictCharField",
    "StrictSlugField",
    "encodable_json",
    "enum_field",
    # refs
    "AccountRefSerializer",
    "DepartmentRefSerializer",
    "PersonSerializer",
    "ProductRefSerializer",
    "UserRefSerializer",
    # departments, accounts, products
    "DepartmentSerializer",
    "CidrPoolSerializer",
    "SandboxAccountSerializer",
    "ProductSerializer",
    # patterns
    "PatternEndpointSerializer",
    "PatternSerializer",
    "FleetRowSerializer",
    "ExtendSerializer",
    "KeepSerializer",
    "DriftCheckSerializer",
    "DriftCheckDetailSerializer",
    "DriftedResourceSerializer",
    # runs
    "CancelResultSerializer",
    "GitHubLinksSerializer",
    "ProgressSerializer",
    "RunDetailSerializer",
    "RunEnvironmentRefSerializer",
    "RunEventSerializer",
    "RunEventsPageSerializer",
    "RunSerializer",
    # environments
    "EndpointRefSerializer",
    "EnvironmentCreateSerializer",
    "EnvironmentDetailSerializer",
    "EnvironmentRequestResultSerializer",
    "EnvironmentSerializer",
    "LatestRunDetailField",
    "LatestRunDetailSerializer",
    "LatestRunField",
    "LatestRunSerializer",
    "LatestRunSummaryField",
    "PreflightProblemsField",
    "PreflightSerializer",
    # endpoints
    "EndpointEnvironmentSerializer",
    "EndpointSerializer",
    # tokens
    "TOKEN_NAME_PATTERN",
    "ApiTokenCreateSerializer",
    "ApiTokenCreatedSerializer",
    "ApiTokenSerializer",
    "TokenNameField",
]
