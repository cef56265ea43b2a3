"""The list page's view of the shared FilterSets: the same filters as the API, with
select boxes instead of slug text inputs."""

from django import forms

from portal.filters import EnvironmentFilterSet
from portal.models import DriftStatus, EnvironmentStatus
from portal.services.catalog import get_catalog
from portal.web.forms import SingleSelectMultiple, department_choices, product_choices


class EnvironmentListFilterSet(EnvironmentFilterSet):
    """`EnvironmentFilterSet` with widgets for people (the filtering itself is inherited)."""

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

    @property
    def is_filtered(self) -> bool:
        """Whether any filter is set (the page offers "clear filters" then)."""
        if not self.is_bound:
            return False
        return any(self.data.get(name) for name in self.form.fields)
