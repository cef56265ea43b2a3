"""The secrets the portal hands out - API keys and the state backend's per-run passwords - and
the one form they are stored in.

A secret is shown once (to the person, or to Terraform in its run folder) and only its digest
is kept. The secrets are 32 random bytes, so a plain sha256 is enough: there is nothing to
guess that a slow hash would protect.
"""

import hashlib
import hmac
import secrets


def new_secret(prefix: str = "") -> str:
    """A fresh secret: `prefix` + 43 URL-safe characters (32 random bytes)."""
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """The stored form of a secret (sha256 hex); rows are looked up by it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    """Whether `secret` is the one whose digest was stored (in constant time)."""
    return bool(stored_digest) and hmac.compare_digest(digest(secret), stored_digest)
