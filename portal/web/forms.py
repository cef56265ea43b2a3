"""Forms of the browser UI.

Forms here only turn text into typed values and back. Every rule (the pattern's JSON Schema
limits, names, who may request what, free networks) is checked by the services, and their
errors are put back onto the fields by `apply_service_error`, so the UI and the API refuse
the same things with the same words.

`ParameterForm` is generated from a pattern's parameter JSON Schema (see
`provisioning.patterns.Pattern.parameter_fields`). Must not import the API.
"""

from __future__ import annotations

import datetime as dt
import json

from django import forms
from django.urls import reverse
from django.utils import timezone

from portal.models import Department, Product, SandboxAccount
from portal.services.errors import ServiceError

PARAM_PREFIX = "param"
# Strings longer than this get a textarea instead of a one-line input.
TEXTAREA_MIN_LENGTH = 256


# --- parameter form ---------------------------------------------------------------------------


class KeyValueWidget(forms.Textarea):
    """`key=value` lines for an object of strings (e.g. tags)."""

    def __init__(self, attrs=None):
        base = {"rows": 3, "placeholder": "key=value, one per line", "spellcheck": "false"}
        super().__init__({**base, **(attrs or {})})

    def format_value(self, value):
        if isinstance(value, dict):
            return "\n".join(f"{key}={item}" for key, item in value.items())
        return super().format_value(value)


