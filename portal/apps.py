"""App config: registers the system checks (a broken design pattern fails `manage.py check`)."""

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Sandbox CMDB"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from portal import checks, signals  # noqa: F401  (registers checks and worker hooks)
