"""One JSON error shape for the whole API: {"error": {"code", "message", "fields"}}."""

from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    fields = {}
    message = ""
    if isinstance(data, dict):
        message = str(data.get("detail", "")) if "detail" in data else "Invalid input."
        fields = {k: v for k, v in data.items() if k != "detail"}
    elif isinstance(data, list):
        message = " ".join(str(item) for item in data)
    code = getattr(exc, "default_code", "error")
    response.data = {"error": {"code": code, "message": message, "fields": fields}}
    return response
