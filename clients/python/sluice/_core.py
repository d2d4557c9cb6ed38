"""What the sync and the asyncio client share: the calls, their retries, permits and leases.

Every call to the coordinator is written once, as a generator of *steps*: it yields a
:class:`Call` (one HTTP request to one node) or a :class:`Sleep`, and is sent back the
:class:`Answer` (or the transport's exception). The sync client runs the steps with
``httpx.Client`` and ``time.sleep``, the asyncio client with ``httpx.AsyncClient`` and
``asyncio.sleep``; retries, failover, late grants and the mapping of answers to exceptions
are the same code for both.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote

from ._answers import (
    Answer, Grant, _error_fields, _malformed, _seconds, late_estimate, parse_estimate, parse_grant, parse_json, refusal,
)
from ._args import (  # re-exported for the clients
    Headers, Load, check_known, check_lane, check_load, check_model, check_resource, check_tenant, check_timeout, log,
    parse_urls,
    report_from,
)
from ._errors import SluiceUnavailableError, WaitEstimate

#: Timeout of an acquire that names none, in seconds (the Java SDK's).
DEFAULT_TIMEOUT = 30.0
#: Budget of the short calls (release, renew, report, cancel, describe), retries included.
CALL_BUDGET = 10.0
#: Added to an acquire's timeout for its HTTP read timeout: the coordinator answers first, a dead one cannot hang us.
DEADLINE_MARGIN = 5.0
CONNECT_TIMEOUT = 2.0
#: Delays on the way shorter than this are ordinary jitter, never a reason to confirm a grant.
LATE_FLOOR = 0.010
#: How long a resource's dimensions are trusted before they are read again.
DIMENSIONS_TTL = 60.0


def backoff(retry: int) -> float:
    """The pause before retry number ``retry + 1``: 50, 100, 200, 400, 500, 500, ... ms (as the Java SDK)."""
    return min(0.5, 0.05 * 2 ** min(retry, 10))


# ---------------------------------------------------------------------------------------------
# Steps


@dataclass(frozen=True)
class Call:
    """One HTTP request to one node; ``timeout`` is its read timeout in seconds."""

    url: str
    method: str
    path: str
    body: Optional[Dict[str, Any]]
    timeout: float


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Union[Call, Sleep]
Result = Union[Answer, Exception, None]
Steps = Generator[Step, Result, Any]


# ---------------------------------------------------------------------------------------------
# Nodes, request ids, transit


class Nodes:
    """The coordinator URLs. Calls go to the current node; one that fails makes the next current.

    Each client starts on a random node, so the processes of a fleet spread over the nodes,
    and stays there while it answers (its connections stay warm).
    """

    def __init__(self, urls: List[str], start: Optional[int] = None) -> None:
        self.urls = urls
        self._i = random.randrange(len(urls)) if start is None else start % len(urls)
        self._lock = threading.Lock()

    @property
    def current(self) -> str:
        return self.urls[self._i]

    def failed(self, url: str) -> None:
        with self._lock:
            if self.urls[self._i] == url:
                self._i = (self._i + 1) % len(self.urls)


class Transit:
    """How long answers normally spend on the way: the least seen in this window of 10 s or the last.

    As the Java SDK's Transit: a constant delay bunches nothing; what counts for a grant is how
    much longer than that its answer took.
    """

    WINDOW = 10.0

    def __init__(self) -> None:
        self._least_now = math.inf
        self._least_before = math.inf
        self._window_start = -math.inf
        self._lock = threading.Lock()

    def excess(self, on_the_way: float, now: float) -> float:
        """Notes an answer that spent ``on_the_way`` seconds on the way; returns its excess (0 for the first)."""
        with self._lock:
            if now - self._window_start > self.WINDOW:
                self._least_before = self._least_now
                self._least_now = math.inf
                self._window_start = now
            least = min(self._least_now, self._least_before)
            self._least_now = min(self._least_now, on_the_way)
        return 0.0 if least == math.inf else max(0.0, on_the_way - least)


class Handoff:
    """The cancel race of one acquire, settled once: exactly one of "the caller owns the permit"
    and "the permit is given back as unused" happens.

    The call that got a grant offers it (:meth:`offer`: False means the caller left, give it
    back); a caller that stops waiting abandons it (:meth:`abandon` returns a grant that was
    already offered and not taken, which the caller then gives back).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._offered: Optional[Grant] = None
        self.stop = threading.Event()  # no more retries: the caller left

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def offer(self, grant: Grant) -> bool:
        with self._lock:
            if self._abandoned:
                return False
            self._offered = grant
            return True

    def take(self) -> Optional[Grant]:
        """The caller takes the offered grant; None if it abandoned first."""
        with self._lock:
            offered, self._offered = self._offered, None
            return None if self._abandoned else offered

    def abandon(self) -> Optional[Grant]:
        """The caller stops waiting; returns a grant offered and not taken, for the caller to give back."""
        with self._lock:
            self._abandoned = True
            self.stop.set()
            offered, self._offered = self._offered, None
            return offered


