"""Host-local exclusive locks: an `flock` on a file, held for a `with` block.

The one helper for the portal's file locks - the provider cache's `init` lock (one `terraform
init` at a time writes the shared plugin cache) and the GitHub mirror's per-request lock on
SQLite. flock is per open file and released by the kernel when the holder dies, so a killed
worker never leaves a lock behind.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_POLL_SECONDS = 0.05


@contextmanager
def exclusive_lock(
    path: Path, timeout: float, cancel: threading.Event | None = None
) -> Iterator[bool]:
    """Holds an exclusive `flock` on `path` for the `with` block; yields False (without the
    lock) if it could not be had within `timeout` or `cancel` was set while waiting.

    Polls with LOCK_NB rather than blocking so a cancel or a timeout is honoured while
    another worker's init holds the lock. flock is per open file, so it serialises threads
    of one process as well as processes on one host (the cache is host-local).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+") as handle:
        acquired = False
        while True:
            if cancel is not None and cancel.is_set():
                break
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                acquired = True
                break
            except BlockingIOError:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = min(_POLL_SECONDS, remaining)
            if cancel is not None:
                cancel.wait(wait)
            else:
                time.sleep(wait)
        try:
            yield acquired
        finally:
            if acquired:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
