"""URL map: admin, sign-in (password and OpenID Connect), browser UI, health, Terraform state endpoint."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView

from portal import views
from portal.auth import OIDCCallbackView, OIDCStartView, PortalLoginView
from portal.state.views import state_endpoint

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", PortalLoginView.as_view(), name="login"),
    # OpenID Connect (404 unless configured); the names are the ones mozilla-django-oidc reverses.
    path("oidc/authenticate/", OIDCStartView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", OIDCCallbackView.as_view(), name="oidc_authentication_callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says.
    path("favicon.ico", RedirectView.as_view(url=lazy(static, str)("portal/favicon.svg"), permanent=False)),
    path("state/<int:environment_id>/", state_endpoint, name="state"),
    path("api/", include("portal.api.urls")),
    path("", include("portal.web.urls")),
]
