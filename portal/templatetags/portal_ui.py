"""Small template helpers of the browser UI: status badges, durations, query strings."""

import json

from django import template
from django.utils.html import format_html

from portal.api.authentication import ApiTokenAuthentication
from portal.web import display

register = template.Library()


@register.simple_tag
def api_auth_keyword():
    """The `Authorization` scheme the REST API accepts (`Token`), from its authentication class."""
    return ApiTokenAuthentication.keyword


@register.simple_tag
def badge(status, label=None):
    """A status pill, coloured by status (`display.TONES`); the label is the text."""
    return format_html(
        '<span class="badge badge--{}" data-status="{}">{}</span>', display.tone(status), status, label or status
    )


@register.filter
def tone(status):
    return display.tone(status)


@register.filter
def duration(seconds):
    """12s, 3m 05s, 1h 02m."""
    return display.format_duration(seconds)


@register.filter
def run_duration(run):
    """How long a run took (or has been going)."""
    if not (run.started_at or run.queued_at):
        return ""
    return display.format_duration(display.elapsed_seconds(run))


@register.filter
def pretty_json(value):
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@register.filter
def is_scalar(value):
    return isinstance(value, (str, int, float, bool)) or value is None


@register.filter
def is_link(value):
    """An output worth a link: an http(s) URL."""
    return isinstance(value, str) and value.startswith(("https://", "http://")) and " " not in value


@register.simple_tag(takes_context=True)
def query(context, **changes):
    """The current query string with `changes` applied (None/"" removes a key)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def endpoint_href(endpoint):
    """Where an endpoint link goes: its URL when it is http(s), else https://<fqdn>/."""
    return display.endpoint_href(endpoint.fqdn, endpoint.url)


@register.filter
def ago(moment):
    """"just now", "5 minutes ago", "2 days ago"."""
    if not moment:
        return ""
    from django.utils import timezone
    from django.utils.timesince import timesince

    if (timezone.now() - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment).split(',')[0]} ago"
