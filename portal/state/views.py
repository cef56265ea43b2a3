"""HTTP face of the state backend. Only protocol plumbing: the rules are in services.state."""

import json

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from portal.services import state


def _reply(result: state.StateReply) -> HttpResponse:
    if isinstance(result.body, dict):
        return HttpResponse(json.dumps(result.body), status=result.status, content_type="application/json")
    return HttpResponse(result.body or b"", status=result.status, content_type="application/json")


@csrf_exempt
def state_endpoint(request, environment_id: int):
    """GET / POST / LOCK / UNLOCK as Terraform's http backend speaks them."""
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
                environment_id, run, request.body, request.GET.get("ID"), request.headers.get("Content-MD5")
            )
        )
    if method == "LOCK":
        return _reply(state.lock_state(environment_id, run, request.body))
    if method == "UNLOCK":
        return _reply(state.unlock_state(environment_id, request.body))
    return HttpResponse(status=405)
