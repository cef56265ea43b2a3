"""The Celery application. Configuration comes from Django settings (`CELERY_*`)."""

import os

from celery import Celery
from celery.signals import beat_init

from portal import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
broker.register()  # atomicfs:// (the embedded default broker)

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["portal"])


@beat_init.connect
def start_reaper_in_beat(sender=None, **kwargs):
    """Beat reaps in its own process: reaping must not need a free worker process (issue 12).
    Connected here, not in portal.signals: beat does not load the Django apps by itself."""
    import django

    django.setup()
    from django.conf import settings

    from portal.services.reaper import ReaperThread

    ReaperThread(settings.REAP_INTERVAL_SECONDS).start()
