"""FilterSets shared by the browser list pages and the REST API (one definition, NetBox style)."""

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field
from django.db.models import Q

from portal.models import Endpoint, Environment, EnvironmentStatus, Run, RunKind, RunStatus


# The largest id a BigAutoField holds; a bigger number is a 400, not an overflow in the driver.
MAX_ID = 2**63 - 1


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """A row id: a whole number from 1 to MAX_ID (NumberFilter alone takes any decimal, and
    `?environment=1e300` crashed the query)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class EnvironmentFilterSet(django_filters.FilterSet):
    """Filter environments by department, product, pattern, account, status; `q` searches
    the name, the product and live FQDNs."""

    q = django_filters.CharFilter(method="search", label="Search")
    department = django_filters.CharFilter(field_name="product__department__slug", label="Department (slug)")
    product = django_filters.CharFilter(field_name="product__slug", label="Product (slug)")
    pattern = django_filters.CharFilter(field_name="pattern_slug", label="Design pattern (slug)")
    account = django_filters.CharFilter(field_name="account__account_id", label="AWS account id")
    status = django_filters.MultipleChoiceFilter(choices=EnvironmentStatus.choices)
    fqdn = django_filters.CharFilter(method="by_fqdn", label="Exact FQDN of a live endpoint")
    include_deleted = django_filters.BooleanFilter(method="with_deleted", label="Include deleted")

    class Meta:
        model = Environment
        fields = ["q", "department", "product", "pattern", "account", "status", "fqdn"]

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
    account = django_filters.CharFilter(field_name="account__account_id")

    class Meta:
        model = Run
        fields = ["environment", "kind", "status", "account"]


class EndpointFilterSet(django_filters.FilterSet):
    fqdn = django_filters.CharFilter(method="by_fqdn")
    q = django_filters.CharFilter(field_name="fqdn", lookup_expr="icontains")
    environment = IdFilter(field_name="environment_id")
    include_released = django_filters.BooleanFilter(method="with_released")

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
