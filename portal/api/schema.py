"""OpenAPI documentation pieces: the error shape on every operation, the token scheme and the
`Idempotency-Key` header, so that `/api/schema/` describes what the API really answers
(schemathesis checks every response against it, see tests/api/test_schema_conformance.py).
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from django.core.exceptions import FieldDoesNotExist
from django.core.validators import RegexValidator
from django.db import models
from rest_framework import serializers

IDEMPOTENCY_HEADER = "Idempotency-Key"
NO_NUL = "^[^\\u0000]*$"

ERROR_DESCRIPTIONS = {
    400: "The input is not valid (`code` = `invalid` or `parse_error`); `fields` says which.",
    401: "No credentials, or an invalid, revoked or expired token (`WWW-Authenticate: Token`).",
    403: "Signed in but not allowed (e.g. not a member of the product's department), or a "
         "session request without its CSRF token.",
    404: "No such object (or no such endpoint).",
    409: "The request collides with the current state (`conflict`), the object is still "
         "referred to (`protected`), or a request with the same Idempotency-Key is still "
         "running (`idempotency_key_in_progress`; retry after `Retry-After` seconds).",
    413: "The request body is larger than the API accepts (`too_large`).",
    415: "The request body is not JSON.",
    422: "The Idempotency-Key was already used for a different request (`idempotency_key_reused`).",
    429: "Too many requests (`throttled`); retry after `Retry-After` seconds.",
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A stable machine word, e.g. `invalid`, `not_found`, `conflict`.")
    message = serializers.CharField(help_text="A sentence fit to show people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Dotted input path -> messages, e.g. `parameters.cpu`. Empty when no input is to blame.",
    )


class ErrorSerializer(serializers.Serializer):
    """Every error response of the API has this shape."""

    error = ErrorDetailSerializer()


def idempotency_parameter() -> OpenApiParameter:
    return OpenApiParameter(
        IDEMPOTENCY_HEADER,
        str,
        OpenApiParameter.HEADER,
        required=False,
        pattern=r"^[!-~]{1,255}$",  # what services.idempotency.validate_key accepts
        description=(
            "Any unique string (a UUID) of 1-255 visible ASCII characters. Sending the same "
            "request again with the same key returns the first answer (same status and body, "
            "header `Idempotent-Replayed: true`) and does nothing twice. The same key with a "
            "different body is refused with 422; while the first request is still running a "
            "duplicate waits up to 10 s, then gets 409. Keys are kept 24 hours."
        ),
    )


def _get_model_field(model, name: str):
    try:
        return model._meta.get_field(name)
    except FieldDoesNotExist:
        return None


def is_idempotent(view, method: str) -> bool:
    """Whether the view's handler for `method` honours Idempotency-Key (see api.idempotency)."""
    action = getattr(view, "action", None)
    handler = getattr(view, action, None) if action else getattr(view, method.lower(), None)
    return bool(getattr(handler, "idempotent", False))


def _model_field_constraints(model_field) -> dict:
    """What a model's text field enforces (full_clean), in JSON Schema words."""
    constraints: dict = {}
    if not model_field.blank:
        constraints["minLength"] = 1
    if getattr(model_field, "max_length", None):
        constraints["maxLength"] = model_field.max_length
    for validator in model_field.validators:
        if isinstance(validator, RegexValidator) and not validator.inverse_match:
            pattern = validator.regex.pattern.replace(r"\Z", "$").replace(r"\A", "^")
            constraints["pattern"] = pattern  # the portal's own validators come last, and win
    return constraints


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error responses each operation can produce and
    the Idempotency-Key header on the operations that honour it.

    Fields of full_clean serializers (api.serializers.fields.FullCleanModelSerializer) carry no
    validators of their own - the model's `full_clean()` checks them, in the admin's words -
    so their constraints (required text, pattern, length) are read from the model field here,
    and slug references get the constraints of the slug they name: the schema states what the
    API enforces (issue 12: blank and badly formed slugs were "schema-valid")."""

    def _map_basic_serializer(self, serializer, direction):
        # Remember which way the component goes: constraints on input only apply to requests.
        previous, self._direction = getattr(self, "_direction", None), direction
        try:
            return super()._map_basic_serializer(serializer, direction)
        finally:
            self._direction = previous

    def _insert_field_validators(self, field, schema):
        super()._insert_field_validators(field, schema)
        if getattr(field, "schema_refuses_blank", False) and "oneOf" in schema:
            schema.update(next(alt for alt in schema.pop("oneOf") if alt.get("maxLength") != 0))
        self._apply_model_constraints(field, schema)
        target = schema["oneOf"][0] if "oneOf" in schema else schema
        if getattr(field, "schema_pattern", None):
            # A rule the service checks (with the request's other problems, all at once) that
            # the schema still states, so clients know it before they send.
            target["pattern"] = field.schema_pattern
        # Every text input refuses NUL (PostgreSQL cannot store it): said where no stricter
        # pattern says it already.
        if (getattr(self, "_direction", None) == "request" and isinstance(field, serializers.CharField)
                and not field.read_only and target.get("type") == "string"
                and "pattern" not in target and "enum" not in target):
            target["pattern"] = NO_NUL

    def _apply_model_constraints(self, field, schema):
        if isinstance(field, serializers.ManyRelatedField) and isinstance(schema.get("items"), dict):
            self._apply_model_constraints(field.child_relation, schema["items"])
            if getattr(self, "_direction", None) == "request":
                schema["items"].setdefault("pattern", NO_NUL)
            return
        if field.read_only or schema.get("type") not in (None, "string") or "allOf" in schema:
            return
        model_field = None
        if isinstance(field, serializers.SlugRelatedField) and field.queryset is not None:
            model_field = _get_model_field(field.queryset.model, field.slug_field)
        elif getattr(getattr(field, "parent", None), "full_clean_schema", False):
            model_field = _get_model_field(field.parent.Meta.model, field.source)
        if not isinstance(model_field, (models.CharField, models.TextField)):
            return
        constraints = _model_field_constraints(model_field)
        if "oneOf" in schema and constraints.get("minLength"):
            # spectacular allows "" beside the constraints of a blank-allowed field; the model
            # refuses blank, so only the constrained form remains.
            inner = next((alt for alt in schema.pop("oneOf") if alt.get("maxLength") != 0), {"type": "string"})
            schema.update(inner)
        target = schema["oneOf"][0] if "oneOf" in schema else schema
        for key, value in constraints.items():
            target.setdefault(key, value)

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if is_idempotent(self.view, self.method):
            parameters.append(idempotency_parameter())
        return parameters

    def error_statuses(self) -> set[int]:
        statuses = {400, 401}  # every operation validates something and needs credentials
        if self.method in WRITE_METHODS:
            statuses |= {403, 409}
        if self.method in {"POST", "PUT", "PATCH"}:
            statuses |= {413, 415}
        if "{" in self.path:
            statuses.add(404)
        if is_idempotent(self.view, self.method):
            statuses |= {409, 422}
        if getattr(self.view, "throttle_classes", None):
            statuses.add(429)
        return statuses

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in sorted(self.error_statuses()):
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]), str(code)
                )
        return responses


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """`Authorization: Token <key>` (keys are made at /api/v1/tokens/ or on the tokens page)."""

    target_class = "portal.api.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A personal API token: `Token sbx_...`.",
        }
