"""HTTP face of the state backend. Only protocol plumbing: the rules are in services.state.

Two things a generic Django view would get wrong for Terraform:
- the body is read here, once, up to the portal's own state limit (STATE_MAX_BYTES), not
  through `request.body`, which DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) refuses first - a big
  state was answered 400 and lost (issue 11); over the limit is 413 before a byte is read;
- a database error answers 503 with Retry-After at once: Terraform's http backend retries
  5xx (TF_HTTP_RETRY_*), so an outage becomes a wait, not a failed write.
"""

import json
import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from portal.services import state
from portal.services.outages import reset_connection

log = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024


class BodyTooLarge(Exception):
    pass


def _read_body(request) -> bytes:
    """The request body, read once into one buffer, refused past the state limit."""
    limit = state.max_state_bytes()
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise BodyTooLarge()
    buffer = bytearray()
    while chunk := request.read(READ_CHUNK):
        buffer += chunk
        if len(buffer) > limit:
            raise BodyTooLarge()
    return bytes(buffer)


def _too_large() -> HttpResponse:
    body = {"error": f"state too large: the limit is {state.max_state_bytes()} bytes"}
    return HttpResponse(json.dumps(body), status=413, content_type="application/json")


def _reply(result: state.StateReply) -> HttpResponse:
    if isinstance(result.body, dict):
        return HttpResponse(json.dumps(result.body), status=result.status, content_type="application/json")
    return HttpResponse(result.body or b"", status=result.status, content_type="application/json")


@csrf_exempt
def state_endpoint(request, environment_id: int):
    """GET / POST / LOCK / UNLOCK as Terraform's http backend speaks them."""
    try:
        return _state_endpoint(request, environment_id)
    except DatabaseError as exc:
        log.warning("state endpoint of environment %s: database unavailable (%s)", environment_id, exc)
        reset_connection()  # the next request starts with a fresh connection
        response = HttpResponse("the database is unavailable; retry", status=503, content_type="text/plain")
        # Terraform's retry client honours Retry-After on 503 instead of its own backoff: use
        # the backoff's cap, so TF_HTTP_RETRY_MAX retries still span the whole window.
        response["Retry-After"] = str(settings.STATE_BACKEND_RETRY_WAIT_MAX)
        return response


def _state_endpoint(request, environment_id: int):
    if request.method in ("POST", "LOCK", "UNLOCK"):
        # Read before anything else, so the connection stays in step whatever we answer.
        try:
            body = _read_body(request)
        except BodyTooLarge:
            return _too_large()
    else:
        body = b""
    run = state.authenticate(environment_id, request.headers.get("Authorization"))
    if run is None:
        response = HttpResponse("a valid run credential is required", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Basic realm="terraform-state"'
        return response
    method = request.method
    if method == "GET":
        return _reply(state.read_state(environment_id))
    if method == "POST":
        return _reply(
            state.write_state(
                environment_id, run, body, request.GET.get("ID"), request.headers.get("Content-MD5")
            )
        )
    if method == "LOCK":
        return _reply(state.lock_state(environment_id, run, body))
    if method == "UNLOCK":
        return _reply(state.unlock_state(environment_id, body))
    return HttpResponse(status=405)
