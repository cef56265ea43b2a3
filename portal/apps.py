"""App config: registers the system checks (a broken design pattern fails `manage.py check`),
the worker hooks and the effects that committed run transitions set off."""

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Sandbox CMDB"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from portal import checks, signals  # noqa: F401  (registers checks and worker hooks)
        from portal.services import effects
        from portal.services.dispatch import dispatch_account
        from portal.services.github_mirror import schedule_mirror

        effects.register(queue_moved=dispatch_account, run_changed=schedule_mirror)
