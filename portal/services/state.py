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
import json
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from portal.models import Run, RunStatus, StateLock, StateLockRelease, StateVersion
from portal.services import credentials


def max_state_bytes() -> int:
    """The largest state document the portal stores (STATE_MAX_BYTES, 64 MiB by default)."""
    return settings.STATE_MAX_BYTES


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
    digits = username[4:]
    # isascii: "run-²" passes isdigit() but not int().
    if not username.startswith("run-") or not (digits.isascii() and digits.isdigit()) or not password:
        return None
    # Only the columns the check needs: a running run's row also holds its commands and plan
    # (JSON, decoded on every load), which made authentication half of each request (issue 14).
    run = (
        Run.objects.filter(pk=int(digits), environment_id=environment_id, status=RunStatus.RUNNING)
        .exclude(state_token_hash="")
        .only("pk", "environment_id", "state_token_hash")
        .first()
    )
    if run is None:
        return None
    return run if credentials.matches(password, run.state_token_hash) else None


def read_state(environment_id: int) -> StateReply:
    content = (
        StateVersion.objects.filter(environment_id=environment_id).order_by("-id").values_list("content", flat=True).first()
    )
    if content is None:
        return StateReply(204)
    return StateReply(200, content)  # bytes (SQLite) or a memoryview (PostgreSQL): sent as is, not copied


def latest_serial(environment_id: int) -> int | None:
    """The serial of the newest stored state (None when there is none)."""
    return (
        StateVersion.objects.filter(environment_id=environment_id).order_by("-id").values_list("serial", flat=True).first()
    )


def latest_state(environment_id: int) -> dict | None:
    """The newest state document of an environment, parsed (None when there is none)."""
    latest = StateVersion.objects.filter(environment_id=environment_id).order_by("-id").first()
    return json.loads(bytes(latest.content)) if latest else None


def stored_resource_count(environment_id: int) -> int:
    """Managed resource instances in the newest stored state (0 when there is none): what
    every message about "what exists" is derived from."""
    latest = (
        StateVersion.objects.filter(environment_id=environment_id).order_by("-id").values_list("resource_count", flat=True).first()
    )
    return latest or 0


# Finds the sentence `what_the_stored_state_says` writes, to bring an old reason up to date
# (resource addresses hold dots, so the list in brackets is matched whole).
STORED_STATE_SENTENCE_RE = re.compile(r"The stored state lists \d+ resource\(s\)[^.(]*(?:\([^)]*\))?\.")
ADDRESSES_NAMED = 10  # at most this many addresses in a status sentence


def stored_resource_addresses(environment_id: int) -> list[str]:
    """The managed resource instances of the newest stored state, as Terraform addresses."""
    document = latest_state(environment_id) or {}
    addresses = []
    for resource in document.get("resources", []):
        if not isinstance(resource, dict) or resource.get("mode") != "managed":
            continue
        base = ".".join(part for part in (resource.get("module"), f"{resource.get('type')}.{resource.get('name')}") if part)
        for instance in resource.get("instances", []):
            key = instance.get("index_key") if isinstance(instance, dict) else None
            addresses.append(base + (f"[{json.dumps(key)}]" if key is not None else ""))
    return addresses


def what_the_stored_state_says(environment_id: int) -> str:
    """One sentence about what exists, from the stored state only; with exactly what is left
    (its first ADDRESSES_NAMED addresses) when something is."""
    count = stored_resource_count(environment_id)
    if count == 0:
        return "The stored state lists 0 resource(s): nothing it tracked exists any more."
    addresses = [a.replace("(", "[").replace(")", "]") for a in stored_resource_addresses(environment_id)]
    if not addresses:
        return f"The stored state lists {count} resource(s); they still exist."
    more = f", and {len(addresses) - ADDRESSES_NAMED} more" if len(addresses) > ADDRESSES_NAMED else ""
    return f"The stored state lists {count} resource(s); they still exist ({', '.join(addresses[:ADDRESSES_NAMED])}{more})."


class StateDocumentError(ValueError):
    """A body that is not a Terraform state document the portal can store."""


@dataclass(frozen=True)
class StateDocument:
    """The fields of a state document the portal keeps beside its bytes."""

    serial: int
    lineage: str
    resource_count: int


