"""Sluice client for Python: ask a Sluice coordinator before each call to a rate-limited upstream.

::

    import sluice

    client = sluice.Client("http://127.0.0.1:7421")
    with client.acquire("openai", tokens=1200, lane="batch", timeout=30) as permit:
        reply = call()
        permit.settle(tokens=reply.usage.total_tokens)

    async with sluice.AsyncClient("http://127.0.0.1:7421") as c:
        async with c.acquire("openai", tokens=1200) as permit:
            ...

Drop-in transports for the official clients: ``sluice.openai.transport(client)`` and
``sluice.anthropic.transport(client)``. See clients/python/README.md.
"""

from ._async import AsyncClient, AsyncPermit
from ._errors import (
    AcquireTimeoutError,
    AuthenticationError,
    InvalidRequestError,
    MalformedAnswerError,
    PermissionDeniedError,
    ResourceNotFoundError,
    SluiceError,
    SluiceUnavailableError,
    WaitEstimate,
    WaitingRoomFullError,
)
from ._sync import Client, Permit
from . import anthropic, openai  # noqa: E402  (the drop-in transports, after the clients they wrap)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Permit",
    "AsyncClient",
    "AsyncPermit",
    "SluiceError",
    "InvalidRequestError",
    "ResourceNotFoundError",
    "AcquireTimeoutError",
    "WaitingRoomFullError",
    "AuthenticationError",
    "PermissionDeniedError",
    "SluiceUnavailableError",
    "MalformedAnswerError",
    "WaitEstimate",
    "openai",
    "anthropic",
]
