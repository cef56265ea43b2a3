"""One JSON error shape for the whole API, whatever went wrong:

    {"error": {"code": "invalid", "message": "name: This field is required.",
               "fields": {"name": ["This field is required."]}}}

- `code` is a stable machine word (table below); `message` is a sentence fit to show people;
  `fields` maps the offending input to its messages (always a list of strings) and is `{}`
  when the error concerns no particular input.
- Field paths are dotted: a nested serializer error `{"parameters": {"cpu": [...]}}` becomes
  `"parameters.cpu"`, a list item `"items.0"`. A service's `param:<name>` key (a pattern
  parameter, see `environments.request_create`) becomes `parameters.<name>`, the body path
  it came from. Errors about the request as a whole (DRF's `non_field_errors`, Django's
  `__all__`) go into `message`, not `fields`.

Status codes and their codes:

    400 invalid / parse_error        401 not_authenticated / authentication_failed
    403 permission_denied            404 not_found            405 method_not_allowed
    406 not_acceptable               409 conflict / protected / idempotency_key_in_progress
    415 unsupported_media_type       422 idempotency_key_reused
    429 throttled                    500 server_error

`portal.services` errors map by class: NotAllowed -> 403, Conflict -> 409 (KeyInProgress is
a Conflict), InvalidRequest -> 400, KeyReused -> 422.
"""

import logging

from django.core.exceptions import NON_FIELD_ERRORS
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.signals import got_request_exception
from django.db.models import ProtectedError, RestrictedError
from django.http import JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from portal.services.errors import Conflict, InvalidRequest, NotAllowed, ServiceError
from portal.services.idempotency import KeyInProgress, KeyReused

log = logging.getLogger(__name__)

