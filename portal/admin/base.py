"""Shared pieces of the admin: read-only mixins and small display helpers.

Must not import `portal.services` writers: the admin only edits what admins own
(departments, accounts, pools, products); everything the engine writes is shown read-only.
"""

import json

from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html


class ReadOnlyAdminMixin:
    """No add, change or delete: rows written by the engine are shown, never edited here.

    Editing a run, a state version or an endpoint by hand would make the CMDB disagree with
    what Terraform built; those rows change only through `portal.services`.
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInlineMixin(ReadOnlyAdminMixin):
    """A read-only inline: no empty extra rows, no delete checkboxes."""

    extra = 0
    max_num = 0
    can_delete = False


def admin_url(obj) -> str | None:
    """The admin change page of `obj`, or None when its model is not registered."""
    if obj is None or obj.pk is None:
        return None
    opts = obj._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return None


def admin_link(obj, text=None):
    """A link to `obj`'s admin page (plain text when it has none); "-" for None."""
    if obj is None:
        return "-"
    url = admin_url(obj)
    label = str(obj) if text is None else text
    if url is None:
        return label
    return format_html('<a href="{}">{}</a>', url, label)


def pretty_json(value):
    """A JSON value as an indented, escaped <pre> block ("-" when empty)."""
    if value in (None, "", {}, []):
        return "-"
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, default=str),
    )
