"""The blocking client: ``sluice.Client`` and its ``Permit``."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import httpx

from . import _core
from ._core import (
    Answer, Call, Core, Grant, Handoff, Headers, Leases, PermitBase, Sleep, Steps, acquire_args, check_known,
    estimate_args, log, report_args, renewed,
)
from ._errors import AcquireTimeoutError, SluiceError, WaitEstimate


class Permit(PermitBase):
    """Capacity granted for one call. Use it as a context manager, which releases it however the
    block ends; its lease is renewed in the background until then. Thread-safe.

    ::

        with client.acquire("openai", tokens=1200) as permit:
            reply = call()
            permit.settle(tokens=reply.usage.total_tokens)
    """

    def __init__(self, client: "Client", grant: Grant, known: tuple) -> None:
        super().__init__(client._core, grant, known)
        self._client = client

    def release(self) -> bool:
        """Releases the permit, applying :meth:`settle` if it was called. Idempotent, never raises:
        a failed release is logged (the lease then runs out on its own). Returns whether the
        coordinator still held it."""
        ending = self._ending()
        if ending is None:
            return False
        self._client._forget(self)
        if self.expired:
            return False
        try:
            return self._client._run(self._core.release_steps(self.resource, self.id, ending[0], model=self.model))
        except SluiceError as e:
            log.warning("release of permit %s on %r failed: %s", self.id, self.resource, e)
            return False

    close = release

    def __enter__(self) -> "Permit":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class Client:
    """A client of one or several Sluice coordinators over their HTTP API. One per process is
    enough; it is thread-safe and keeps its connections open.

    :param urls: a coordinator's HTTP URL, a comma-separated list or a sequence of several (any
        node serves any resource; a node that fails is left for the next, with the same request
        id). Default ``$SLUICE_URL``, else ``http://localhost:7421``.
    :param api_key: sent as ``Authorization: Bearer``; default ``$SLUICE_API_KEY``, else none.
    :param timeout: seconds an acquire waits when it names no timeout; default 30.
    :param lane: lane of an acquire that names none; default ``"default"``.
    :param tenant: tenant of an acquire that names none (see :meth:`acquire`); default none, the
        tenant ``default``.
    :param max_connections: cap on open connections; default none, since every waiting acquire
        is one long poll on its own connection and a capped pool would queue them here, out of
        the coordinator's line.
    :param verify: TLS verification, as httpx takes it (True, False, or a CA bundle path).
    :param transport: an httpx transport (tests).
    :param clock: monotonic seconds (tests).
    """

    def __init__(self, urls: Union[str, Sequence[str], None] = None, *, api_key: Optional[str] = None,
                 timeout: float = _core.DEFAULT_TIMEOUT, lane: str = "default", tenant: Optional[str] = None,
                 max_connections: Optional[int] = None, verify: Any = True,
                 transport: Optional[httpx.BaseTransport] = None,
                 clock: Callable[[], float] = _core.monotonic) -> None:
        self._core = Core(urls, api_key, timeout, lane, clock, tenant)
        self._http = httpx.Client(headers=self._core.headers, verify=verify, transport=transport,
                                  limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64))
        self._leases = Leases()
        self._cond = threading.Condition()
        self._renewer: Optional[threading.Thread] = None
        self._closed = False

    # -- the API ----------------------------------------------------------------------------

    def acquire(self, resource: str, load: Optional[Mapping[str, int]] = None, *, lane: Optional[str] = None,
                timeout: Optional[float] = None, tenant: Optional[str] = None, fail_if_late: bool = False,
                model: Optional[str] = None, **dimensions: int) -> Permit:
        """Waits until the load fits the resource's limit and returns the permit.

        The load is ``load`` and/or keyword dimensions (``tokens=1200``); ``requests`` defaults to
        1. ``timeout`` in seconds (0 tries once). ``tenant`` names whose share of the quota it
        draws on (the limit's shares, floors and caps; default the client's ``tenant``, else the
        tenant ``default``); with an API key bound to a tenant the key's is used, and naming
        another raises :class:`PermissionDeniedError`. Raises :class:`AcquireTimeoutError` when not
        granted in time, or another :class:`SluiceError`; a bad argument raises ValueError or
        TypeError before anything is sent. A ``KeyboardInterrupt`` while waiting withdraws the
        waiter, and a grant that raced with it is given back.

        ``fail_if_late=True``: when the coordinator estimates the grant past ``timeout`` (see
        :meth:`estimate`), or the resource is paused until resumed, raise
        :class:`AcquireTimeoutError` at once, nothing queued, its ``estimate`` set; otherwise wait
        as usual (an estimate is no promise).

        ``model`` (as ``sluice price set`` names it), on a limit that counts money (``usd``): the
        coordinator prices the load's ``input_tokens``, ``output_tokens`` and
        ``cached_input_tokens`` at that model's price, and the permit's settle the same way.
        """
        self._check_open()
        resource, amounts, lane, timeout, tenant, fail_if_late, model = acquire_args(
            self._core, resource, load, dimensions, lane, timeout, tenant, fail_if_late, model)
        known = self._run(self._core.dimensions_steps(resource, timeout))
        check_known(resource, amounts, known, "load", model is not None)
        request_id = self._core.next_id()
        handoff = Handoff()
        steps = self._core.acquire_steps(resource, amounts, lane, timeout, request_id, handoff, tenant, fail_if_late,
                                         model)
        if threading.current_thread() is not threading.main_thread():
            # Signals (KeyboardInterrupt) only reach the main thread: here nothing can cut the call.
            self._run(steps, handoff.stop)
            grant = handoff.take()
        else:
            grant = self._acquire_interruptibly(resource, request_id, handoff, steps)
        assert grant is not None
        permit = self._hold(grant, known)
        permit.model = model
        return permit

    def try_acquire(self, resource: str, load: Optional[Mapping[str, int]] = None, *, lane: Optional[str] = None,
                    timeout: Optional[float] = None, tenant: Optional[str] = None, fail_if_late: bool = False,
                    model: Optional[str] = None, **dimensions: int) -> Optional[Permit]:
        """:meth:`acquire`, returning None instead of raising :class:`AcquireTimeoutError`."""
        try:
            return self.acquire(resource, load, lane=lane, timeout=timeout, tenant=tenant, fail_if_late=fail_if_late,
                                model=model, **dimensions)
        except AcquireTimeoutError:
            return None

    def estimate(self, resource: str, load: Optional[Mapping[str, int]] = None, *, lane: Optional[str] = None,
                 tenant: Optional[str] = None, **dimensions: int) -> WaitEstimate:
        """When an acquire of this load (lane, tenant: as :meth:`acquire`'s) made now would be
        granted, as the coordinator estimates it, without queueing anything: the load its tenant
        has queued ahead, plus this one, at the tenant's share of the rate, within its cap, after
        any timed pause. ``wait`` in seconds; None with ``paused`` True while the resource is
        paused until resumed (only a resume can help). Same refusals as :meth:`acquire`; sent
        again to another node on a 503, as a report."""
        self._check_open()
        resource, amounts, lane, tenant = estimate_args(self._core, resource, load, dimensions, lane, tenant)
        return self._run(self._core.estimate_steps(resource, amounts, lane, tenant))

    def report_throttled(self, resource: str, retry_after: Optional[float] = None,
                         headers: Optional[Headers] = None) -> float:
        """The upstream answered 429: pauses the resource for every worker and empties its buckets.

        ``retry_after`` in seconds; None reads ``retry-after-ms``, then ``retry-after``, from
        ``headers`` (neither: the coordinator pauses 1 s). What remains and the provider's limits
        in ``headers`` are passed on too, as :meth:`report_headers` does. Returns the seconds the
        resource is now paused for.
        """
        self._check_open()
        resource, pause, remaining, limits = report_args(resource, retry_after, headers)
        return self._run(self._core.report_steps(resource, True, pause, remaining, limits))

    def report_headers(self, resource: str, headers: Headers) -> float:
        """Passes on an upstream answer's rate-limit headers (OpenAI's, Azure's, Anthropic's): what
        remains, which can only lower what the buckets hold, and the provider's limits
        (``x-ratelimit-limit-*``, ``anthropic-ratelimit-*-limit``), which a resource set with
        ``sluice limit set --learn PROVIDER`` takes as its rates. Returns the seconds the resource
        is paused for (0 when not paused)."""
        self._check_open()
        resource, _, remaining, limits = report_args(resource, None, headers)
        return self._run(self._core.report_steps(resource, False, None, remaining, limits))

    def close(self) -> None:
        """Stops lease renewal and closes the connections. Permits still held stay held until
        their leases run out: release them first."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=_core.CALL_BUDGET)
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- acquiring ----------------------------------------------------------------------------

    def _acquire_interruptibly(self, resource: str, request_id: str, handoff: Handoff, steps: Steps) -> Optional[Grant]:
        """Runs the long poll on a helper thread, so that a KeyboardInterrupt of the main thread
        leaves the call intact: the waiter is withdrawn by its request id and a grant that raced
        with the cancel arrives on the call, which gives it back (see :class:`Handoff`)."""
        done: "concurrent.futures.Future[None]" = concurrent.futures.Future()

        def run() -> None:
            try:
                self._run(steps, handoff.stop)
                done.set_result(None)
            except BaseException as e:  # handed to the caller
                done.set_exception(e)

        helper = threading.Thread(target=run, name=f"sluice-acquire-{request_id}", daemon=True)
        helper.start()
        try:
            done.result()
            return handoff.take()
        except Exception:
            raise
        except BaseException:
            self._withdraw(resource, request_id, handoff)
            helper.join(timeout=_core.CALL_BUDGET)  # a grant that raced is given back by the call
            raise

    def _withdraw(self, resource: str, request_id: str, handoff: Handoff) -> None:
        raced = handoff.abandon()
        if raced is not None:
            self._give_back(raced)
            return
        try:
            self._run(self._core.cancel_steps(resource, request_id))
        except SluiceError as e:
            log.warning("could not withdraw acquire %s on %r: %s; it stays in line until it ends, and a grant it"
                        " gets is given back", request_id, resource, e)

    def _give_back(self, grant: Grant) -> None:
        try:
            self._run(self._core.release_steps(grant.resource, grant.permit_id, None, unused=True))
        except SluiceError as e:
            log.warning("could not give back permit %s on %r: %s", grant.permit_id, grant.resource, e)

    # -- leases -------------------------------------------------------------------------------

    def _hold(self, grant: Grant, known: tuple) -> Permit:
        permit = Permit(self, grant, known)
        with self._cond:
            self._leases.add(permit, self._core.clock())
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_loop, name="sluice-lease-renewer", daemon=True)
                self._renewer.start()
            self._cond.notify_all()
        return permit

    def _forget(self, permit: PermitBase) -> None:
        with self._cond:
            self._leases.remove(permit)

    def _renew_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = self._core.clock()
                    due = self._leases.next_due()
                    if due is not None and due <= now:
                        break
                    self._cond.wait(None if due is None else due - now)
                if self._closed:
                    return
                permits = self._leases.due(self._core.clock())
            for p in permits:
                try:
                    lease = self._run(self._core.renew_steps(p.resource, p.id, min(_core.CALL_BUDGET, p.lease / 3)))
                except SluiceError as e:
                    log.warning("renewal of permit %s on %r failed: %s; trying again", p.id, p.resource, e)
                    with self._cond:
                        self._leases.retry(p, self._core.clock())
                    continue
                with self._cond:
                    renewed(self._leases, p, lease, self._core.clock())

    # -- running steps ------------------------------------------------------------------------

    def _run(self, steps: Steps, stop: Optional[threading.Event] = None) -> Any:
        """Runs a call's steps with httpx and sleeps (woken early by ``stop``)."""
        try:
            step = next(steps)
            while True:
                if isinstance(step, Sleep):
                    if stop is not None:
                        stop.wait(step.seconds)
                    else:
                        time.sleep(step.seconds)
                    step = steps.send(None)
                else:
                    step = steps.send(self._send(step))
        except StopIteration as end:
            return end.value

    def _send(self, call: Call) -> Union[Answer, Exception]:
        try:
            r = self._http.request(call.method, call.url + call.path, json=call.body,
                                   timeout=httpx.Timeout(call.timeout, connect=min(_core.CONNECT_TIMEOUT, call.timeout)))
            return Answer(r.status_code, r.headers, r.content)
        except httpx.TransportError as e:
            return e

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this sluice.Client is closed; make a new one")