def parse_state_document(body: bytes) -> StateDocument:
    """Serial, lineage and managed resource count, checked: never a 500 for strange input."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise StateDocumentError("body is not JSON") from None
    if not isinstance(document, dict):
        raise StateDocumentError("body is not a Terraform state document (a JSON object)")
    serial = document.get("serial")
    # bool is an int to Python; 1e999 is a float; 10**30 does not fit the column.
    if not isinstance(serial, int) or isinstance(serial, bool) or not 0 <= serial < 2**63:
        raise StateDocumentError("serial must be a whole number from 0 to 2^63-1")
    lineage = document.get("lineage")
    if not isinstance(lineage, str) or not 0 < len(lineage) <= 64:
        raise StateDocumentError("lineage must be a string of 1 to 64 characters")
    resources = document.get("resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        raise StateDocumentError("resources must be a list of objects")
    count = 0
    for resource in resources:
        instances = resource.get("instances", [])
        if not isinstance(instances, list):
            raise StateDocumentError("resources[].instances must be a list")
        if resource.get("mode") == "managed":
            count += len(instances)
    return StateDocument(serial, lineage, count)


def write_state(environment_id: int, run: Run, body: bytes, lock_id: str | None, content_md5: str | None) -> StateReply:
    """Store a new StateVersion if the caller holds the lock and the body is intact."""
    if len(body) > max_state_bytes():
        return StateReply(413, {"error": f"state too large: the limit is {max_state_bytes()} bytes"})
    if content_md5:
        try:
            expected = base64.b64decode(content_md5, validate=True)
        except (binascii.Error, ValueError):
            return StateReply(400, {"error": "Content-MD5 is not base64"})
    md5 = hashlib.md5(body)
    if content_md5 and md5.digest() != expected:
        return StateReply(400, {"error": "body does not match Content-MD5"})
    try:
        document = parse_state_document(body)
    except StateDocumentError as exc:
        return StateReply(400, {"error": str(exc)})
    with transaction.atomic():
        # The lock row is held (FOR UPDATE) until the version is stored: a force-unlock
        # cannot slip in between the check and the write.
        held = (
            StateLock.objects.select_for_update().filter(environment_id=environment_id).values_list("lock_id", flat=True).first()
        )
        if held is None or held != (lock_id or ""):
            holder = StateLock.objects.filter(environment_id=environment_id).values_list("info", flat=True).first()
            return StateReply(423 if held else 409, holder or {"error": "the state must be locked by the writer (?ID=<lock id>)"})
        _store(environment_id, run.pk, body, document, md5=md5.hexdigest())
    return StateReply(200)


def _store(environment_id: int, run_id: int | None, body: bytes, document: StateDocument, recovered_from: str = "",
           *, md5: str | None = None) -> StateVersion:
    return StateVersion.objects.create(
        environment_id=environment_id,
        run_id=run_id,
        serial=document.serial,
        lineage=document.lineage,
        md5=md5 or hashlib.md5(body).hexdigest(),
        size=len(body),
        resource_count=document.resource_count,
        content=body,
        recovered_from=recovered_from,
    )


class RecoveryRefused(Exception):
    """A state found on a worker's disk that the portal must not store (the reason says why)."""


def recover_state(environment_id: int, run_id: int, body: bytes, *, source: str) -> StateVersion | None:
    """Store a state Terraform could not write through the backend (its `errored.tfstate`).

    The worker calls this directly (the web server may be what is down). Accepted when it
    continues the stored history: same lineage (or nothing stored yet) and a serial not below
    the newest; and nobody but this run holds the lock. Returns None when the same document
    is already stored (idempotent); raises RecoveryRefused otherwise.
    """
    if len(body) > max_state_bytes():
        raise RecoveryRefused(f"it is {len(body)} bytes, over the state limit of {max_state_bytes()} bytes")
    try:
        document = parse_state_document(body)
    except StateDocumentError as exc:
        raise RecoveryRefused(str(exc)) from None
    md5 = hashlib.md5(body).hexdigest()
    with transaction.atomic():
        lock = StateLock.objects.select_for_update().filter(environment_id=environment_id).first()
        if lock is not None and lock.run_id not in (None, run_id):
            raise RecoveryRefused(f"the state is locked by run #{lock.run_id}")
        latest = StateVersion.objects.filter(environment_id=environment_id).order_by("-id").first()
        if latest is not None:
            if latest.md5 == md5:
                return None
            if latest.lineage != document.lineage:
                raise RecoveryRefused(f"its lineage {document.lineage} is not the stored one ({latest.lineage})")
            if document.serial < latest.serial:
                raise RecoveryRefused(f"its serial {document.serial} is older than the stored {latest.serial}")
        return _store(environment_id, run_id, body, document, recovered_from=source[:300], md5=md5)


def lock_state(environment_id: int, run: Run, body: bytes) -> StateReply:
    """Take the lock; 423 with the holder's lock JSON when someone else has it."""
    try:
        info = json.loads(body)
        lock_id = str(info["ID"])
    except (ValueError, KeyError, TypeError):
        return StateReply(400, {"error": "LOCK needs Terraform's lock-info JSON with an ID"})
    # One indexed write: the unique environment column decides (no read first, no lock held).
    try:
        with transaction.atomic():  # a savepoint when called inside a transaction
            StateLock.objects.create(environment_id=environment_id, lock_id=lock_id, info=info, run_id=run.pk)
    except IntegrityError:  # somebody holds it: the same lock again (a retried LOCK) is fine
        existing = StateLock.objects.filter(environment_id=environment_id).values_list("lock_id", "info").first()
        if existing is None:  # released meanwhile: Terraform retries the LOCK
            return StateReply(423, {"error": "locked"})
        return StateReply(200) if existing[0] == lock_id else StateReply(423, existing[1])
    return StateReply(200)


def unlock_state(environment_id: int, body: bytes) -> StateReply:
    """Free the lock if the caller names the holder's ID."""
    try:
        lock_id = str(json.loads(body)["ID"]) if body else ""
    except (ValueError, KeyError, TypeError):
        return StateReply(400, {"error": "UNLOCK needs the lock-info JSON with an ID"})
    # One indexed write: delete the lock if it is the caller's.
    deleted, _ = StateLock.objects.filter(environment_id=environment_id, lock_id=lock_id).delete()
    if deleted:
        return StateReply(200)
    existing = StateLock.objects.filter(environment_id=environment_id).values_list("info", flat=True).first()
    return StateReply(200) if existing is None else StateReply(423, existing)


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
