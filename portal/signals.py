"""Worker start-up hook: a restarted worker reaps the runs its dead predecessor left."""

import logging
import socket

from celery.signals import worker_init, worker_ready

log = logging.getLogger(__name__)


@worker_ready.connect
def reap_on_worker_start(sender=None, **kwargs):
    from portal.services.reaper import reap_dead_local_workers, reap_expired

    try:
        reap_dead_local_workers(socket.gethostname())
        reap_expired()
    except Exception:  # never keep a worker from starting; beat retries in seconds
        log.exception("reaping at worker start failed")


@worker_init.connect
def warm_imports(sender=None, **kwargs):
    """Import the engine in the parent before the pool forks, so a child's first run does
    not spend a few hundred milliseconds importing (and the HCL parser's grammar loading)."""
    import portal.services.execution  # noqa: F401
    import provisioning.render  # noqa: F401
