"""The coordinator's answers: grants read, error answers mapped to the exceptions, anything else
named as malformed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from ._args import retry_after_from
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


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Grant:
    permit_id: str
    resource: str
    #: The resource whose limit granted: ``resource`` itself, or for a pool the member that granted.
    member: str
    granted: Dict[str, int]
    lease: float
    waited: float
    answered_after: Optional[float]
    fresh_for: Optional[float]


def parse_json(answer: Answer, operation: str, resource: str) -> Dict[str, Any]:
    try:
        doc = json.loads(answer.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _malformed(answer, operation, resource, "not JSON") from None
    if not isinstance(doc, dict):
        raise _malformed(answer, operation, resource, "not a JSON object")
    return doc


def parse_grant(answer: Answer, resource: str) -> Grant:
    doc = parse_json(answer, "acquire", resource)
    missing = [f for f in ("permitId", "granted", "leaseSeconds") if f not in doc]
    if missing:
        raise _malformed(answer, "acquire", resource, f"not a grant: it lacks {', '.join(missing)}")
    try:
        granted = doc["granted"]
        if not isinstance(doc["permitId"], str) or not isinstance(granted, dict) \
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in granted.values()):
            raise TypeError("permitId must be a string and granted an object of whole numbers")
        return Grant(
            # "resource" of a pool's grant is its member, as "member" is: the permit keeps the name asked.
            permit_id=doc["permitId"], resource=resource,
            member=str(doc.get("member") or doc.get("resource") or resource), granted=dict(granted),
            lease=_number(doc["leaseSeconds"]), waited=_number(doc.get("waitedSeconds", 0.0)),
            answered_after=_optional_number(doc.get("answeredAfterSeconds")),
            fresh_for=_optional_number(doc.get("freshForSeconds")))
    except (TypeError, ValueError) as e:
        raise _malformed(answer, "acquire", resource, f"not a grant: {e}") from None


def parse_estimate(doc: Any) -> WaitEstimate:
    """``{"waitSeconds": 4.2, "paused": false}`` (``waitSeconds`` null while paused) as a WaitEstimate."""
    if not isinstance(doc, dict) or not isinstance(doc.get("paused"), bool):
        raise TypeError("not an estimate: it needs waitSeconds and paused")
    return WaitEstimate(wait=_optional_number(doc.get("waitSeconds")), paused=doc["paused"])


def late_estimate(answer: Answer) -> Optional[WaitEstimate]:
    """The estimate in a 408's error (a ``fail_if_late`` refusal); None for a plain timeout."""
    try:
        return parse_estimate(json.loads(answer.body.decode("utf-8"))["error"]["estimate"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{v!r} is not a number")
    return float(v)


def _optional_number(v: Any) -> Optional[float]:
    return None if v is None else _number(v)


def _seconds(doc: Dict[str, Any], field: str, answer: Answer, operation: str, resource: str) -> float:
    try:
        return _number(doc[field])
    except (KeyError, TypeError):
        raise _malformed(answer, operation, resource, f"no number {field}") from None


def _malformed(answer: Answer, operation: str, resource: str, what: str) -> MalformedAnswerError:
    shown = answer.body[:200].decode("utf-8", "replace")
    return MalformedAnswerError(
        f"{operation} on resource {resource!r}: the answer (HTTP {answer.status}) is {what}: {shown!r}. Check that"
        " the URL is a Sluice coordinator's HTTP port (default 7421), not a proxy's or another service's, and that"
        " client and coordinator versions match", status=answer.status)


def _error_fields(answer: Answer) -> Tuple[Optional[str], Optional[str]]:
    try:
        e = json.loads(answer.body.decode("utf-8"))["error"]
        return str(e.get("code")) if e.get("code") is not None else None, str(e.get("message"))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None, None


_BY_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              408: "DEADLINE_EXCEEDED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 502: "UNAVAILABLE",
              503: "UNAVAILABLE", 504: "UNAVAILABLE"}


def refusal(answer: Answer, operation: str, resource: str, url: str) -> SluiceError:
    """The exception for an error answer, in the Java SDK's words, with the coordinator's message."""
    code, message = _error_fields(answer)
    if message is None:
        if answer.status in (413,):
            message = "the request body is over the coordinator's limit of 1 MiB"
        elif answer.status not in (502, 503, 504):
            return _malformed(answer, operation, resource, "not a Sluice error answer")
        else:
            message = f"HTTP {answer.status} from {url} (a proxy in front of the coordinator?)"
    kind = code if code in ("CANCELLED",) else (code or _BY_STATUS.get(answer.status))
    said = message.rstrip(".")
    what = f"{operation} on resource {resource!r} failed: {said}. "
    fields = {"code": code, "status": answer.status, "server_message": message}
    if kind == "INVALID_ARGUMENT":
        return InvalidRequestError(what + "The request is wrong in any state; fix the resource name or load, or"
                                   " the limit", **fields)
    if kind == "NOT_FOUND":
        return ResourceNotFoundError(what + f"Create a limit for {resource!r} with the admin CLI, or check the"
                                     " name", **fields)
    if kind == "DEADLINE_EXCEEDED":
        estimate = late_estimate(answer)
        # A fail-if-late refusal says itself what to do (raise the timeout, or drop fail_if_late).
        return AcquireTimeoutError(what + ("Nothing was granted" if estimate is not None else
                                           "Nothing was granted; retry later, raise the timeout, or lower the load"),
                                   estimate=estimate, **fields)
    if kind == "RESOURCE_EXHAUSTED":
        retry_after = retry_after_from(answer.headers)
        retry_after = 1.0 if retry_after is None else retry_after
        return WaitingRoomFullError(what + f"The waiting room is full; retry after {retry_after:g} s or lower the"
                                    " number of concurrent callers", retry_after=retry_after, **fields)
    if kind == "UNAUTHENTICATED":
        return AuthenticationError(what + "Configure a valid API key", **fields)
    if kind == "PERMISSION_DENIED":
        return PermissionDeniedError(what + "Use an API key whose role, resources and tenant allow this call", **fields)
    if kind in ("UNAVAILABLE", "CANCELLED"):
        return SluiceUnavailableError(what + "The coordinator could not be reached or could not serve the call;"
                                      " retry, or check that it is running and reachable", **fields)
    return SluiceError(what + f"Unexpected status {answer.status} {code or ''}; check that client and coordinator"
                       " versions match".replace("  ", " "), **fields)


