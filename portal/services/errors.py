"""Errors services raise for people: each carries a message fit to show as it is."""


class ServiceError(Exception):
    """A request the portal refuses; `message` is for the user, `field` names the input."""

    def __init__(self, message: str, *, field: str | None = None, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors or ({field: message} if field else {})


class NotAllowed(ServiceError):
    """The user may not do this (not a member of the product's department, ...)."""


class Conflict(ServiceError):
    """The request collides with the current state (name taken, a run already active, ...)."""


class InvalidRequest(ServiceError):
    """The input is wrong; `errors` maps field -> message."""


class TransitionLost(Exception):
    """A compare-and-swap update matched no row: someone else moved the run first."""
