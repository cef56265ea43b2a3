"""Browser UI routes."""

from django.urls import path

from portal.web import notifications, views

urlpatterns = [
    path("", views.environment_list, name="home"),
    path("environments/new/", views.environment_create, name="environment-create"),
    path("environments/<int:pk>/", views.environment_detail, name="environment-detail"),
    path("environments/<int:pk>/delete/", views.environment_delete, name="environment-delete"),
    path("environments/<int:pk>/retry/", views.environment_retry, name="environment-retry"),
    path("environments/<int:pk>/change/", views.environment_change, name="environment-change"),
    path("environments/<int:pk>/drift/", views.environment_drift, name="environment-drift"),
    path("environments/<int:pk>/drift/check/", views.environment_drift_check, name="environment-drift-check"),
    path("environments/<int:pk>/extend/", views.environment_extend, name="environment-extend"),
    path("environments/<int:pk>/keep/", views.environment_keep, name="environment-keep"),
    path("drift-checks/<int:pk>/fix/", views.drift_fix, name="drift-fix"),
    path("fleet/", views.fleet, name="fleet"),
    path("changes/<int:pk>/", views.change_detail, name="change-detail"),
    path("changes/<int:pk>/confirm/", views.change_confirm, name="change-confirm"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/live/", views.run_live, name="run-live"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("tokens/", views.token_list, name="token-list"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("notifications/", notifications.notification_list, name="notification-list"),
    path("notifications/<int:pk>/delete/", notifications.notification_target_delete, name="notification-target-delete"),
]