# ---------------------------------------------------------------------------------------------
# The calls


class Core:
    """One client's shared state and its calls, as steps. Thread-safe."""

    def __init__(self, urls: Union[str, Sequence[str], None], api_key: Optional[str], timeout: float, lane: str,
                 clock: Callable[[], float], tenant: Optional[str] = None) -> None:
        self.nodes = Nodes(parse_urls(urls))
        key = api_key if api_key is not None else os.environ.get("SLUICE_API_KEY")
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise ValueError("api_key must be a key such as 'slk_...', or None for an open coordinator")
        self.headers = {"Authorization": f"Bearer {key.strip()}"} if key else {}
        self.timeout = check_timeout(timeout, "timeout")
        self.lane = check_lane(lane)
        self.tenant = check_tenant(tenant)
        self.clock = clock
        self.transit = Transit()
        #: Grants that reached this client late and were confirmed (a test hook, and a figure).
        self.late_grants = 0
        self._id_prefix = uuid.uuid4().hex[:20] + "-"
        self._ids = 0
        self._ids_lock = threading.Lock()
        self._dimensions: Dict[str, Tuple[float, Optional[Tuple[str, ...]]]] = {}
        #: Per resource, what the coordinator answered this client: grants (distinct permits),
        #: timeouts (408) and waiters withdrawn by cancel; the coordinator counts the same.
        self.counts: Dict[str, Dict[str, int]] = {}

    def next_id(self) -> str:
        """Random per client, then a counter (as the Java SDK): unique without a UUID per call."""
        with self._ids_lock:
            self._ids += 1
            n = self._ids
        return f"{self._id_prefix}{n:x}"

    def count(self, resource: str, what: str) -> None:
        with self._ids_lock:
            c = self.counts.setdefault(resource, {"granted": 0, "timedOut": 0, "cancelled": 0})
            c[what] += 1

    # -- every call ---------------------------------------------------------------------------

    def attempts(self, operation: str, resource: str, method: str, path: str,
                 body: Callable[[float], Optional[Dict[str, Any]]], timeout: float, margin: float,
                 stop: Optional[threading.Event] = None) -> Generator[Step, Result, Tuple[Answer, float]]:
        """Sends until an answer that is not "try another node", or the time runs out.

        A transport failure, a 503 (UNAVAILABLE; CANCELLED unless ``stop`` says we caused it)
        or a proxy's 502/504 is sent again after 50, 100, 200 ... 500 ms to the next node, with
        the same body (so an acquire keeps its request id: never granted twice), until
        ``timeout`` runs out; the last retry is made when it does, and a zero timeout still
        gets one quick retry. Returns the answer and its round trip.
        """
        started = self.clock()
        retries = 0
        while True:
            remaining = max(0.0, timeout - (self.clock() - started))
            url = self.nodes.current
            sent = self.clock()
            result = yield Call(url, method, path, body(remaining), max(remaining + margin, 0.5))
            round_trip = self.clock() - sent
            left = stop is not None and stop.is_set()  # the caller left: its answer, whatever it is
            if isinstance(result, Answer) and (left or not _retryable(result, stop)):
                return result, round_trip
            self.nodes.failed(url)
            remaining = timeout - (self.clock() - started)
            if left or (remaining <= 0 and retries > 0):
                if isinstance(result, Answer):
                    return result, round_trip
                raise SluiceUnavailableError(
                    f"{operation} on resource {resource!r} failed: no coordinator answered within {timeout:.3g} s"
                    f" ({retries + 1} attempt(s) on {', '.join(self.nodes.urls)}); the last said: {_said(result)}."
                    " Check that a coordinator runs and that the URL is its HTTP port (default 7421)")
            yield Sleep(backoff(retries) if retries == 0 else min(backoff(retries), max(remaining, 0.0)))
            retries += 1

    def acquire_steps(self, resource: str, load: Load, lane: str, timeout: float, request_id: str,
                      handoff: Handoff, tenant: Optional[str] = None,
                      fail_if_late: bool = False, model: Optional[str] = None) -> Generator[Step, Result, Optional[Grant]]:
        """The acquire: its long polls. Returns the grant the caller takes, or None if it left."""
        extra: Dict[str, Any] = {} if tenant is None else {"tenant": tenant}
        if fail_if_late:
            extra["failIfLate"] = True
        if model is not None:
            extra["model"] = model
        path = f"/v1/resources/{quote(resource, safe='')}/acquire"
        started = self.clock()
        confirmed = False
        seen: List[str] = []
        while True:
            left = max(0.0, timeout - (self.clock() - started))
            answer, round_trip = yield from self.attempts(
                "acquire", resource, "POST", path,
                lambda remaining: {"load": load, "lane": lane, "timeout": round(remaining, 3), "requestId": request_id,
                                   **extra},
                left, DEADLINE_MARGIN, handoff.stop)
            if answer.status != 200:
                if answer.status == 408 and late_estimate(answer) is None:
                    self.count(resource, "timedOut")  # refused as late, it never waited: not a timeout
                raise refusal(answer, "acquire", resource, self.nodes.current)
            grant = parse_grant(answer, resource)
            if grant.permit_id not in seen:
                seen.append(grant.permit_id)
                self.count(grant.member, "granted")  # the coordinator counts a pool's grants on the member
            if not confirmed and not handoff.abandoned and self.late(grant, round_trip):
                # Held back by the network: send it again at once with its request id, and the
                # coordinator hands over the same permit if still fresh, or forfeits it and keeps
                # this acquire at the head of its lane (as the Java SDK's AcquireCall#confirm).
                confirmed = True
                self.late_grants += 1
                log.debug("a grant on %r reached this client late; confirming it with request id %s",
                          resource, request_id)
                continue
            if handoff.offer(grant):
                return grant
            yield from self.release_steps(grant.resource, grant.permit_id, None, unused=True)
            return None

    def late(self, grant: Grant, round_trip: float) -> bool:
        if grant.answered_after is None:
            return False
        excess = self.transit.excess(round_trip - grant.answered_after, self.clock())
        return grant.fresh_for is not None and excess > max(grant.fresh_for, LATE_FLOOR)

    def cancel_steps(self, resource: str, request_id: str) -> Generator[Step, Result, bool]:
        path = f"/v1/resources/{quote(resource, safe='')}/cancel"
        answer, _ = yield from self.attempts("cancel", resource, "POST", path,
                                             lambda _: {"requestId": request_id}, CALL_BUDGET, 0.0)
        cancelled = bool(self._ok(answer, "cancel", resource).get("cancelled"))
        if cancelled:
            self.count(resource, "cancelled")
        return cancelled

    def release_steps(self, resource: str, permit_id: str, usage: Optional[Load],
                      unused: bool = False, model: Optional[str] = None) -> Generator[Step, Result, bool]:
        path = f"/v1/permits/{quote(permit_id, safe='')}/release"
        body: Dict[str, Any] = {"unused": True} if unused else ({"usage": usage} if usage is not None else {})
        if usage is not None and model is not None and not unused:
            body["model"] = model  # the coordinator prices the usage's token counts as on acquire
        answer, _ = yield from self.attempts("release", resource, "POST", path, lambda _: body, CALL_BUDGET, 0.0)
        if answer.status == 400 and usage is not None:
            # A refused settle must still free the slot: release as granted, and say why.
            log.warning("settle of permit %s on %r was refused (%s); released it as granted",
                        permit_id, resource, _error_fields(answer)[1])
            return (yield from self.release_steps(resource, permit_id, None))
        return bool(self._ok(answer, "release", resource).get("released"))

    def renew_steps(self, resource: str, permit_id: str, budget: float) -> Generator[Step, Result, Optional[float]]:
        """The new lease in seconds, or None if the permit is not held any more."""
        path = f"/v1/permits/{quote(permit_id, safe='')}/renew"
        answer, _ = yield from self.attempts("renew", resource, "POST", path, lambda _: None, budget, 0.0)
        if answer.status == 404:
            return None
        return _seconds(self._ok(answer, "renew", resource), "leaseSeconds", answer, "renew", resource)

    def report_steps(self, resource: str, throttled: bool, retry_after: Optional[float],
                     remaining: Load, limits: Optional[Load] = None) -> Generator[Step, Result, float]:
        """Sends a report: what remains lowers the buckets; the provider's ``limits`` set a learning
        resource's rates (other resources ignore them)."""
        path = f"/v1/resources/{quote(resource, safe='')}/report"
        body: Dict[str, Any] = {"throttled": throttled}
        if retry_after is not None:
            body["retryAfter"] = round(min(retry_after, 86400.0), 3)
        if remaining:
            body["remaining"] = remaining
        if limits:
            body["limits"] = limits
        answer, _ = yield from self.attempts("report", resource, "POST", path, lambda _: body, CALL_BUDGET, 0.0)
        return _seconds(self._ok(answer, "report", resource), "pausedForSeconds", answer, "report", resource)

    def estimate_steps(self, resource: str, load: Load, lane: str,
                       tenant: Optional[str]) -> Generator[Step, Result, WaitEstimate]:
        path = f"/v1/resources/{quote(resource, safe='')}/estimate"
        body: Dict[str, Any] = {"load": load, "lane": lane}
        if tenant is not None:
            body["tenant"] = tenant
        answer, _ = yield from self.attempts("estimate", resource, "POST", path, lambda _: body, CALL_BUDGET, 0.0)
        doc = self._ok(answer, "estimate", resource)
        try:
            return parse_estimate(doc)
        except TypeError as e:
            raise _malformed(answer, "estimate", resource, str(e)) from None

    def dimensions_steps(self, resource: str, budget: float) -> Generator[Step, Result, Optional[Tuple[str, ...]]]:
        """The dimensions the resource's limit has, read from the coordinator at most once a
        minute, within ``budget`` seconds (an acquire's timeout: a down coordinator is an error
        after it, never a hang). None for a resource the coordinator will not describe, a pool
        (its state is its members'): then the coordinator alone checks the load."""
        cached = self._dimensions.get(resource)
        now = self.clock()
        if cached is not None and now - cached[0] < DIMENSIONS_TTL:
            return cached[1]
        path = f"/v1/resources/{quote(resource, safe='')}"
        answer, _ = yield from self.attempts("acquire", resource, "GET", path, lambda _: None,
                                             min(budget, CALL_BUDGET), 0.0)
        if answer.status == 400:
            # A pool, or a name the coordinator refuses: the acquire itself says which, clearly.
            self._dimensions[resource] = (now, None)
            return None
        doc = self._ok(answer, "acquire", resource)
        try:
            names = tuple(str(r["dimension"]) for r in doc["limit"]["rates"])
        except (KeyError, TypeError) as e:
            raise _malformed(answer, "describe", resource, f"no limit.rates[].dimension ({e!r})") from None
        self._dimensions[resource] = (now, names)
        return names

    def forget_dimensions(self, resource: str) -> None:
        self._dimensions.pop(resource, None)

    def _ok(self, answer: Answer, operation: str, resource: str) -> Dict[str, Any]:
        if answer.status != 200:
            raise refusal(answer, operation, resource, self.nodes.current)
        return parse_json(answer, operation, resource)


