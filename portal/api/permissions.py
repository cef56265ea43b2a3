"""API permissions: who may call which action. Rules about *products* live in
`portal.services.permissions` and are enforced by the services themselves."""

from rest_framework.permissions import SAFE_METHODS, BasePermission


class ReadForAllStaffWrites(BasePermission):
    """The CMDB is an inventory: every signed-in user reads it; only staff change the records
    admins own (departments, sandbox accounts, products), as in the Django admin."""

    message = "Only staff may change departments, sandbox accounts and products."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or user.is_staff
