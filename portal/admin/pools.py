"""Validation of CIDR pools in the admin, beyond what `CidrPool.clean` can see.

`CidrPool.clean` checks one pool against the pools already saved. Here:
- pools added or changed together in one account form are checked against each other,
- a pool that handed out networks cannot be deleted (CidrAllocation.pool is PROTECT) and
  cannot change its range while networks are allocated from it,
each with a message an admin can act on instead of a ProtectedError page.
"""

import ipaddress

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Count, Q

from portal.models import CidrPool


def deletion_blocker(cidr: str, live: int, total: int) -> str | None:
    """Why a pool with `live` unreleased and `total` allocations cannot be deleted, or None."""
    if live:
        noun = "environment network" if live == 1 else "environment networks"
        return f"{cidr} has {live} {noun} allocated; delete those environments first."
    if total:
        noun = "released allocation" if total == 1 else "released allocations"
        return (
            f"{cidr} has {total} {noun} kept for audit, so the pool cannot be deleted "
            "(it stays as the record of which networks environments used)."
        )
    return None


def with_allocation_counts(queryset):
    """Annotate pools with `live_allocations` and `total_allocations` (one query)."""
    return queryset.annotate(
        live_allocations=Count("allocations", filter=Q(allocations__released_at__isnull=True)),
        total_allocations=Count("allocations"),
    )


def pool_deletion_blocker(pool: CidrPool) -> str | None:
    """Why `pool` cannot be deleted, in words an admin can act on; None if it can."""
    live = getattr(pool, "live_allocations", None)
    total = getattr(pool, "total_allocations", None)
    if live is None or total is None:
        live = pool.allocations.filter(released_at__isnull=True).count()
        total = pool.allocations.count()
    return deletion_blocker(pool.cidr, live, total)


def pools_deletion_blockers(queryset) -> list[str]:
    """The blockers of every pool in `queryset` (for bulk delete), in one query."""
    blockers = (
        deletion_blocker(p.cidr, p.live_allocations, p.total_allocations) for p in with_allocation_counts(queryset)
    )
    return [blocker for blocker in blockers if blocker]


class CidrPoolForm(forms.ModelForm):
    """A pool form that refuses to move a pool's range while networks are allocated from it."""

    class Meta:
        model = CidrPool
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        pool = self.instance
        moved = {"cidr", "prefix_length"} & set(self.changed_data)
        if pool.pk and moved:
            live = pool.allocations.filter(released_at__isnull=True).count()
            if live:
                noun = "environment network is" if live == 1 else "environment networks are"
                raise ValidationError(
                    f"{pool.cidr} cannot change its CIDR or block size: {live} {noun} allocated from it. "
                    "Add a new pool instead, or delete those environments first."
                )
        return cleaned


class CidrPoolInlineFormSet(forms.BaseInlineFormSet):
    """The pools of one account as submitted together: no two may overlap, none with
    allocations may be deleted. Each form's own `CidrPool.clean` already compared it with
    the saved pools; only the unsaved siblings are left to compare here."""

    def clean(self):
        self._check_submitted_pools_do_not_overlap()
        # Before super().clean(): its unique check validates the deleted forms too, where the
        # admin's own protection raises "would require deleting the following protected
        # related objects: cidr allocation 10.20.0.0/24, ..." and ends the clean first.
        self._check_deleted_pools_have_no_allocations()
        super().clean()

    def _check_submitted_pools_do_not_overlap(self):
        seen: list[ipaddress.IPv4Network] = []
        for form in self.forms:
            if self.can_delete and self._should_delete_form(form):
                continue
            cidr = getattr(form, "cleaned_data", {}).get("cidr")
            if not cidr:
                continue  # an empty extra row, or its CIDR already has an error
            try:
                network = ipaddress.IPv4Network(cidr, strict=True)
            except ValueError:
                continue
            clash = next((other for other in seen if network.overlaps(other)), None)
            if clash is not None:
                form.add_error("cidr", f"{network} overlaps the pool {clash} entered above.")
            else:
                seen.append(network)

    def _check_deleted_pools_have_no_allocations(self):
        # Not `self.deleted_forms`: it is empty while any other row has an error, and the
        # admin should hear about every problem of the submission at once.
        pks = [
            form.instance.pk
            for form in self.forms
            if self.can_delete and self._should_delete_form(form) and form.instance.pk is not None
        ]
        if not pks:
            return
        blockers = pools_deletion_blockers(CidrPool.objects.filter(pk__in=pks).order_by("cidr"))
        if blockers:
            raise ValidationError(blockers)
