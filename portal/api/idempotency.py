"""`@idempotent`: honour the `Idempotency-Key` header on a view handler.

The rules (claim, replay, 422, wait/409) live in `portal.services.idempotency`; this module
only wires them around a DRF handler:

- no header -> the handler runs as usual;
- the key is new -> the handler runs inside one transaction together with `complete()`, so
  the environment (or cancel) and the stored answer commit together; a non-2xx answer or an
  exception releases the key (nothing was written);
- the key is known -> the stored answer is returned with `Idempotent-Replayed: true`.
"""

import functools

from django.db import transaction
from rest_framework.response import Response

from portal.api.schema import IDEMPOTENCY_HEADER
from portal.services import idempotency

REPLAYED_HEADER = "Idempotent-Replayed"


def _body(request):
    data = request.data
    if hasattr(data, "lists"):  # QueryDict (form data): keep repeated keys
        return {key: values for key, values in data.lists()}
    return data


def idempotent(handler):
    """Decorate a DRF handler (`create`, an `@action`, `destroy`) to honour Idempotency-Key."""

    @functools.wraps(handler)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return handler(self, request, *args, **kwargs)
        outcome = idempotency.claim(
            user=request.user,
            key=key,
            method=request.method,
            path=request.path,
            request_hash=idempotency.request_fingerprint(request.method, request.path, _body(request)),
        )
        if isinstance(outcome, idempotency.Replay):
            return Response(outcome.body, status=outcome.status, headers={REPLAYED_HEADER: "true"})
        try:
            with transaction.atomic():
                response = handler(self, request, *args, **kwargs)
                if 200 <= response.status_code < 300:
                    idempotency.complete(outcome.record_id, status=response.status_code, body=response.data)
                    return response
        except BaseException:
            idempotency.release(outcome.record_id)
            raise
        idempotency.release(outcome.record_id)
        return response

    wrapper.idempotent = True
    return wrapper
