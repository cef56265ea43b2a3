"""Worker start-up hook: a restarted worker reaps the runs its dead predecessor left and sweeps
their run folders."""

import logging
import socket

from celery.signals import worker_init, worker_ready

log = logging.getLogger(__name__)


@worker_ready.connect
def reap_on_worker_start(sender=None, **kwargs):
    from portal.services.reaper import reap_dead_local_workers, reap_expired

    from portal.services.workdirs import sweep_quietly

    try:
        reap_dead_local_workers(socket.gethostname())
        reap_expired()
    except Exception:  # never keep a worker from starting; beat retries in seconds
        log.exception("reaping at worker start failed")
    # Folders the dead predecessor left: store any state in them, then remove them.
    sweep_quietly()


@worker_init.connect
def warm_imports(sender=None, **kwargs):
    """Import the engine and load the pattern catalog in the parent before the pool forks, so
    a child's first run does not pay for them."""
    import portal.services.execution  # noqa: F401
    from portal.services.catalog import get_catalog

    # Loading the catalog checks every pattern (renders and parses it): ~1 s that each pool
    # child would otherwise pay on its first run (measured by bench/provisioning.py).
    get_catalog()
    # The AWS checks' botocore models (~0.3 s of JSON and model building per fresh session).
    from provisioning.aws.session import warm_up

    warm_up()
