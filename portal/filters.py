"""FilterSets shared by the browser list pages and the REST API (one definition, NetBox style)."""

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field
from django.db.models import Q

from portal.models import (
    ChangePlan, DriftCheck, DriftStatus, Endpoint, Environment, EnvironmentStatus, Notification, NotificationEvent, Run,
    RunKind, RunStatus,
)


# The largest id a BigAutoField holds; a bigger number is a 400, not an overflow in the driver.
MAX_ID = 2**63 - 1


class PresentIntegerField(forms.IntegerField):
    """A whole number that, when the parameter is given, is there: `?environment=` is refused,
    not read as "no filter" (the schema says integer)."""

    def clean(self, value):
        if value == "":
            raise forms.ValidationError("give a whole number", code="invalid")
        return super().clean(value)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """A row id: a whole number from 1 to MAX_ID (NumberFilter alone takes any decimal, and
    `?environment=1e300` crashed the query)."""

    field_class = PresentIntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


@extend_schema_field({"type": "string", "pattern": "^[^\\u0000]*$"})
class TextFilter(django_filters.CharFilter):
    """A text filter; NUL is refused (PostgreSQL cannot compare it), and the schema says so."""


class StrictNullBooleanField(forms.NullBooleanField):
    """true/false (1/0), or not given; anything else - "" included - is an error, not "no
    filter" (issue 12: `?include_deleted=AAA` was quietly ignored)."""

    TRUE, FALSE = {"true", "True", "1"}, {"false", "False", "0"}

    def to_python(self, value):
        if value is None:
            return None  # not given
        if isinstance(value, bool):
            return value
        if value in self.TRUE:
            return True
        if value in self.FALSE:
            return False
        raise forms.ValidationError("must be true or false", code="invalid")

    def validate(self, value):
        pass


class PresentChoiceField(forms.ChoiceField):
    """A choice that, when given, is one of the choices: `?kind=` is refused, not read as
    "no filter" (the schema's enum has no empty value)."""

    def clean(self, value):
        if value == "":
            raise forms.ValidationError("choose one of the listed values", code="invalid_choice")
        return super().clean(value)


class PresentIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 time that, when the parameter is given, is there (`?expires_before=` is
    refused, not read as "no filter": the schema says date-time)."""

    def clean(self, value):
        if value == "":
            raise forms.ValidationError("give an ISO 8601 date-time, e.g. 2026-12-24T18:00:00Z", code="invalid")
        return super().clean(value)


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = PresentIsoDateTimeField


class ChoiceFilter(django_filters.ChoiceFilter):
    field_class = PresentChoiceField


class BooleanFilter(django_filters.BooleanFilter):
    """A BooleanFilter that refuses what is not a boolean (see StrictNullBooleanField). Its
    widget hands the raw text to the field (django-filter's BooleanWidget turns "AAA" into
    "no filter" before any check)."""

    field_class = StrictNullBooleanField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", forms.TextInput)
        super().__init__(*args, **kwargs)


class EnvironmentFilterSet(django_filters.FilterSet):
    """Filter environments by department, product, pattern, account, status; `q` searches
    the name, the product and live FQDNs."""

    q = TextFilter(method="search", label="Search")
    department = TextFilter(field_name="product__department__slug", label="Department (slug)")
    product = TextFilter(field_name="product__slug", label="Product (slug)")
    pattern = TextFilter(field_name="pattern_slug", label="Design pattern (slug)")
    account = TextFilter(field_name="account__account_id", label="AWS account id")
    status = django_filters.MultipleChoiceFilter(choices=EnvironmentStatus.choices)
    fqdn = TextFilter(method="by_fqdn", label="Exact FQDN of a live endpoint")
    include_deleted = BooleanFilter(method="with_deleted", label="Include deleted")
    drift = django_filters.MultipleChoiceFilter(field_name="drift_status", choices=DriftStatus.choices,
                                                label="What the latest drift check found")
    version = TextFilter(field_name="pattern_version", label="Pattern version")
    expires_before = IsoDateTimeFilter(field_name="expires_at", lookup_expr="lte",
                                                      label="Expires at or before (ISO 8601)")

    class Meta:
        model = Environment
        fields = ["q", "department", "product", "pattern", "account", "status", "fqdn", "drift", "version", "expires_before"]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(name__icontains=value)
            | Q(product__slug__icontains=value)
            | Q(product__name__icontains=value)
            | Q(endpoints__fqdn__icontains=value, endpoints__released_at__isnull=True)
        ).distinct()

    def by_fqdn(self, queryset, name, value):
        return queryset.filter(endpoints__fqdn=value.strip().lower().rstrip("."), endpoints__released_at__isnull=True)

    def with_deleted(self, queryset, name, value):
        return queryset  # handled in `qs` below

    @property
    def qs(self):
        queryset = super().qs
        wants_deleted = self.form.cleaned_data.get("include_deleted") if hasattr(self.form, "cleaned_data") else False
        statuses = self.form.cleaned_data.get("status") if hasattr(self.form, "cleaned_data") else None
        if not wants_deleted and not (statuses and EnvironmentStatus.DELETED in statuses):
            queryset = queryset.exclude(status=EnvironmentStatus.DELETED)
        return queryset


class RunFilterSet(django_filters.FilterSet):
    environment = IdFilter(field_name="environment_id")
    kind = django_filters.MultipleChoiceFilter(choices=RunKind.choices)
    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices)
    account = TextFilter(field_name="account__account_id")

    class Meta:
        model = Run
        fields = ["environment", "kind", "status", "account"]


class ChangePlanFilterSet(django_filters.FilterSet):
    environment = IdFilter(field_name="environment_id")

    class Meta:
        model = ChangePlan
        fields = ["environment"]


class DriftCheckFilterSet(django_filters.FilterSet):
    environment = IdFilter(field_name="environment_id")
    status = django_filters.MultipleChoiceFilter(choices=DriftCheck.Status.choices)

    class Meta:
        model = DriftCheck
        fields = ["environment", "status"]


class NotificationFilterSet(django_filters.FilterSet):
    status = ChoiceFilter(choices=Notification.Status.choices)
    event = ChoiceFilter(choices=NotificationEvent.choices)
    environment = IdFilter(field_name="environment_id")

    class Meta:
        model = Notification
        fields = ["status", "event", "environment"]


class EndpointFilterSet(django_filters.FilterSet):
    fqdn = TextFilter(method="by_fqdn")
    q = TextFilter(field_name="fqdn", lookup_expr="icontains")
    environment = IdFilter(field_name="environment_id")
    include_released = BooleanFilter(method="with_released")

    class Meta:
        model = Endpoint
        fields = ["fqdn", "q", "environment"]

    def by_fqdn(self, queryset, name, value):
        return queryset.filter(fqdn=value.strip().lower().rstrip("."))

    def with_released(self, queryset, name, value):
        return queryset if value else queryset.filter(released_at__isnull=True)

    @property
    def qs(self):
        queryset = super().qs
        if not (hasattr(self.form, "cleaned_data") and self.form.cleaned_data.get("include_released")):
            queryset = queryset.filter(released_at__isnull=True)
        return queryset
