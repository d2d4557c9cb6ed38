"""The exceptions of the Sluice client: the Java SDK's, named the Python way.

Every refusal from the coordinator carries its ``code`` (``NOT_FOUND``, ...), the HTTP
``status`` and the coordinator's ``server_message`` verbatim; ``str(e)`` says what failed and
what to do, in the Java SDK's words.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "SluiceError",
    "InvalidRequestError",
    "ResourceNotFoundError",
    "AcquireTimeoutError",
    "WaitingRoomFullError",
    "AuthenticationError",
    "PermissionDeniedError",
    "SluiceUnavailableError",
    "MalformedAnswerError",
]


class SluiceError(Exception):
    """Base of every error this client raises about a call (not about its arguments)."""

    def __init__(self, message: str, *, code: Optional[str] = None, status: Optional[int] = None,
                 server_message: Optional[str] = None) -> None:
        super().__init__(message)
        #: The coordinator's error code, e.g. ``NOT_FOUND``; None when it gave none.
        self.code = code
        #: The HTTP status of the answer; None when there was no answer.
        self.status = status
        #: What the coordinator said, verbatim; None when there was no answer.
        self.server_message = server_message


class InvalidRequestError(SluiceError):
    """400 ``INVALID_ARGUMENT``: wrong in any state (name, load, a load the limit can never fit)."""


class ResourceNotFoundError(SluiceError):
    """404 ``NOT_FOUND``: the resource has no limit."""


class AcquireTimeoutError(SluiceError):
    """408 ``DEADLINE_EXCEEDED``: not granted within the timeout; nothing was taken."""


class WaitingRoomFullError(SluiceError):
    """429 ``RESOURCE_EXHAUSTED``: too many callers already wait; retry after ``retry_after``."""

    def __init__(self, message: str, *, retry_after: float, code: Optional[str] = None,
                 status: Optional[int] = None, server_message: Optional[str] = None) -> None:
        super().__init__(message, code=code, status=status, server_message=server_message)
        #: Seconds to wait before retrying, from the coordinator's Retry-After (1.0 without one).
        self.retry_after = retry_after


class AuthenticationError(SluiceError):
    """401 ``UNAUTHENTICATED``: no API key, or an unknown or revoked one."""


class PermissionDeniedError(SluiceError):
    """403 ``PERMISSION_DENIED``: the key does not cover the resource, or the call needs an admin key."""


class SluiceUnavailableError(SluiceError):
    """No coordinator node could serve the call (down, stopping, store away) within its time."""


class MalformedAnswerError(SluiceError):
    """The answer was not what a Sluice coordinator sends (wrong URL or port, a proxy's page, a version gap)."""
