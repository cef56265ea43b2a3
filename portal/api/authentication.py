"""API token authentication: `Authorization: Token <key>`; only the key's SHA-256 is stored."""

import hashlib

from django.utils import timezone
from rest_framework import authentication, exceptions

from portal.models import ApiToken


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: use 'Authorization: Token <key>'.")
        key = header[1].decode(errors="replace")
        digest = hashlib.sha256(key.encode()).hexdigest()
        token = ApiToken.objects.select_related("user").filter(key_hash=digest).first()
        now = timezone.now()
        if token is None or token.revoked_at or (token.expires_at and token.expires_at <= now):
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword
