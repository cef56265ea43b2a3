"""Shared field classes and helpers of the API's serializers, and the base of the
admin-owned records' serializers (`FullCleanModelSerializer`)."""

import copy

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework.relations import MANY_RELATION_KWARGS
from rest_framework import serializers
from rest_framework.fields import ProhibitSurrogateCharactersValidator
from rest_framework.settings import api_settings


# Kept on every field: they protect the database driver (PostgreSQL refuses NUL), not rules.
ENCODING_VALIDATORS = (ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator)


def enum_field(choices, **kwargs) -> serializers.ChoiceField:
    """A read-only choice field documented as an inline enum with its labels.

    Inline (wrapped in `allOf`, which drf-spectacular's enum hook leaves alone), because runs
    and environments both have a `status`, and runs, accounts and events a `kind`, with
    different choices: the shared components would be named `Status650Enum` and the like.
    (ENUM_NAME_OVERRIDES in SPECTACULAR_SETTINGS would be the other way.)
    """
    schema = {
        "allOf": [{"type": "string", "enum": [value for value, _ in choices.choices]}],
        "description": "; ".join(f"`{value}` {label}" for value, label in choices.choices),
    }
    field_class = extend_schema_field(schema)(type(f"{choices.__name__}Field", (serializers.ChoiceField,), {}))
    return field_class(choices=choices.choices, read_only=True, **kwargs)


def encodable_json(value) -> None:
    """Refuse NUL and lone surrogates anywhere in a JSON value (keys included): PostgreSQL's
    jsonb cannot store NUL and UTF-8 cannot encode a lone surrogate, so either would fail in
    the database driver instead of being a 400. The error names the nested path."""
    problem = _unencodable(value, "")
    if problem is not None:
        path, message = problem
        raise serializers.ValidationError({path: [message]} if path else [message])


def _unencodable(value, path: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        if "\x00" in value:
            return path, "Null characters are not allowed."
        if any("\ud800" <= char <= "\udfff" for char in value):
            return path, "Surrogate characters are not allowed."
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = _unencodable(key, path) or _unencodable(item, f"{path}.{key}" if path else str(key))
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _unencodable(item, f"{path}.{index}" if path else str(index))
            if problem:
                return problem
    return None


class _TextOnly:
    """Text, and only text: DRF's CharField turns `0` into "0", so `"name": 0` was accepted
    although the schema says string (issue 12)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(_TextOnly, serializers.CharField):
    """A CharField that takes only a JSON string, exactly as sent: no silent trimming, so its
    length and blankness are what the schema's minLength/maxLength say. `schema_pattern`: a
    form the schema states that a service checks later (see PortalAutoSchema)."""

    def __init__(self, *, schema_pattern: str | None = None, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        self.schema_pattern = schema_pattern
        super().__init__(**kwargs)


class StrictSlugField(_TextOnly, serializers.SlugField):
    """A SlugField that takes only a JSON string, exactly as sent."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


@extend_schema_field({"type": "object", "additionalProperties": True})
class JsonObjectField(serializers.JSONField):
    """A JSON object (not null, not a list): what the model's dict-valued column holds."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("invalid")
        return super().to_internal_value(data)


class ListOfReferences(serializers.ManyRelatedField):
    """Several references: a JSON list, nothing else (DRF iterated a dict's keys, so
    `"members": {}` was accepted as "no members" - issue 12)."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class SlugReference(serializers.SlugRelatedField):
    """A SlugRelatedField that refuses NUL before the lookup: PostgreSQL cannot even compare
    a text containing NUL (the driver raises DataError, which would be a 500)."""

    @classmethod
    def many_init(cls, *args, **kwargs):
        """As DRF's RelatedField.many_init, with ListOfReferences for the list."""
        list_kwargs = {"child_relation": cls(*args, **kwargs)}
        list_kwargs.update({key: value for key, value in kwargs.items() if key in MANY_RELATION_KWARGS})
        return ListOfReferences(**list_kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)


# --- Admin-owned CMDB records -----------------------------------------------------------------


class FullCleanModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose checks are the model's `full_clean()` (field validators,
    uniqueness, `clean()`), so the API says exactly what the admin says.

    The validators DRF derives from the model are dropped (they would answer first, in DRF's
    wording); type conversion and the encoding validators stay. The schema still states the
    model's constraints (`full_clean_schema`, read by api.schema.PortalAutoSchema).
    """

    full_clean_schema = True
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
    }

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            if field.read_only:
                continue
            field.validators = [v for v in field.validators if isinstance(v, ENCODING_VALIDATORS)]
            if isinstance(field, serializers.JSONField):
                field.validators.append(encodable_json)
            if isinstance(field, serializers.CharField):
                field.allow_blank = True  # "This field cannot be blank." comes from full_clean
        return fields

    def get_validators(self):
        return []

    def validate(self, attrs):
        model = self.Meta.model
        many_to_many = {field.name for field in model._meta.many_to_many}
        instance = copy.copy(self.instance) if self.instance is not None else model()
        for name, value in attrs.items():
            if name not in many_to_many:
                setattr(instance, name, value)
        errors = {}
        try:
            instance.full_clean()
        except DjangoValidationError as exc:
            errors = {
                (api_settings.NON_FIELD_ERRORS_KEY if key == NON_FIELD_ERRORS else key): messages
                for key, messages in exc.message_dict.items()
            }
        # full_clean skips empty values of blank=True fields, so a `null` (e.g. "null" in a
        # form-encoded JSON field) would reach a NOT NULL column; say it as Django would.
        for name, value in attrs.items():
            field = model._meta.get_field(name) if name not in many_to_many else None
            if value is None and field is not None and not field.null and name not in errors:
                errors[name] = [field.error_messages["null"]]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs
