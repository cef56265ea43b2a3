"""Personal API tokens: create (the key is shown once), revoke, list.

The one place the browser UI (the "API tokens" page), the REST API (`/api/v1/tokens/`) and
the admin's "revoke" action go through. Only the SHA-256 of a key is stored; the plain key
exists in the return value of `create_token` and nowhere else.

Must not import `portal.api` or `portal.web`: they call this module, not the other way round.
"""

from django.db import transaction
from django.utils import timezone

from portal.models import ApiToken
from portal.services.credentials import digest, new_secret
from portal.services.errors import InvalidRequest, NotAllowed

KEY_PREFIX = "sbx_"
# The first characters of a key are stored in clear so people can tell their tokens apart
# ("sbx_AbCd…"); 8 characters = "sbx_" + 4 random ones, far too few to guess the rest.
SHOWN_PREFIX_LENGTH = 8
NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length


def create_token(*, user, name: str, expires_at=None) -> tuple[ApiToken, str]:
    """A new token of `user`; returns the row and the plain key (show it once, then forget it).

    Raises InvalidRequest for a blank or too long name, or an expiry that is not in the future;
    NotAllowed for an anonymous or inactive user.
    """
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        raise NotAllowed("Only an active, signed-in user can create an API token.")
    raw_length = len(name or "")
    name = (name or "").strip()
    errors = {}
    if not name:
        errors["name"] = "Give the token a name that says what it is for, e.g. 'CI pipeline'."
    elif raw_length > NAME_MAX_LENGTH:  # as sent, the way the API schema's maxLength counts
        errors["name"] = f"Use at most {NAME_MAX_LENGTH} characters."
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = "The expiry must be in the future."
    if errors:
        field = next(iter(errors))
        raise InvalidRequest(errors[field], field=field, errors=errors)
    key = new_secret(KEY_PREFIX)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=key[:SHOWN_PREFIX_LENGTH],
        key_hash=digest(key),
        expires_at=expires_at,
    )
    return token, key


def revoke_token(*, user, token_id: int) -> ApiToken:
    """Revoke a token: its owner may, staff may revoke anyone's. Revoking twice is harmless
    (the first revocation time is kept).

    Raises InvalidRequest when no such token exists and NotAllowed for someone else's token
    (a non-staff user learns nothing more about other people's tokens than "not yours").
    """
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        raise NotAllowed("Only an active, signed-in user can revoke an API token.")
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().filter(pk=token_id).first()
        if token is None:
            raise InvalidRequest(f"There is no API token #{token_id}.", field="token")
        if token.user_id != user.pk and not user.is_staff:
            raise NotAllowed("You may revoke only your own API tokens.")
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=token.revoked_at)
    return token


def list_tokens(user):
    """The user's own tokens, newest first, revoked ones included (they show as revoked)."""
    return ApiToken.objects.filter(user_id=getattr(user, "pk", None)).order_by("-created_at", "-id")


def is_usable(token: ApiToken, now=None) -> bool:
    """Neither revoked nor expired."""
    now = now or timezone.now()
    return token.revoked_at is None and (token.expires_at is None or token.expires_at > now)
