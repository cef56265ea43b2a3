"""Who may do what. One place, used by the UI, the API and the CLI alike."""

from portal.models import Environment, Product
from portal.services.errors import NotAllowed


def can_manage_product(user, product: Product) -> bool:
    """Staff, or a member of the department that owns the product."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_staff:
        return True
    return product.department.members.filter(pk=user.pk).exists()


def require_product(user, product: Product, action: str) -> None:
    if not can_manage_product(user, product):
        raise NotAllowed(
            f"You may not {action} environments of {product.name}: only members of "
            f"{product.department.name} (or staff) may."
        )


def can_manage_environment(user, environment: Environment) -> bool:
    return can_manage_product(user, environment.product)


def recorded_user(user):
    """The user to record as having asked (requested_by, confirmed_by): None for an anonymous
    or unsaved one (the CLI's and tests' callers)."""
    return user if getattr(user, "pk", None) else None
