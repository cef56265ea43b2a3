"""The list page's view of the shared FilterSets: the same filters as the API, with
select boxes instead of slug text inputs, plus what only people ask for ("expires within",
which is the API's `expires_before` counted from now, and a sort by expiry)."""

from datetime import timedelta

import django_filters
from django import forms
from django.db.models import F
from django.utils import timezone

from portal.filters import EnvironmentFilterSet
from portal.models import DriftStatus, EnvironmentStatus
from portal.services.catalog import get_catalog
from portal.web.forms import SingleSelectMultiple, department_choices, product_choices


# "Expires within": how far ahead from now (the API's `expires_before` is that moment).
EXPIRES_WITHIN = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}
EXPIRES_WITHIN_CHOICES = [("", "Any time"), ("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days")]
# Sorts besides the default (newest first).
SORT_CHOICES = [("", "Newest first"), ("expires", "Expires soonest")]
# Soonest first; those that never expire (no expiry, or kept by staff) last; newest first among
# equals, so a page boundary is stable.
EXPIRY_ORDER = (F("kept").asc(), F("expires_at").asc(nulls_last=True), F("id").desc())


class EnvironmentListFilterSet(EnvironmentFilterSet):
    """`EnvironmentFilterSet` with widgets for people (the filtering itself is inherited)."""

    expires_within = django_filters.ChoiceFilter(choices=EXPIRES_WITHIN_CHOICES[1:], method="by_expires_within",
                                                 label="Expires within")
    sort = django_filters.ChoiceFilter(choices=SORT_CHOICES[1:], method="sort_by", label="Sort")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        fields = self.form.fields
        fields["q"].widget = forms.SearchInput(attrs={"placeholder": "Name, product or FQDN"})
        fields["department"].widget = forms.Select(choices=department_choices())
        fields["product"].widget = forms.Select(choices=product_choices())
        patterns = sorted(get_catalog().values(), key=lambda pattern: pattern.name)
        fields["pattern"].widget = forms.Select(
            choices=[("", "All patterns")] + [(pattern.slug, pattern.name) for pattern in patterns]
        )
        fields["status"].widget = SingleSelectMultiple(choices=[("", "Any status")] + list(EnvironmentStatus.choices))
        fields["drift"].widget = SingleSelectMultiple(choices=[("", "Any drift")] + list(DriftStatus.choices))
        fields["drift"].label = "Drift"
        fields["include_deleted"].widget = forms.CheckboxInput()
        fields["include_deleted"].label = "Include deleted"
        fields["expires_within"].widget = forms.Select(choices=EXPIRES_WITHIN_CHOICES)
        fields["sort"].widget = forms.Select(choices=SORT_CHOICES)

    def by_expires_within(self, queryset, name, value):
        """The API's `expires_before` at now + the chosen span, less what will not expire any
        more: kept ones, and those whose destroy expiry already queued. An expiry already
        past that expiry could not act on yet is within any span."""
        moment = timezone.now() + EXPIRES_WITHIN[value]
        return self.filters["expires_before"].filter(queryset, moment).filter(kept=False, expired_at__isnull=True)

    def sort_by(self, queryset, name, value):
        return queryset.order_by(*EXPIRY_ORDER) if value == "expires" else queryset

    @property
    def is_filtered(self) -> bool:
        """Whether any filter is set (the page offers "clear filters" then)."""
        if not self.is_bound:
            return False
        return any(self.data.get(name) for name in self.form.fields if name != "sort")
