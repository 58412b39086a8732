"""The errors a service raises: plain exceptions that say what is wrong, in words.

Services know nothing of HTTP; ``syntera.api.errors`` maps each kind below to its answer
(404, 422 naming the field, 409, …) and a worker records the message. A row that does not
exist and a row of another company are the same ``NotFound``: nothing leaks.
"""

from __future__ import annotations


class SynteraError(Exception):
    """Something the caller asked for cannot be done; ``detail`` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(SynteraError):
    """No such row or document in the caller's company (or it belongs to another)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class InvalidField(SynteraError):
    """A well-formed request whose ``field`` is not acceptable."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Conflict(SynteraError):
    """The request conflicts with the current state (a duplicate, an ended chat, …)."""


class Forbidden(SynteraError):
    """The caller is known but may not do this."""


class Unauthorized(SynteraError):
    """The caller's credential (named by ``scheme``) is missing or not valid."""

    def __init__(self, detail: str, scheme: str = "Bearer") -> None:
        super().__init__(detail)
        self.scheme = scheme


class UnsupportedMediaType(SynteraError):
    """A file of a type that is not read."""


class TooLarge(SynteraError):
    """A body or file over its limit."""


class RateLimited(SynteraError):
    """A limit is reached; there is room again after ``retry_after_s``."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Unavailable(SynteraError):
    """A store this needs does not answer; retrying later may work."""

    def __init__(self, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def not_found(what: str) -> NotFound:
    """The error for a row that does not exist or that the caller may not see."""
    return NotFound(what)


def field_error(field: str, message: str) -> InvalidField:
    """The error for a request whose ``field`` is not acceptable."""
    return InvalidField(field, message)