def _retryable(answer: Answer, stop: Optional[threading.Event]) -> bool:
    if answer.status in (502, 504):
        return True
    if answer.status != 503:
        return False
    code = _error_fields(answer)[0]
    return code != "CANCELLED" or stop is None or not stop.is_set()


def _said(result: Result) -> str:
    if isinstance(result, Answer):
        code, message = _error_fields(result)
        return f"HTTP {result.status} {code or ''} {message or ''}".strip()
    return f"{type(result).__name__}: {result}" if str(result) else type(result).__name__


def monotonic() -> float:
    return time.monotonic()


# ---------------------------------------------------------------------------------------------
# Permits and their leases


class PermitBase:
    """What both permits share: the grant's figures and the settle to apply at release."""

    def __init__(self, core: Core, grant: Grant, known: Tuple[str, ...]) -> None:
        self._core = core
        self._known = known
        #: The coordinator's id of this permit (any node takes it).
        self.id = grant.permit_id
        #: The resource it was granted on (as asked: a pool's name for a pool).
        self.resource = grant.resource
        #: The resource whose limit granted it: ``resource`` itself, or for a pool the member that
        #: granted, whose own upstream (API key, project) the call should use and whose 429s to
        #: report (on the member, so only it pauses). Release and settle need nothing more.
        self.member = grant.member
        #: What the coordinator charged, per dimension, with its requests=1 default.
        self.granted: Load = dict(grant.granted)
        #: Seconds the acquire waited at the coordinator.
        self.waited = grant.waited
        #: Seconds of lease, renewed in the background while the permit is held.
        self.lease = grant.lease
        #: True once a renewal found the permit gone (its lease ran out): release is then a no-op.
        self.expired = False
        #: The model the acquire named (None: none): the settle's token counts are priced at it.
        self.model: Optional[str] = None
        self._usage: Optional[Load] = None
        self._released = False
        self._lock = threading.Lock()

    @property
    def released(self) -> bool:
        return self._released

    def settle(self, load: Optional[Mapping[str, Any]] = None, **dimensions: Any) -> None:
        """Records what the call really used, applied at release: the coordinator refunds an
        over-estimate and charges an under-estimate as debt; dimensions not named stay as
        granted. A second call replaces the first. Refuses a bad load before anything is sent.
        """
        usage = check_load(load, dimensions, "settle")
        check_known(self.resource, usage, self._known, "settle", self.model is not None)
        with self._lock:
            if self._released:
                raise RuntimeError(f"permit {self.id} on {self.resource!r} is already released: settle before"
                                   " releasing (inside the with block)")
            self._usage = usage

    def _ending(self) -> Optional[Tuple[Optional[Load]]]:
        """Marks the permit released; returns (usage,) the first time, None after."""
        with self._lock:
            if self._released:
                return None
            self._released = True
            return (self._usage,)

    def __repr__(self) -> str:
        state = "released" if self._released else ("expired" if self.expired else "held")
        return f"<{type(self).__name__} {self.id} on {self.resource!r} granted={self.granted} {state}>"


