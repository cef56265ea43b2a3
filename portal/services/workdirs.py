"""Run folders on a worker: made per run, removed only when no state in them is unstored.

A run folder holds the rendered workspace, `.terraform/`, the plan file - and, when Terraform
could not write its final state to the portal, `errored.tfstate`, the only copy of what it
built. Such a folder is never deleted (DESIGN.md, durability rules): the run tries to store
it; if it cannot (the database stayed away), the folder is kept and `sweep` - at worker start,
after every run, and `manage.py sweep_run_folders` - stores it later and then removes the
folder. Folders of runs that died with their worker are swept the same way.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import socket
from pathlib import Path

from django.conf import settings
from django.db import Error as DatabaseFault

from portal.models import Run, RunEvent
from provisioning.pipeline import ERRORED_STATE

log = logging.getLogger(__name__)

FOLDER_RE = re.compile(r"^run-(\d+)-[0-9a-f]+$")


def root() -> Path:
    return Path(settings.RUN_WORKDIR_ROOT)


def new_folder(run_id: int) -> Path:
    return root() / f"run-{run_id}-{secrets.token_hex(4)}"


def drift_folder(check_id: int) -> Path:
    """A drift check's folder: a private state copy, removed when the check ends (the run
    sweeper leaves it alone - its name is not a run's)."""
    return root() / f"drift-{check_id}-{secrets.token_hex(4)}"


def spill_file(folder: Path, run_id: int) -> Path:
    """Where a run's events wait while the database is away and memory is full."""
    return folder / f".events-run-{run_id}.jsonl"


def unstored_state(folder: Path) -> Path | None:
    """The state file Terraform left that the portal has not stored yet, if any."""
    path = folder / ERRORED_STATE
    return path if path.exists() else None


def remove_if_safe(folder: Path) -> bool:
    """Remove a finished run's folder unless it holds state that is not stored."""
    if not folder.exists():
        return True
    if (kept := unstored_state(folder)) is not None:
        log.error("run folder %s kept: %s holds a state the portal has not stored", folder, kept.name)
        return False
    spills = list(folder.glob(".events-run-*.jsonl"))
    if spills:
        log.error("run folder %s kept: events not yet written (%s)", folder, ", ".join(p.name for p in spills))
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def sweep() -> dict[str, str]:
    """Store what dead or finished runs left, then remove their folders. Returns folder ->
    what was done. A folder of a run still running on a live process here is left alone."""
    from portal.services import state as state_service
    from portal.services.events import append_events

    done: dict[str, str] = {}
    if not root().is_dir():
        return done
    host = socket.gethostname()
    for folder in sorted(root().iterdir()):
        match = FOLDER_RE.match(folder.name)
        if not match or not folder.is_dir():
            continue
        run = Run.objects.filter(pk=int(match.group(1))).first()
        if run is not None and run.is_unfinished:
            continue  # running (or its worker died and the reaper has not ended it yet): later
        errored = unstored_state(folder)
        if errored is not None:
            if run is None:
                done[folder.name] = "kept: its run no longer exists"
                continue
            try:
                version = state_service.recover_state(
                    run.environment_id, run.pk, errored.read_bytes(), source=f"{host}:{errored}"
                )
            except state_service.RecoveryRefused as exc:
                done[folder.name] = f"kept: {exc}"
                continue
            errored.rename(errored.with_name(f"{ERRORED_STATE}.recovered-run-{run.pk}"))
            if version is not None:
                append_events(run.pk, [{
                    "kind": RunEvent.Kind.SYSTEM, "level": "warning",
                    "message": f"The sweeper stored the state this run left in {folder} "
                               f"(serial {version.serial}, {version.resource_count} resource(s)).",
                }])
                from portal.services.runs import refresh_environment_reason

                refresh_environment_reason(run.environment_id)
        for spill in folder.glob(".events-run-*.jsonl"):
            _write_leftover_events(spill)
        shutil.rmtree(folder, ignore_errors=True)
        done[folder.name] = "removed"
    return done


def sweep_quietly() -> None:
    """`sweep`, never failing the caller (a worker finishing a run, a worker starting)."""
    try:
        done = sweep()
    except DatabaseFault as exc:
        log.warning("sweeping run folders skipped: database unavailable (%s)", exc)
        return
    except Exception:
        log.exception("sweeping run folders failed")
        return
    kept = {name: what for name, what in done.items() if what != "removed"}
    if kept:
        log.error("run folders kept: %s", kept)


def _write_leftover_events(spill: Path) -> None:
    """Events a run could not write before it ended: appended after its end, marked so."""
    from portal.services.events import append_events

    run_id = int(spill.name.removeprefix(".events-run-").removesuffix(".jsonl"))
    items = [json.loads(line) for line in spill.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [item for item in items if "stage" not in item]
    if items and Run.objects.filter(pk=run_id).exists():
        note = {"kind": RunEvent.Kind.SYSTEM, "level": "warning",
                "message": f"{len(items)} event(s) this run could not write before it ended follow."}
        append_events(run_id, [note, *items])
    spill.unlink()
