"""Reaching the portal's Terraform state backend from a worker, before Terraform does.

A rollback or destroy must never start while the state backend is unreachable for it: its
`init` would fail to read the state, and a person would be told the resources "still exist"
or, worse, a destroy would run against a state it could not read (issue 11). So the pipeline
asks first, with the run's own credentials, and waits while the answer is "not now".

Must not import Django or anything from `portal/`.
"""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

# Answers that mean "the backend is there and this run may use it".
_REACHABLE = {200, 204}


def probe(env: Mapping[str, str], timeout: float = 5.0) -> str | None:
    """None when a GET of the state answers 200/204 with this run's credentials, else why not."""
    address = env.get("TF_HTTP_ADDRESS")
    if not address:
        return None  # no http backend configured: nothing to wait for
    request = urllib.request.Request(address, method="GET")
    credentials = f"{env.get('TF_HTTP_USERNAME', '')}:{env.get('TF_HTTP_PASSWORD', '')}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return None if response.status in _REACHABLE else f"it answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"it answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"it could not be reached ({reason})"


def wait_until_reachable(
    env: Mapping[str, str],
    *,
    max_wait: float,
    cancel: threading.Event,
    on_wait: Callable[[str], None] = lambda reason: None,
    interval: float = 2.0,
) -> str | None:
    """Probe until the backend answers, `max_wait` passes or `cancel` is set.

    Returns None when reachable, else the last reason. `on_wait` is told once when waiting starts.
    """
    deadline = time.monotonic() + max_wait
    reason = probe(env)
    told = False
    while reason is not None:
        if cancel.is_set():
            return f"{reason}; cancelled while waiting"
        if time.monotonic() >= deadline:
            return reason
        if not told:
            on_wait(reason)
            told = True
        cancel.wait(min(interval, max(deadline - time.monotonic(), 0.0)))
        reason = probe(env)
    return None
