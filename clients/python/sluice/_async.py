"""The asyncio client: ``sluice.AsyncClient`` and its ``AsyncPermit``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Generator, Mapping, Optional, Sequence, Set, Union

import httpx

from . import _core
from ._core import (
    Answer, Call, Core, Grant, Handoff, Headers, Leases, PermitBase, Sleep, Steps, acquire_args, check_known,
    estimate_args, log, report_args, renewed,
)
from ._errors import AcquireTimeoutError, SluiceError, SluiceUnavailableError, WaitEstimate


def _settled(task: "asyncio.Future[Any]") -> None:
    """Marks a background task's failure as seen: whoever awaits it sees it, nobody else must."""
    if not task.cancelled():
        task.exception()


class AsyncPermit(PermitBase):
    """Capacity granted for one call, for asyncio. ``async with`` releases it however the block
    ends; its lease is renewed by the client's task until then."""

    def __init__(self, client: "AsyncClient", grant: Grant, known: tuple) -> None:
        super().__init__(client._core, grant, known)
        self._client = client

    async def release(self) -> bool:
        """Releases the permit, applying :meth:`settle` if it was called. Idempotent, never raises
        (a failed release is logged; the lease then runs out). Returns whether the coordinator
        still held it. Finishes even if the calling task is cancelled meanwhile."""
        ending = self._ending()
        if ending is None:
            return False
        self._client._forget(self)
        if self.expired:
            return False
        return await self._client._background(self._client._release(self.resource, self.id, ending[0],
                                                                     model=self.model))

    close = release

    async def __aenter__(self) -> "AsyncPermit":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.release()


class Acquiring:
    """What :meth:`AsyncClient.acquire` returns: await it for the permit, or use it in
    ``async with``, which acquires on entry and releases on exit."""

    def __init__(self, client: "AsyncClient", args: tuple) -> None:
        self._client = client
        self._args = args
        self._permit: Optional[AsyncPermit] = None

    def __await__(self) -> Generator[Any, None, AsyncPermit]:
        return self._client._acquire(*self._args).__await__()

    async def __aenter__(self) -> AsyncPermit:
        self._permit = await self._client._acquire(*self._args)
        return self._permit

    async def __aexit__(self, *exc: Any) -> None:
        if self._permit is not None:
            await self._permit.release()


