"""API routes: /api/v1/... (the resources), /api/schema/ (OpenAPI 3), /api/docs/ (Swagger UI
with locally served assets). Anything else under /api/ is a JSON 404 in the error shape."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from portal.api import views
from portal.api.errors import not_found
from portal.api.notifications import NotificationViewSet


class Router(DefaultRouter):
    """DefaultRouter (with the browsable root at /api/v1/) without `.json` suffix routes:
    the format is negotiated with `Accept`, and the schema stays one path per resource."""

    include_format_suffixes = False


router = Router()
router.register("departments", views.DepartmentViewSet, basename="department")
router.register("accounts", views.SandboxAccountViewSet, basename="account")
router.register("products", views.ProductViewSet, basename="product")
router.register("patterns", views.PatternViewSet, basename="pattern")
router.register("environments", views.EnvironmentViewSet, basename="environment")
router.register("runs", views.RunViewSet, basename="run")
router.register("changes", views.ChangePlanViewSet, basename="change")
router.register("drift-checks", views.DriftCheckViewSet, basename="drift-check")
router.register("endpoints", views.EndpointViewSet, basename="endpoint")
router.register("tokens", views.TokenViewSet, basename="token")
router.register("notifications", NotificationViewSet, basename="notification")  # staff only

app_name = "api"
urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script for the CSP.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^", not_found),
]
