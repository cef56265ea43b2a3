"""Terraform state hosted by the portal: the rules behind Terraform's `http` backend.

GET returns the newest StateVersion; POST (with `?ID=<lock id>`) stores a new one only while
that lock is held and the body matches its Content-MD5; LOCK/UNLOCK take and free the single
StateLock of an environment, and a conflict answers with the *current holder's* lock JSON.
Credentials are per run: `run-<id>` + a random token whose hash is on the Run, valid only for
that run's environment while the run is active.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from portal.models import Run, RunStatus, StateLock, StateLockRelease, StateVersion

MAX_STATE_BYTES = 64 * 1024 * 1024


@dataclass
class StateReply:
    """What the view sends back: status code and body (bytes or a JSON-able value)."""

    status: int
    body: bytes | dict | None = None


def authenticate(environment_id: int, authorization: str | None) -> Run | None:
    """The active run these Basic credentials belong to, or None."""
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        username, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not username.startswith("run-") or not username[4:].isdigit() or not password:
        return None
    run = Run.objects.filter(
        pk=int(username[4:]), environment_id=environment_id, status=RunStatus.RUNNING
    ).exclude(state_token_hash="").first()
    if run is None:
        return None
    supplied = hashlib.sha256(password.encode()).hexdigest()
    return run if hmac.compare_digest(supplied, run.state_token_hash) else None


def read_state(environment_id: int) -> StateReply:
    latest = StateVersion.objects.filter(environment_id=environment_id).order_by("-id").first()
    if latest is None:
        return StateReply(204)
    return StateReply(200, bytes(latest.content))


def latest_state(environment_id: int) -> dict | None:
    """The newest state document of an environment, parsed (None when there is none)."""
    latest = StateVersion.objects.filter(environment_id=environment_id).order_by("-id").first()
    return json.loads(bytes(latest.content)) if latest else None


def write_state(environment_id: int, run: Run, body: bytes, lock_id: str | None, content_md5: str | None) -> StateReply:
    """Store a new StateVersion if the caller holds the lock and the body is intact."""
    if len(body) > MAX_STATE_BYTES:
        return StateReply(413, {"error": "state too large"})
    if content_md5:
        try:
            expected = base64.b64decode(content_md5)
        except binascii.Error:
            return StateReply(400, {"error": "Content-MD5 is not base64"})
        if hashlib.md5(body).digest() != expected:
            return StateReply(400, {"error": "body does not match Content-MD5"})
    try:
        document = json.loads(body)
        serial = int(document["serial"])
        lineage = str(document["lineage"])
    except (ValueError, KeyError, TypeError):
        return StateReply(400, {"error": "body is not a Terraform state document"})
    with transaction.atomic():
        lock = StateLock.objects.select_for_update().filter(environment_id=environment_id).first()
        if lock is None or lock.lock_id != (lock_id or ""):
            holder = lock.info if lock else None
            return StateReply(423 if lock else 409, holder or {"error": "the state must be locked by the writer (?ID=<lock id>)"})
        resources = sum(len(r.get("instances", [])) for r in document.get("resources", []) if r.get("mode") == "managed")
        StateVersion.objects.create(
            environment_id=environment_id,
            run=run,
            serial=serial,
            lineage=lineage,
            md5=hashlib.md5(body).hexdigest(),
            size=len(body),
            resource_count=resources,
            content=body,
        )
    return StateReply(200)


def lock_state(environment_id: int, run: Run, body: bytes) -> StateReply:
    """Take the lock; 423 with the holder's lock JSON when someone else has it."""
    try:
        info = json.loads(body)
        lock_id = str(info["ID"])
    except (ValueError, KeyError, TypeError):
        return StateReply(400, {"error": "LOCK needs Terraform's lock-info JSON with an ID"})
    try:
        with transaction.atomic():
            existing = StateLock.objects.select_for_update().filter(environment_id=environment_id).first()
            if existing is not None:
                if existing.lock_id == lock_id:
                    return StateReply(200)
                return StateReply(423, existing.info)
            StateLock.objects.create(environment_id=environment_id, lock_id=lock_id, info=info, run=run)
    except IntegrityError:  # two LOCKs raced; the other one won
        existing = StateLock.objects.filter(environment_id=environment_id).first()
        return StateReply(423, existing.info if existing else {"error": "locked"})
    return StateReply(200)


def unlock_state(environment_id: int, body: bytes) -> StateReply:
    """Free the lock if the caller names the holder's ID."""
    try:
        lock_id = str(json.loads(body)["ID"]) if body else ""
    except (ValueError, KeyError, TypeError):
        return StateReply(400, {"error": "UNLOCK needs the lock-info JSON with an ID"})
    with transaction.atomic():
        existing = StateLock.objects.select_for_update().filter(environment_id=environment_id).first()
        if existing is None:
            return StateReply(200)
        if existing.lock_id != lock_id:
            return StateReply(423, existing.info)
        existing.delete()
    return StateReply(200)


def force_unlock(environment_id: int, *, user, reason: str) -> bool:
    """An admin frees a stuck lock; recorded with who and why. False if there was none."""
    if not reason.strip():
        raise ValueError("Say why the lock is being released.")
    with transaction.atomic():
        existing = StateLock.objects.select_for_update().filter(environment_id=environment_id).first()
        if existing is None:
            return False
        StateLockRelease.objects.create(
            environment_id=environment_id, lock_id=existing.lock_id, info=existing.info, released_by=user, reason=reason
        )
        existing.delete()
    return True
