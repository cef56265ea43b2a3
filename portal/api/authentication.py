"""API token authentication: `Authorization: Token <key>`; only the key's SHA-256 is stored.

Tokens are made and revoked by `portal.services.tokens` (the API, the browser UI and the
admin all go through it); this module only checks them.
"""

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from portal.models import ApiToken
from portal.services.credentials import digest

# `last_used_at` is for people ("is this token still in use?"): minute precision is plenty,
# and writing it on every request would turn each GET into a write (a lock on SQLite).
LAST_USED_PRECISION = timedelta(minutes=1)


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token sbx_...`. A wrong, revoked or expired key is a 401, never a
    fallback to anonymous."""

    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: use 'Authorization: Token <key>'.")
        key = header[1].decode(errors="replace")
        token = ApiToken.objects.select_related("user").filter(key_hash=digest(key)).first()
        now = timezone.now()
        if token is None or token.revoked_at or (token.expires_at and token.expires_at <= now):
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) with `WWW-Authenticate: Token realm="api"`.
        return f'{self.keyword} realm="api"'
