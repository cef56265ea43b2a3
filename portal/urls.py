"""URL map: admin, browser UI, health, Terraform state endpoint."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import views
from portal.state.views import state_endpoint

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("state/<int:environment_id>/", state_endpoint, name="state"),
    path("api/", include("portal.api.urls")),
    path("", include("portal.web.urls")),
]