# Most specific first: KeyInProgress is a Conflict.
SERVICE_ERRORS: list[tuple[type[ServiceError], int, str]] = [
    (KeyInProgress, status.HTTP_409_CONFLICT, "idempotency_key_in_progress"),
    (KeyReused, status.HTTP_422_UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
    (NotAllowed, status.HTTP_403_FORBIDDEN, "permission_denied"),
    (Conflict, status.HTTP_409_CONFLICT, "conflict"),
    (InvalidRequest, status.HTTP_400_BAD_REQUEST, "invalid"),
]
PARAMETER_PREFIX = "param:"
NON_FIELD_KEYS = {api_settings.NON_FIELD_ERRORS_KEY, NON_FIELD_ERRORS}
# DRF's own codes, renamed where the DRF word is unclear for clients.
DRF_CODES = {"error": "invalid", "invalid": "invalid"}


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    """The one error shape (see the module docstring)."""
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def api_field_name(service_field: str) -> str:
    """A service's field key as the API body path: `param:cpu` -> `parameters.cpu`."""
    if service_field.startswith(PARAMETER_PREFIX):
        return "parameters." + service_field[len(PARAMETER_PREFIX):]
    return service_field


def flatten(detail, prefix: str = "") -> tuple[dict[str, list[str]], list[str]]:
    """DRF error detail -> ({"dotted.path": [messages]}, [non-field messages])."""
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            key = str(key)
            if key in NON_FIELD_KEYS:
                sub_fields, sub_general = flatten(value, prefix)
                if prefix:
                    fields.setdefault(prefix, []).extend(sub_general)
                else:
                    general.extend(sub_general)
                _merge(fields, sub_fields)
                continue
            path = f"{prefix}.{key}" if prefix else key
            sub_fields, sub_general = flatten(value, path)
            _merge(fields, sub_fields)
            if sub_general:
                fields.setdefault(path, []).extend(sub_general)
    elif isinstance(detail, (list, tuple)):
        if all(not isinstance(item, (dict, list, tuple)) for item in detail):
            general.extend(str(item) for item in detail)
        else:
            for index, item in enumerate(detail):
                if not item:
                    continue  # DRF puts {} for list items without errors
                path = f"{prefix}.{index}" if prefix else str(index)
                sub_fields, sub_general = flatten(item, path)
                _merge(fields, sub_fields)
                if sub_general:
                    fields.setdefault(path, []).extend(sub_general)
    elif detail is not None:
        general.append(str(detail))
    return fields, general


def _merge(into: dict[str, list[str]], other: dict[str, list[str]]) -> None:
    for key, messages in other.items():
        into.setdefault(key, []).extend(messages)


def summary(fields: dict[str, list[str]], general: list[str], default: str) -> str:
    """A one-line message: the general errors, else the first field error (+ how many more)."""
    if general:
        return " ".join(general)
    if not fields:
        return default
    path, messages = next(iter(fields.items()))
    total = sum(len(m) for m in fields.values())
    more = f" (and {total - 1} more)" if total > 1 else ""
    return f"{path}: {messages[0] if messages else 'invalid'}{more}"


def service_error_response(exc: ServiceError) -> Response:
    """NotAllowed/Conflict/InvalidRequest/... -> the status and body they stand for."""
    for cls, http_status, code in SERVICE_ERRORS:
        if isinstance(exc, cls):
            break
    else:
        http_status, code = status.HTTP_400_BAD_REQUEST, "invalid"
    fields = {api_field_name(str(key)): [str(message)] for key, message in (exc.errors or {}).items()}
    headers = {"Retry-After": "1"} if isinstance(exc, KeyInProgress) else None
    return Response(error_body(code, exc.message, fields), status=http_status, headers=headers)


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every error, expected or not, in the one shape."""
    if isinstance(exc, ServiceError):
        return service_error_response(exc)
    if isinstance(exc, RequestDataTooBig):
        # Raised while DRF parses the body; not a bug but a too-large request (issue 12: 500).
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body("too_large", f"The request body is larger than the API accepts ({limit} bytes)."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {api_settings.NON_FIELD_ERRORS_KEY: exc.messages}
        )
    if isinstance(exc, (ProtectedError, RestrictedError)):
        return _protected(exc)

    response = drf_exception_handler(exc, context)
    if response is None:
        return _server_error(exc, context)

    if isinstance(exc, exceptions.ValidationError):
        fields, general = flatten(exc.detail)
        message = summary(fields, general, "The request is not valid.")
        code = "invalid"
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        fields, general = {}, [str(detail)] if detail else []
        message = summary({}, general, response.status_text if hasattr(response, "status_text") else "Error.")
        code = _code_of(exc)
    response.data = error_body(code, message, fields)
    return response


def _protected(exc) -> Response:
    """Deleting a row others still refer to (a department with products, ...): 409."""
    objects = exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
    blockers = sorted({f"{obj._meta.verbose_name} {obj}" for obj in objects})
    shown = ", ".join(blockers[:5]) + (f" and {len(blockers) - 5} more" if len(blockers) > 5 else "")
    return Response(
        error_body("protected", f"It cannot be deleted while other records refer to it: {shown}."),
        status=status.HTTP_409_CONFLICT,
    )


def _code_of(exc) -> str:
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else getattr(exc, "default_code", "error")
    else:
        code = "not_found" if exc.__class__.__name__ == "Http404" else "permission_denied"
    return DRF_CODES.get(code, code)


def _server_error(exc, context) -> Response:
    """An unexpected exception: logged with its traceback, answered in the one shape.

    `got_request_exception` is sent as Django would, so error reporters and the test client
    (which re-raises it) still see the exception.
    """
    request = context.get("request")
    log.error("Unhandled exception in %s", getattr(request, "path", "?"), exc_info=exc)
    django_request = getattr(request, "_request", None)
    got_request_exception.send(sender=None, request=django_request)
    return Response(
        error_body("server_error", "Something went wrong on our side; it has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


@csrf_exempt  # a 404 for every method; CSRF would turn a DELETE to a wrong path into an HTML 403
def not_found(request, *args, **kwargs):
    """The API's 404 for paths no route matches (Django's own 404 page is HTML)."""
    path = request.path_info
    message = f"There is no API endpoint at {path}."
    if not path.endswith("/"):
        try:
            match = resolve(path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            message += f" Did you mean {path}/ (with the trailing slash)?"
    return JsonResponse(error_body("not_found", message), status=status.HTTP_404_NOT_FOUND)
