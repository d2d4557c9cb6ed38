"""The exceptions of the Sluice client: the Java SDK's, named the Python way.

Every refusal from the coordinator carries its ``code`` (``NOT_FOUND``, ...), the HTTP
``status`` and the coordinator's ``server_message`` verbatim; ``str(e)`` says what failed and
what to do, in the Java SDK's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = [
    "WaitEstimate",
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


@dataclass(frozen=True)
class WaitEstimate:
    """When an acquire made now would be granted, as the coordinator estimates it
    (:meth:`sluice.Client.estimate`); also what a ``fail_if_late`` acquire was refused with.

    An estimate, not a promise: aging, later arrivals of other tenants and the concurrency cap
    are left out.
    """

    #: Seconds from now until the grant (0.0: at once); None while :attr:`paused`.
    wait: Optional[float]
    #: The resource is paused until an admin resumes it: only a resume can help.
    paused: bool

    def fits(self, timeout: float) -> bool:
        """Whether an acquire with this ``timeout`` (seconds) is expected in time."""
        return self.wait is not None and self.wait <= timeout


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
    """408 ``DEADLINE_EXCEEDED``: not granted within the timeout; nothing was taken. With
    ``fail_if_late``, refused at once because the estimated wait was past the timeout:
    :attr:`estimate` holds it (None for a timeout waited out)."""

    def __init__(self, message: str, *, estimate: Optional[WaitEstimate] = None, code: Optional[str] = None,
                 status: Optional[int] = None, server_message: Optional[str] = None) -> None:
        super().__init__(message, code=code, status=status, server_message=server_message)
        #: The coordinator's estimate, for a ``fail_if_late`` refusal; None otherwise.
        self.estimate = estimate


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
