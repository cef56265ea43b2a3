"""When the database or the broker goes away: how the portal says so, and how it starts over.

- `Outage` logs an outage once when it starts and once when it ends (not on every retry),
  with how long it lasted - for the worker's writes and watchdog (database) and the queue's
  messages to workers (broker).
- `reset_connection()` drops this thread's database connection after a database error, so the
  next query opens a fresh one instead of failing on the dead socket.

Must not import other services.
"""

from __future__ import annotations

import logging
import time

from django.db import Error as DatabaseFault
from django.db import connection

log = logging.getLogger("portal.outages")


class Outage:
    """One dependency's outage as seen by one caller. `subject` names both ("run 12: the
    database"), `meanwhile` says what happens while it lasts."""

    def __init__(self, subject: str, meanwhile: str, *, level: int = logging.WARNING):
        self.subject, self.meanwhile, self.level = subject, meanwhile, level
        self.since: float | None = None

    def failed(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.log(self.level, "%s is unavailable (%s: %s); %s", self.subject, type(exc).__name__,
                    str(exc).strip()[:200], self.meanwhile)

    def succeeded(self) -> bool:
        """True when this success ends an outage."""
        if self.since is None:
            return False
        log.warning("%s is back after %.1fs", self.subject, time.monotonic() - self.since)
        self.since = None
        return True


def reset_connection() -> None:
    """Drop this thread's database connection so the next query opens a fresh one."""
    try:
        connection.close()
    except DatabaseFault:
        pass
