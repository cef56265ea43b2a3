"""OpenAPI documentation pieces: the error shape on every operation, the token scheme and the
`Idempotency-Key` header, so that `/api/schema/` describes what the API really answers
(schemathesis checks every response against it, see tests/api/test_schema_conformance.py).
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

IDEMPOTENCY_HEADER = "Idempotency-Key"

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


def is_idempotent(view, method: str) -> bool:
    """Whether the view's handler for `method` honours Idempotency-Key (see api.idempotency)."""
    action = getattr(view, "action", None)
    handler = getattr(view, action, None) if action else getattr(view, method.lower(), None)
    return bool(getattr(handler, "idempotent", False))


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error responses each operation can produce and
    the Idempotency-Key header on the operations that honour it."""

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