class KeyValueField(forms.Field):
    """An object of string values, typed as one `key=value` per line (blank lines ignored)."""

    widget = KeyValueWidget

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        result: dict[str, str] = {}
        problems = []
        for number, line in enumerate((value or "").splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, item = line.partition("=")
            key = key.strip()
            if not sep or not key:
                problems.append(f"line {number}: write key=value")
            elif key in result:
                problems.append(f"line {number}: {key!r} is given twice")
            else:
                result[key] = item.strip()
        if problems:
            raise forms.ValidationError("; ".join(problems))
        return result


def _choice_key(value) -> str:
    """The <option> value of an enum member (strings as they are, others as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def _types(param) -> list[str]:
    kind = param.type
    types = kind if isinstance(kind, list) else [kind]
    return [t for t in types if t != "null"] or ["string"]


def _is_string_map(schema) -> bool:
    extra = schema.get("additionalProperties", {})
    return not schema.get("properties") and (extra in ({}, True) or (isinstance(extra, dict) and extra.get("type") == "string"))


def parameter_form_field(param) -> forms.Field:
    """The form field for one pattern parameter.

    Fields are never `required` on the Django side and carry no validators: the service
    validates with the schema and its messages are shown. Limits are set as HTML attributes
    so the browser helps before submitting.
    """
    schema = param.schema
    kind = _types(param)[0]
    attrs: dict = {}
    if param.required and not param.has_default:
        attrs["required"] = True
    common = {"label": param.title, "help_text": param.description, "required": False}
    if param.has_default:
        common["initial"] = param.default

    if param.enum is not None:
        lookup = {_choice_key(value): value for value in param.enum}
        choices = [(_choice_key(value), "— none —" if value in ("", None) else str(value)) for value in param.enum]
        if not param.has_default and not param.required:
            choices.insert(0, ("", "— not set —"))
        field = forms.TypedChoiceField(
            choices=choices, coerce=lambda key: lookup[key], empty_value=None, widget=forms.Select(attrs=attrs), **common
        )
        if param.has_default:
            field.initial = _choice_key(param.default)
        return field
    if kind == "boolean":
        return forms.BooleanField(**common)
    if kind in ("integer", "number"):
        for key, attr in (("minimum", "min"), ("maximum", "max")):
            if key in schema:
                attrs[attr] = schema[key]
        attrs["step"] = 1 if kind == "integer" else "any"
        field_class = forms.IntegerField if kind == "integer" else forms.FloatField
        return field_class(widget=forms.NumberInput(attrs=attrs), **common)
    if kind == "string":
        if "maxLength" in schema:
            attrs["maxlength"] = schema["maxLength"]
        long = schema.get("maxLength", 0) >= TEXTAREA_MIN_LENGTH
        widget = forms.Textarea(attrs={"rows": 3, **attrs}) if long else forms.TextInput(attrs=attrs)
        return forms.CharField(strip=False, empty_value="", widget=widget, **common)
    if kind == "object" and _is_string_map(schema):
        return KeyValueField(widget=KeyValueWidget(attrs), **common)
    # Anything else (arrays, nested objects): JSON, validated by the schema on submit.
    return forms.JSONField(widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", **attrs}), **common)


class ParameterForm(forms.Form):
    """The parameters of one pattern, generated from its JSON Schema (prefix `param`)."""

    def __init__(self, pattern, *args, **kwargs):
        kwargs.setdefault("prefix", PARAM_PREFIX)
        super().__init__(*args, **kwargs)
        self.pattern = pattern
        self.specs = {param.name: param for param in pattern.parameter_fields()}
        for name, param in self.specs.items():
            self.fields[name] = parameter_form_field(param)

    def parameters(self) -> dict:
        """The values to send to the service. Empty number/choice fields are left out (the
        service applies the schema default); an emptied string is sent as "" when the
        parameter has a default or is required, so clearing it is a visible choice."""
        values = {}
        for name, value in self.cleaned_data.items():
            param = self.specs[name]
            field = self.fields[name]
            if isinstance(field, forms.BooleanField) or isinstance(field, KeyValueField):
                values[name] = value
            elif isinstance(field, forms.CharField) and not isinstance(field, forms.JSONField):
                if value != "" or param.has_default or param.required:
                    values[name] = value
            elif value is not None and value != "":
                values[name] = value
        return values

    def fill(self, values: dict) -> "ParameterForm":
        """Start an unbound form from `values` (what an environment runs, or what a change
        plan asked for) instead of the schema's defaults; names the pattern lacks are left out."""
        for name, value in (values or {}).items():
            if name in self.fields:
                self.initial[name] = _choice_key(value) if self.specs[name].enum is not None else value
        return self

    def values_from(self, data) -> dict:
        """Initial values read from submitted data (a GET refresh keeps what was typed)."""
        initial = {}
        for name, field in self.fields.items():
            key = self.add_prefix(name)
            if key in data or isinstance(field, forms.BooleanField):
                initial[name] = field.widget.value_from_datadict(data, {}, key)
        return initial


# --- the request form ---------------------------------------------------------------------------


class EnvironmentRequestForm(forms.Form):
    """Product, pattern, name and account of a create request (parameters are separate).

    The product and account fields accept any row, and show only the sensible ones: a
    product of another department is refused by the service with a clear 403 message, an
    account of another department with a message on the field.
    """

    product = forms.ModelChoiceField(queryset=Product.objects.select_related("department"), empty_label=None)
    pattern = forms.ChoiceField(label="Design pattern")
    name = forms.CharField(
        max_length=40,
        required=False,
        help_text="Lowercase letters, digits and hyphens; part of the FQDN. Leave empty for a suggested name.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    account = forms.ModelChoiceField(
        queryset=SandboxAccount.objects.all(),
        required=False,
        label="Sandbox account",
        empty_label="Automatic",
        help_text="Automatic picks the department's first active account.",
    )
    # The name the form suggested last, so a product change can re-suggest an untouched name.
    suggested_name = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, products, catalog, accounts_for, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["product"].widget.choices = [
            (product.pk, f"{product.name} ({product.department.name})") for product in products
        ]
        self.fields["pattern"].choices = [
            (slug, pattern.name) for slug, pattern in sorted(catalog.items(), key=lambda item: item[1].name)
        ]
        # A change of product, pattern or account re-renders the form (htmx; the target and the
        # rest are inherited from the fieldset). On the selects themselves, not as a trigger
        # filter on the fieldset: htmx evaluates filters with Function(), which the
        # Content-Security-Policy (no 'unsafe-eval') forbids.
        for name in ("product", "pattern", "account"):
            self.fields[name].widget.attrs.update({"hx-get": reverse("environment-create"), "hx-trigger": "change"})
        self.accounts_for = accounts_for

    def limit_accounts(self, product) -> None:
        """Show only the active accounts of the product's department."""
        accounts = list(self.accounts_for(product.department_id)) if product else []
        self.fields["account"].widget.choices = [("", self.fields["account"].empty_label)] + [
            (account.pk, f"{account.name} · {'simulated AWS' if account.simulated else account.get_kind_display().split(' ')[0]} · {account.region}")
            for account in accounts
        ]


def apply_service_error(exc: ServiceError, form: forms.Form, parameter_form: forms.Form | None) -> None:
    """Put a service's refusal onto the fields it names (`param:<name>` -> parameter form);
    anything without a field becomes a form-level error."""
    placed = False
    for key, message in (exc.errors or {}).items():
        if key.startswith("param:") and parameter_form is not None and key[6:] in parameter_form.fields:
            parameter_form.add_error(key[6:], message)
            placed = True
        elif key in form.fields:
            form.add_error(key, message)
            placed = True
        else:
            form.add_error(None, f"{key.removeprefix('param:')}: {message}" if key else message)
            placed = True
    if not placed or (exc.errors and any(k.startswith("param:") for k in exc.errors)):
        form.add_error(None, exc.message)


class ChangeRequestForm(forms.Form):
    """The pattern version a change plans for; its parameters are a `ParameterForm` of that
    version. Which versions may be named and what the parameters may be is the service's
    (`services.changes.request_change`); this only offers the catalog's versions (newest
    first) and re-renders the form (htmx) when another is chosen."""

    pattern_version = forms.ChoiceField(
        label="Pattern version",
        help_text="The version to render the environment's code from; a newer one upgrades it.",
    )

    def __init__(self, *args, versions, current, refresh_url, **kwargs):
        super().__init__(*args, **kwargs)

        def label(version):
            notes = [note for note, applies in (("runs now", version == current), ("newest", version == versions[0]))
                     if applies]
            return f"{version} ({', '.join(notes)})" if notes else version

        self.fields["pattern_version"].choices = [(version, label(version)) for version in versions]
        if not self.is_bound and not self.initial.get("pattern_version"):
            self.initial["pattern_version"] = current if current in versions else versions[0]
        # As on the create form: on the select itself (htmx trigger filters need eval, which
        # the Content-Security-Policy forbids); target and the rest come from the fieldset.
        self.fields["pattern_version"].widget.attrs.update({"hx-get": refresh_url, "hx-trigger": "change"})


def apply_change_error(exc: ServiceError, form: forms.Form, parameter_form: forms.Form | None) -> None:
    """`apply_service_error` for the change form: a refusal of the parameters as a whole
    (`parameters`: "the change changes nothing") is shown above the parameters, in its own words."""
    errors = dict(exc.errors or {})
    whole = errors.pop("parameters", None)
    if whole is not None and parameter_form is not None:
        parameter_form.add_error(None, whole)
        if not errors:
            return
        exc = type(exc)(exc.message, errors=errors)
    apply_service_error(exc, form, parameter_form)


# --- list filters -------------------------------------------------------------------------------


class SingleSelectMultiple(forms.Select):
    """A one-choice <select> for a multiple-choice filter (the API accepts several values)."""

    def value_from_datadict(self, data, files, name):
        getter = getattr(data, "getlist", None)
        values = getter(name) if getter else [data.get(name)]
        return [value for value in values if value]


def department_choices():
    return [("", "All departments")] + list(Department.objects.order_by("name").values_list("slug", "name"))


def product_choices():
    return [("", "All products")] + [
        (slug, name) for slug, name in Product.objects.order_by("name").values_list("slug", "name")
    ]


class TokenCreateForm(forms.Form):
    """A new personal API token: what it is for and, optionally, when it stops working."""

    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “CI pipeline”.")
    expires_at = forms.DateField(
        required=False,
        label="Expires on",
        help_text="Optional. Leave empty for a token that works until you revoke it.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )


class DeleteConfirmForm(forms.Form):
    """Deleting needs the environment's name typed out, so a click alone destroys nothing."""

    confirm_name = forms.CharField(
        label="Type the environment name to confirm",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args, environment, **kwargs):
        super().__init__(*args, **kwargs)
        self.environment = environment

    def clean_confirm_name(self):
        typed = self.cleaned_data["confirm_name"].strip()
        if typed != self.environment.name:
            raise forms.ValidationError(
                f"That is not the name of this environment: type {self.environment.name} exactly to delete it."
            )
        return typed


# --- expiry -------------------------------------------------------------------------------------

# The extend buttons of the expiry card: hours later (from now, or from the current expiry).
EXTEND_CHOICES = [(24, "+1 day"), (72, "+3 days"), (168, "+7 days")]


class UtcDateTimeField(forms.DateTimeField):
    """A `datetime-local` value read as UTC (the card shows every time in UTC), whatever the
    portal's TIME_ZONE."""

    def to_python(self, value):
        with timezone.override(dt.timezone.utc):
            return super().to_python(value)


class ExpiryExtendForm(forms.Form):
    """An extension: `hours` (one of the card's buttons) or `until` (a time). Whether it is
    allowed (the product's maximum, one of the two, in the future) is `expiry.extend`'s."""

    hours = forms.TypedChoiceField(choices=EXTEND_CHOICES, coerce=int, required=False, empty_value=None,
                                   label="Extend by")
    until = UtcDateTimeField(
        required=False,
        label="Expire at (UTC)",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
