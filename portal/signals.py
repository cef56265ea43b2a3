"""Worker start-up hook: a restarted worker reaps the runs its dead predecessor left."""

import logging
import socket

from celery.signals import worker_ready

log = logging.getLogger(__name__)


@worker_ready.connect
def reap_on_worker_start(sender=None, **kwargs):
    from portal.services.reaper import reap_dead_local_workers, reap_expired

    try:
        reap_dead_local_workers(socket.gethostname())
        reap_expired()
    except Exception:  # never keep a worker from starting; beat retries in seconds
        log.exception("reaping at worker start failed")
