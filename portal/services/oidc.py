"""Sign-in with the company's OpenID Connect provider: who a signed-in person is, and what
their groups make of them.

mozilla-django-oidc runs the protocol (authorization-code flow with state, nonce and PKCE,
the token call, the ID token's signature against the provider's JWKS); `OIDCBackend` only
adds what that library leaves to its users: the checks of the ID token's `exp`, `aud` and
`iss` that it does not make, and the hooks that find, create and update the portal's user.

The group rule lives here and nowhere else (`apply_groups`): on EVERY sign-in, membership of
each department that OIDC_DEPARTMENT_GROUPS names, and `is_staff` when OIDC_STAFF_GROUPS is
set, are made to match the groups claim - a removed group removes the membership or the
staff flag at the next sign-in. Departments the mapping does not name, and `is_superuser`,
are never touched: they stay the admin's.

Must not import views, the API or tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from portal.models import Department

log = logging.getLogger(__name__)

# Django's username column.
USERNAME_MAX_LENGTH = 150


def groups_from_claims(claims: dict) -> set[str]:
    """The groups in OIDC_GROUPS_CLAIM: a list of names (a lone string counts as one group;
    anything else is no group at all)."""
    value = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return {item for item in value if isinstance(item, str)}
    return set()


def managed_department_slugs() -> set[str]:
    """The departments whose membership the provider's groups own: those the mapping names."""
    return {slug for _group, slug in settings.OIDC_DEPARTMENT_GROUPS}


def department_slugs_for(groups: Iterable[str]) -> set[str]:
    """The departments these groups make a person a member of."""
    groups = set(groups)
    return {slug for group, slug in settings.OIDC_DEPARTMENT_GROUPS if group in groups}


def apply_groups(user, groups: Iterable[str]) -> None:
    """Make `user`'s managed department memberships and (if OIDC_STAFF_GROUPS is set) staff
    flag match `groups`. Called on every OIDC sign-in, for new and existing users alike."""
    groups = set(groups)
    managed = managed_department_slugs()
    wanted = department_slugs_for(groups)
    departments = list(Department.objects.filter(slug__in=managed))
    unknown = managed - {department.slug for department in departments}
    if unknown:
        log.warning("OIDC_DEPARTMENT_GROUPS names departments that do not exist: %s", ", ".join(sorted(unknown)))
    with transaction.atomic():
        user.departments.add(*[department for department in departments if department.slug in wanted])
        user.departments.remove(*[department for department in departments if department.slug not in wanted])
        if settings.OIDC_STAFF_GROUPS:
            is_staff = bool(groups & set(settings.OIDC_STAFF_GROUPS))
            if user.is_staff != is_staff:
                get_user_model().objects.filter(pk=user.pk).update(is_staff=is_staff)
                user.is_staff = is_staff


class SignInRefused(SuspiciousOperation):
    """The provider vouched for someone the portal will not sign in; `str()` says why, in
    words for the person at the login page."""


class OIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend with the portal's user rules.

    A user is found by the username claim (OIDC_USERNAME_CLAIM) and created at the first
    sign-in with no usable password. An account that has a usable password is a local one:
    the provider is never allowed to take it over (an IdP user named like the local `admin`
    would otherwise become it); the sign-in is refused, saying so.
    """

    def authenticate(self, request, **kwargs):
        """The library's code flow; a refused token or user is a failed sign-in (None, with
        the reason on `request.oidc_refusal` for the login page), not a server error."""
        try:
            return super().authenticate(request, **kwargs)
        except SuspiciousOperation as exc:
            log.warning("OIDC sign-in refused: %s", exc)
            if request is not None:
                request.oidc_refusal = str(exc)
            return None

    def verify_token(self, token, **kwargs):
        """The library checks the signature (against the provider's JWKS) and the nonce; PyJWT
        under it also refuses an expired or not-yet-valid token, with an exception the library
        lets through as a server error. The library does not check the audience nor the
        issuer at all: a token the same provider issued to another application would pass."""
        try:
            payload = super().verify_token(token, **kwargs)
        except jwt.InvalidTokenError as exc:
            raise SuspiciousOperation(f"The ID token was refused: {exc}.") from exc
        if "nonce" not in kwargs:
            return payload  # a signed userinfo answer, not an ID token: no aud/iss of its own to check
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token was issued for another application (aud).")
        if len(audiences) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise SuspiciousOperation("The ID token was issued for another application (azp).")
        if payload.get("iss") != settings.OIDC_OP_ISSUER:
            raise SuspiciousOperation("The ID token was issued by another provider (iss).")
        return payload

    def get_or_create_user(self, access_token, id_token, payload):
        """The library turns a refusal here into a silent None: keep the reason for the page."""
        try:
            return super().get_or_create_user(access_token, id_token, payload)
        except SuspiciousOperation as exc:
            self.request.oidc_refusal = str(exc)
            raise

    def get_userinfo(self, access_token, id_token, payload):
        """Userinfo's claims over the ID token's (providers put groups in either); both must
        be about the same subject (OpenID Connect Core 5.3.2)."""
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("The provider's userinfo is about another subject than the ID token.")
        return {**payload, **userinfo}

    def verify_claims(self, claims):
        username = claims.get(settings.OIDC_USERNAME_CLAIM)
        if not isinstance(username, str) or not username.strip() or len(username) > USERNAME_MAX_LENGTH:
            raise SignInRefused(f"The provider did not send a usable {settings.OIDC_USERNAME_CLAIM!r} claim.")
        return True

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(username=claims[settings.OIDC_USERNAME_CLAIM].strip())

    def describe_user_by_claims(self, claims):
        return f"username {claims.get(settings.OIDC_USERNAME_CLAIM)!r}"

    def create_user(self, claims):
        """The first sign-in: a user with no usable password, then the group rule."""
        user = self.UserModel.objects.create_user(claims[settings.OIDC_USERNAME_CLAIM].strip(), email=None)
        log.info("OIDC sign-in created user %s", user.username)
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        """Every sign-in: name and e-mail from the claims, then the group rule."""
        if user.has_usable_password():
            raise SignInRefused(
                f"{user.username} is a local account with a password; the identity provider may not "
                "sign in as it. Ask an administrator to switch off its password-based authentication."
            )
        fields = {
            "email": claims.get("email") or "",
            "first_name": (claims.get("given_name") or "")[:150],
            "last_name": (claims.get("family_name") or "")[:150],
        }
        changed = [name for name, value in fields.items() if getattr(user, name) != value]
        for name in changed:
            setattr(user, name, fields[name])
        if changed:
            user.save(update_fields=changed)
        apply_groups(user, groups_from_claims(claims))
        return user
