"""Filters of the admin-owned CMDB lists (departments, sandbox accounts, products).

Environments, runs and endpoints use the FilterSets in `portal.filters`, shared with the
browser UI; these three lists exist only in the API (the UI shows them in the admin).
"""

import django_filters
from django.db.models import Q

from portal.filters import BooleanFilter, ChoiceFilter, TextFilter
from portal.models import Department, Product, SandboxAccount


class SlugNameSearchFilterSet(django_filters.FilterSet):
    """`q`: a case-insensitive match in the slug or the name."""

    q = TextFilter(method="search", label="Search slug and name")

    def search(self, queryset, name, value):
        value = value.strip()
        return queryset.filter(Q(slug__icontains=value) | Q(name__icontains=value)) if value else queryset


class DepartmentFilterSet(SlugNameSearchFilterSet):
    member = TextFilter(field_name="members__username", label="Member (username)")

    class Meta:
        model = Department
        fields = ["q", "member"]


class SandboxAccountFilterSet(django_filters.FilterSet):
    department = TextFilter(field_name="department__slug", label="Department (slug)")
    kind = ChoiceFilter(choices=SandboxAccount.Kind.choices)
    is_active = BooleanFilter()
    account_id = TextFilter(label="AWS account id")

    class Meta:
        model = SandboxAccount
        fields = ["department", "kind", "is_active", "account_id"]


class ProductFilterSet(SlugNameSearchFilterSet):
    department = TextFilter(field_name="department__slug", label="Department (slug)")

    class Meta:
        model = Product
        fields = ["q", "department"]
