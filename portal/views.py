"""Project-level views: the health probe. The browser UI lives in `portal.web.views`."""

from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """Liveness + database reachability, for load balancers and the smoke script."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