class AsyncClient:
    """:class:`sluice.Client` for asyncio: the same arguments, the same calls, awaited.

    A task cancelled while it waits (``task.cancel()``, ``asyncio.wait_for``, ``asyncio.timeout``)
    withdraws its waiter at the coordinator by request id, and a grant that raced with the cancel
    is given back, before the ``CancelledError`` goes on. ``async with AsyncClient(...)`` closes it.
    """

    def __init__(self, urls: Union[str, Sequence[str], None] = None, *, api_key: Optional[str] = None,
                 timeout: float = _core.DEFAULT_TIMEOUT, lane: str = "default", tenant: Optional[str] = None,
                 max_connections: Optional[int] = None, verify: Any = True,
                 transport: Optional[httpx.AsyncBaseTransport] = None,
                 clock: Callable[[], float] = _core.monotonic) -> None:
        self._core = Core(urls, api_key, timeout, lane, clock, tenant)
        self._http = httpx.AsyncClient(headers=self._core.headers, verify=verify, transport=transport,
                                       limits=httpx.Limits(max_connections=max_connections,
                                                           max_keepalive_connections=64))
        self._leases = Leases()
        self._wake: Optional[asyncio.Event] = None
        self._renewer: Optional["asyncio.Task[None]"] = None
        self._tasks: Set["asyncio.Task[Any]"] = set()
        self._dimension_reads: dict = {}
        self._closed = False

    # -- the API ----------------------------------------------------------------------------

    def acquire(self, resource: str, load: Optional[Mapping[str, int]] = None, *, lane: Optional[str] = None,
                timeout: Optional[float] = None, tenant: Optional[str] = None, fail_if_late: bool = False,
                model: Optional[str] = None, **dimensions: int) -> Acquiring:
        """As :meth:`sluice.Client.acquire`; ``await`` it, or ``async with`` it. Bad arguments
        raise ValueError or TypeError here, before anything is sent."""
        self._check_open()
        return Acquiring(self, acquire_args(self._core, resource, load, dimensions, lane, timeout, tenant,
                                            fail_if_late, model))

    async def try_acquire(self, resource: str, load: Optional[Mapping[str, int]] = None, *,
                          lane: Optional[str] = None, timeout: Optional[float] = None,
                          tenant: Optional[str] = None, fail_if_late: bool = False,
                          model: Optional[str] = None, **dimensions: int) -> Optional[AsyncPermit]:
        """:meth:`acquire`, answering None instead of raising :class:`AcquireTimeoutError`."""
        try:
            return await self.acquire(resource, load, lane=lane, timeout=timeout, tenant=tenant,
                                      fail_if_late=fail_if_late, model=model, **dimensions)
        except AcquireTimeoutError:
            return None

    async def estimate(self, resource: str, load: Optional[Mapping[str, int]] = None, *,
                       lane: Optional[str] = None, tenant: Optional[str] = None, **dimensions: int) -> WaitEstimate:
        """As :meth:`sluice.Client.estimate`."""
        self._check_open()
        resource, amounts, lane, tenant = estimate_args(self._core, resource, load, dimensions, lane, tenant)
        return await self._run(self._core.estimate_steps(resource, amounts, lane, tenant))

    async def report_throttled(self, resource: str, retry_after: Optional[float] = None,
                               headers: Optional[Headers] = None) -> float:
        """As :meth:`sluice.Client.report_throttled`."""
        self._check_open()
        resource, pause, remaining, limits = report_args(resource, retry_after, headers)
        return await self._run(self._core.report_steps(resource, True, pause, remaining, limits))

    async def report_headers(self, resource: str, headers: Headers) -> float:
        """As :meth:`sluice.Client.report_headers`."""
        self._check_open()
        resource, _, remaining, limits = report_args(resource, None, headers)
        return await self._run(self._core.report_steps(resource, False, None, remaining, limits))

    async def aclose(self) -> None:
        """Waits for the withdrawals and releases still under way, stops lease renewal, closes
        the connections."""
        self._closed = True
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # -- acquiring ----------------------------------------------------------------------------

    async def _acquire(self, resource: str, load: _core.Load, lane: str, timeout: float,
                       tenant: Optional[str] = None, fail_if_late: bool = False,
                       model: Optional[str] = None) -> AsyncPermit:
        self._check_open()
        known = await self._dimensions(resource, timeout)
        check_known(resource, load, known, "load", model is not None)
        request_id = self._core.next_id()
        handoff = Handoff()
        # The long poll runs in a task of its own, so that cancelling the caller leaves it intact:
        # the grant that raced with the cancel arrives there and is given back (see Handoff).
        call = self._spawn(self._run(self._core.acquire_steps(resource, load, lane, timeout, request_id, handoff,
                                                              tenant, fail_if_late, model),
                                     handoff.stop))
        try:
            await asyncio.shield(call)
            grant = handoff.take()
        except asyncio.CancelledError:
            await self._background(self._withdraw(resource, request_id, handoff, call))
            raise
        assert grant is not None
        permit = self._hold(grant, known)
        permit.model = model
        return permit

    async def _withdraw(self, resource: str, request_id: str, handoff: Handoff, call: "asyncio.Task[Any]") -> None:
        raced = handoff.abandon()
        if raced is not None:
            await self._release(raced.resource, raced.permit_id, None, unused=True)
            return
        if not call.done():
            try:
                await self._run(self._core.cancel_steps(resource, request_id))
            except SluiceUnavailableError as e:
                log.warning("could not withdraw acquire %s on %r: %s; hanging up instead", request_id, resource, e)
                call.cancel()  # no node answers: the coordinator takes a hang-up as a cancel
            except SluiceError as e:
                log.warning("could not withdraw acquire %s on %r: %s; it stays in line until it ends, and a grant"
                            " it gets is given back", request_id, resource, e)
        # The call ends at once now (CANCELLED, or a raced grant it gives back itself).
        await asyncio.wait([call], timeout=_core.CALL_BUDGET)

    async def _release(self, resource: str, permit_id: str, usage: Optional[_core.Load], unused: bool = False,
                       model: Optional[str] = None) -> bool:
        try:
            return await self._run(self._core.release_steps(resource, permit_id, usage, unused, model))
        except SluiceError as e:
            log.warning("release of permit %s on %r failed: %s", permit_id, resource, e)
            return False

    async def _dimensions(self, resource: str, budget: float) -> tuple:
        """The resource's dimensions; one read at a time per resource, however many tasks ask."""
        pending = self._dimension_reads.get(resource)
        if pending is None:
            pending = self._spawn(self._run(self._core.dimensions_steps(resource, budget)))
            self._dimension_reads[resource] = pending
            pending.add_done_callback(lambda _: self._dimension_reads.pop(resource, None))
        return await asyncio.shield(pending)

    def _spawn(self, coro: Any) -> "asyncio.Task[Any]":
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _background(self, coro: Any) -> Any:
        """Runs ``coro`` to its end even if the awaiting task is cancelled meanwhile (that
        cancel then goes on once it is done)."""
        task = self._spawn(coro)
        cancelled = False
        while True:
            try:
                result = await asyncio.shield(task)
                break
            except asyncio.CancelledError:
                if task.done():
                    raise
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError()
        return result

    # -- leases -------------------------------------------------------------------------------

    def _hold(self, grant: Grant, known: tuple) -> AsyncPermit:
        permit = AsyncPermit(self, grant, known)
        self._leases.add(permit, self._core.clock())
        if self._renewer is None or self._renewer.done():
            self._wake = asyncio.Event()
            self._renewer = asyncio.ensure_future(self._renew_loop())
        assert self._wake is not None
        self._wake.set()
        return permit

    def _forget(self, permit: PermitBase) -> None:
        self._leases.remove(permit)

    async def _renew_loop(self) -> None:
        assert self._wake is not None
        while not self._closed:
            now = self._core.clock()
            due = self._leases.next_due()
            if due is None or due > now:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), None if due is None else due - now)
                except asyncio.TimeoutError:
                    pass
                continue
            permits = self._leases.due(now)
            await asyncio.gather(*(self._renew(p) for p in permits))

    async def _renew(self, p: PermitBase) -> None:
        try:
            lease = await self._run(self._core.renew_steps(p.resource, p.id, min(_core.CALL_BUDGET, p.lease / 3)))
        except SluiceError as e:
            log.warning("renewal of permit %s on %r failed: %s; trying again", p.id, p.resource, e)
            self._leases.retry(p, self._core.clock())
            return
        renewed(self._leases, p, lease, self._core.clock())

    # -- running steps ------------------------------------------------------------------------

    async def _run(self, steps: Steps, stop: Optional[threading.Event] = None) -> Any:
        """Runs a call's steps with httpx.AsyncClient and asyncio.sleep."""
        try:
            step = next(steps)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = steps.send(None)
                else:
                    step = steps.send(await self._send(step))
        except StopIteration as end:
            return end.value

    async def _send(self, call: Call) -> Union[Answer, Exception]:
        try:
            r = await self._http.request(call.method, call.url + call.path, json=call.body,
                                         timeout=httpx.Timeout(call.timeout,
                                                               connect=min(_core.CONNECT_TIMEOUT, call.timeout)))
            return Answer(r.status_code, r.headers, r.content)
        except httpx.TransportError as e:
            return e

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this sluice.AsyncClient is closed; make a new one")
