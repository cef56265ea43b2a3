"""`Idempotency-Key` for POSTs: a retried or doubled request gets the first answer back.

How it works (the database's unique constraint on (user, key) is the only arbiter):

1. `claim()` INSERTs the record in its own, immediately committed transaction. Exactly one
   of any number of concurrent identical requests succeeds; it "owns" the key and executes.
   On PostgreSQL the losers' INSERTs block on the winner's uncommitted row and then fail,
   on SQLite the write lock serialises them; either way they see IntegrityError.
2. A loser reads the record. A different method, path or body -> `KeyReused` (HTTP 422).
   A completed record -> `Replay` of the stored status and body. An unfinished one -> poll
   (short sleeps, fresh reads) until it is completed or released, at most `wait` seconds,
   then `KeyInProgress` (HTTP 409, retry later).
3. The owner runs the request and, in the SAME transaction as the request's own writes,
   calls `complete()` (see `portal.api.idempotency`): the environment and the stored answer
   commit together, so a crash leaves either both or neither.
4. A request that did not succeed (any 4xx/5xx) wrote nothing (services refuse before they
   write), so `release()` deletes the record: a corrected retry with the same key proceeds,
   and waiting duplicates take over the key one at a time.

Records older than `TTL` are forgotten (the key may be reused); a record left unfinished
for `STALE_AFTER` (its process died between step 1 and 3) is taken over.

Must not import `portal.api`: the API calls this module, not the other way round.
"""

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.models import IdempotencyRecord
from portal.services.errors import Conflict, InvalidRequest, ServiceError

KEY_MAX_LENGTH = IdempotencyRecord._meta.get_field("key").max_length
PATH_MAX_LENGTH = IdempotencyRecord._meta.get_field("path").max_length
# How long a key protects against duplicates (Stripe keeps them 24 hours too).
TTL = timedelta(hours=24)
# An unfinished record this old belongs to a request whose process died: a create request
# takes well under a second, so two minutes is generous without blocking retries for long.
STALE_AFTER = timedelta(minutes=2)
# How long a duplicate waits for the first request to finish before answering 409.
DEFAULT_WAIT_SECONDS = 10.0
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.25


class KeyReused(ServiceError):
    """The key was already used for a different request (HTTP 422)."""


class KeyInProgress(Conflict):
    """The first request with this key is still running (HTTP 409; retry shortly)."""


@dataclass(frozen=True)
class Claim:
    """This request owns the key: execute it, then `complete()` or `release()`."""

    record_id: int


@dataclass(frozen=True)
class Replay:
    """The key was used before for this same request: answer with what it answered."""

    status: int
    body: object


def request_fingerprint(method: str, path: str, data) -> str:
    """SHA-256 of the request: method, path and the parsed body in canonical JSON (key order
    and whitespace do not matter; a different value does)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder, default=str)
    return hashlib.sha256(f"{method.upper()}\n{path}\n{canonical}".encode()).hexdigest()


def validate_key(key: str) -> str:
    """1-255 visible ASCII characters (a UUID is the usual choice)."""
    if not key or len(key) > KEY_MAX_LENGTH or not all(33 <= ord(char) <= 126 for char in key):
        raise InvalidRequest(
            f"An Idempotency-Key is 1-{KEY_MAX_LENGTH} visible ASCII characters without spaces, e.g. a UUID.",
            field="Idempotency-Key",
        )
    return key


def claim(*, user, key: str, method: str, path: str, request_hash: str, wait: float | None = None) -> Claim | Replay:
    """Own the key for this request, or get the first request's answer (see the module doc).

    Raises KeyReused when the key belongs to a different request and KeyInProgress when the
    first request is still running after `wait` seconds (default DEFAULT_WAIT_SECONDS).
    """
    validate_key(key)
    method = method.upper()
    path = path[:PATH_MAX_LENGTH]
    deadline = time.monotonic() + (DEFAULT_WAIT_SECONDS if wait is None else wait)
    pause = POLL_FIRST_SECONDS
    while True:
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user=user, key=key, method=method, path=path, request_hash=request_hash
                )
            return Claim(record.pk)
        except IntegrityError:
            pass
        record = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if record is None:
            continue  # released between our INSERT and this read: try to own it again
        now = timezone.now()
        if record.created_at < now - TTL or (record.completed_at is None and record.created_at < now - STALE_AFTER):
            # Expired, or its process died: forget it (only if it is still that row).
            IdempotencyRecord.objects.filter(pk=record.pk, created_at=record.created_at, completed_at=record.completed_at).delete()
            continue
        if (record.method, record.path, record.request_hash) != (method, path, request_hash):
            same_target = (record.method, record.path) == (method, path)
            raise KeyReused(
                "This Idempotency-Key was already used "
                + ("with a different request body" if same_target else f"for {record.method} {record.path}")
                + "; send a new key with a new request.",
                field="Idempotency-Key",
            )
        if record.completed_at is not None:
            return Replay(record.response_status, record.response_body)
        if time.monotonic() >= deadline:
            raise KeyInProgress(
                "A request with this Idempotency-Key is still in progress; retry in a moment to get its result.",
                field="Idempotency-Key",
            )
        time.sleep(pause)
        pause = min(pause * 2, POLL_MAX_SECONDS)


def complete(record_id: int, *, status: int, body) -> None:
    """Store the owner's answer. Call it inside the transaction of the request's own writes."""
    body = json.loads(json.dumps(body, cls=DjangoJSONEncoder))
    IdempotencyRecord.objects.filter(pk=record_id, completed_at__isnull=True).update(
        response_status=status, response_body=body, completed_at=timezone.now()
    )


def release(record_id: int) -> None:
    """Forget an unfinished claim: the request failed and wrote nothing; the key is free."""
    IdempotencyRecord.objects.filter(pk=record_id, completed_at__isnull=True).delete()


def purge_expired(now=None) -> int:
    """Delete records older than TTL; returns how many (for a periodic task)."""
    now = now or timezone.now()
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=now - TTL).delete()
    return deleted