class Leases:
    """The held permits of one client and when each is renewed next: a third of its lease after
    the grant or the last renewal, 1 s after a failed renewal. Not thread-safe: its owner locks."""

    def __init__(self) -> None:
        self._due: Dict[PermitBase, float] = {}

    def add(self, permit: PermitBase, now: float, lease: Optional[float] = None) -> None:
        self._due[permit] = now + (permit.lease if lease is None else lease) / 3

    def retry(self, permit: PermitBase, now: float) -> None:
        if permit in self._due:
            self._due[permit] = now + min(1.0, permit.lease / 3)

    def remove(self, permit: PermitBase) -> None:
        self._due.pop(permit, None)

    def due(self, now: float) -> List[PermitBase]:
        """The permits due now, each pushed a lease-third ahead until its renewal says otherwise."""
        out = [p for p, t in self._due.items() if t <= now]
        for p in out:
            self._due[p] = now + p.lease / 3
        return out

    def next_due(self) -> Optional[float]:
        return min(self._due.values()) if self._due else None

    def __len__(self) -> int:
        return len(self._due)


def renewed(leases: Leases, permit: PermitBase, lease: Optional[float], now: float) -> None:
    """Applies a renewal's outcome: the new lease, or the permit gone."""
    if lease is None:
        permit.expired = True
        leases.remove(permit)
        log.warning("permit %s on %r is not held any more (its lease ran out before a renewal)",
                    permit.id, permit.resource)
    elif not permit.released:
        permit.lease = lease
        leases.add(permit, now, lease)


def acquire_args(core: Core, resource: Any, load: Optional[Mapping[str, Any]], dimensions: Mapping[str, Any],
                 lane: Optional[str], timeout: Optional[float], tenant: Optional[str] = None,
                 fail_if_late: bool = False,
                 model: Optional[str] = None) -> Tuple[str, Load, str, float, Optional[str], bool, Optional[str]]:
    """Everything an acquire checks before it sends anything."""
    if not isinstance(fail_if_late, bool):
        raise TypeError(f"fail_if_late must be True or False, not {fail_if_late!r}")
    return (check_resource(resource), check_load(load, dimensions, "load"),
            check_lane(core.lane if lane is None else lane),
            core.timeout if timeout is None else check_timeout(timeout),
            core.tenant if tenant is None else check_tenant(tenant), fail_if_late, check_model(model))


def estimate_args(core: Core, resource: Any, load: Optional[Mapping[str, Any]], dimensions: Mapping[str, Any],
                  lane: Optional[str], tenant: Optional[str]) -> Tuple[str, Load, str, Optional[str]]:
    """Everything an estimate checks before it sends anything: as an acquire's."""
    resource, amounts, lane, _, tenant, _, _ = acquire_args(core, resource, load, dimensions, lane, None, tenant)
    return resource, amounts, lane, tenant


def report_args(resource: Any, retry_after: Optional[float],
                headers: Optional[Headers]) -> Tuple[str, Optional[float], Load, Load]:
    """A report's resource, pause, remaining counts and provider limits (as the Java SDK sends
    them: ``x-ratelimit-limit-*`` and ``anthropic-ratelimit-*-limit`` are what ``--learn`` learns
    from)."""
    if retry_after is not None:
        retry_after = check_timeout(retry_after, "retry_after")
    resource = check_resource(resource)
    parsed = report_from(headers, resource)
    return resource, parsed.retry_after if retry_after is None else retry_after, parsed.remaining(), parsed.limits()
