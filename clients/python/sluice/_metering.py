"""What the drop-in transports (``sluice.openai``, ``sluice.anthropic``) share: token estimates,
the reading of usage from an answer or from a stream, and the transports themselves.

A transport sits under an httpx client. For a request its API recognises (a :class:`Plan`), it
acquires the plan's estimate, forwards the request to the wrapped transport, reports the
upstream's rate-limit headers (and a 429's Retry-After) to the coordinator, and settles with the
answer's ``usage`` when the answer has been read: at once for a JSON answer, when the stream
ends or is closed for an event stream. Any other request passes through untouched.

Exactly one settle-or-release happens per permit (:class:`Metered`), on every path: the answer
read, the stream read to its end, the stream closed early, the upstream failing, the caller's
task cancelled.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import zlib
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import httpx

from ._args import _MODEL, PRICED_TOKENS, Load
from ._async import AsyncClient, AsyncPermit
from ._errors import SluiceError
from ._sync import Client, Permit

log = logging.getLogger("sluice")

#: A request header the transports read and strip: the lane of this one call.
LANE_HEADER = "x-sluice-lane"
#: Characters per token of the rule used when tiktoken is not importable.
CHARS_PER_TOKEN = 4

Usage = Callable[[Any], Load]


# ---------------------------------------------------------------------------------------------
# Token estimates


def _tiktoken_counter() -> Optional[Callable[[str], int]]:
    try:
        import tiktoken  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        encoding = tiktoken.get_encoding("o200k_base")
    except Exception as e:  # no cached vocabulary and no network: fall back, once, with the reason
        log.warning("tiktoken is importable but its o200k_base vocabulary is not (%s); token estimates use the"
                    " rule of %d characters a token", e, CHARS_PER_TOKEN)
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def char_rule(text: str) -> int:
    """The estimate without tiktoken: one token per 4 characters, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


_counter: Optional[Callable[[str], int]] = None
_counter_lock = threading.Lock()


def count_tokens(text: str) -> int:
    """Tokens of ``text``: tiktoken's ``o200k_base`` when importable, else :func:`char_rule`."""
    global _counter
    if _counter is None:
        with _counter_lock:
            if _counter is None:
                _counter = _tiktoken_counter() or char_rule
    return _counter(text) if text else 0


def text_of(value: Any) -> str:
    """The text a request field carries: a string as it is, text parts' ``text`` joined, anything
    else (images, tool calls, token arrays) as its JSON, which the estimate then counts by size."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def budget(body: Mapping[str, Any], *fields: str) -> Optional[int]:
    """The first of ``fields`` that is a positive integer, else None."""
    for f in fields:
        v = body.get(f)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def count(n: Any, default: int = 1) -> int:
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else default


def amount(usage: Any, *path: str, optional: bool = False) -> int:
    """An integer field of a usage block, or ValueError naming what is wrong."""
    if not isinstance(usage, dict):
        raise ValueError(f"usage is {usage!r}, not an object")
    v = usage
    for p in path:
        v = v.get(p) if isinstance(v, dict) else None
    if v is None and optional:
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"usage.{'.'.join(path)} is {v!r}, not a count of tokens")
    return v


# ---------------------------------------------------------------------------------------------
# What one call costs


class Plan:
    """A recognised call: what to acquire, and how to read what it used.

    ``estimate`` holds every dimension the API counts; the transport keeps those the resource's
    limit has. ``settle`` turns the answer's usage block into a load (ValueError when malformed).
    ``stream_usage`` reads one event of a stream: the usage block it carries, or None.
    """

    def __init__(self, estimate: Load, settle: Usage, stream_usage: Callable[[Any], Optional[Any]]) -> None:
        self.estimate = estimate
        self.settle = settle
        self.stream_usage = stream_usage
        #: The request's model: on a limit that counts ``usd`` the coordinator prices the call's
        #: ``input_tokens`` and ``output_tokens`` at it (``sluice price set``).
        self.model: Optional[str] = None

    def with_model(self, body: Dict[str, Any]) -> "Plan":
        model = body.get("model")
        self.model = model if isinstance(model, str) and _MODEL.fullmatch(model) else None
        return self


#: Headers of what remains or of the provider's limits: an answer with any is reported.
_COUNTS = ("x-ratelimit-remaining-", "x-ratelimit-limit-", "anthropic-ratelimit-")


class Api:
    """One upstream API: which requests it meters and how it reads rate-limit headers."""

    name = "upstream"

    def meters(self, path: str) -> bool:
        """Whether a POST to ``path`` is a call this API meters (its body is read only then)."""
        raise NotImplementedError

    def plan(self, path: str, body: Dict[str, Any]) -> Plan:
        raise NotImplementedError

    def report(self, headers: httpx.Headers) -> Tuple[Optional[Dict[str, str]], bool]:
        """The headers to report (``retry-after``/``retry-after-ms``, what remains and the
        provider's limits, under names the client reads: ``x-ratelimit-remaining|limit-*``,
        ``anthropic-ratelimit-*``), or None when there is nothing; and whether a 429 of these
        headers is a pause (it says when to retry)."""
        raise NotImplementedError

    def authorize(self, request: httpx.Request, key: str) -> None:
        """Puts a pool member's API key on the request, where this API reads it."""
        raise NotImplementedError


class Stream:
    """Reads the events of a server-sent event stream as its bytes go by: the last usage block
    seen, merged (Anthropic sends input tokens first and output tokens last)."""

    def __init__(self, plan: Plan, encoding: Optional[str]) -> None:
        self._plan = plan
        self._buffer = b""
        self.usage: Optional[Dict[str, Any]] = None
        self.problem: Optional[str] = None
        enc = (encoding or "identity").strip().lower()
        self._inflate = None
        if enc in ("gzip", "deflate"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)
        elif enc != "identity":
            self.problem = f"the stream is {enc}-encoded, which the transport does not read"

    def feed(self, chunk: bytes) -> None:
        if self.problem is not None:
            return
        if self._inflate is not None:
            chunk = self._inflate.decompress(chunk)
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line.rstrip(b"\r"))

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            self.problem = f"an event of the stream is not JSON: {data[:80]!r}"
            return
        found = self._plan.stream_usage(event)
        if found is None:
            return
        if not isinstance(found, dict):
            self.problem = f"a usage block of the stream is {found!r}, not an object"
            return
        self.usage = {**(self.usage or {}), **{k: v for k, v in found.items() if v is not None}}


# ---------------------------------------------------------------------------------------------
# One metered call


class Metered:
    """One call's permit and what ends it: a settle with what the call used, or a release as
    granted when that is unknown. Ended once (:meth:`first`), whichever path gets there first."""

    def __init__(self, transport: "_Base", plan: Plan, permit: Union[Permit, AsyncPermit]) -> None:
        self.transport = transport
        self.plan = plan
        self.permit = permit
        self._ended = False
        self._lock = threading.Lock()

    def first(self) -> bool:
        with self._lock:
            if self._ended:
                return False
            self._ended = True
            return True

    def settle_with(self, usage: Any, where: str) -> None:
        """Settles the permit from a usage block; a malformed one keeps the estimate, logged once."""
        if usage is None:
            log.debug("%s: %s carried no usage; permit %s keeps its estimate", self.transport.api.name, where,
                      self.permit.id)
            return
        try:
            used = self.plan.settle(usage)
        except (ValueError, TypeError, AttributeError) as e:
            self.transport.malformed(f"{where}: {e}")
            return
        known = self.transport.known(self.permit)
        priced = getattr(self.permit, "model", None) is not None
        used = {k: v for k, v in used.items() if k in known or (priced and k in PRICED_TOKENS)}
        if used:
            self.permit.settle(used)


class _Base:
    def __init__(self, api: Api, client: Any, resource: str, lane: Optional[str], timeout: Optional[float],
                 keys: Optional[Dict[str, str]] = None) -> None:
        self.api = api
        self.client = client
        #: The resource or pool acquired on.
        self.resource = resource
        #: For a pool: each member's API key; the call goes upstream with the granting member's.
        self.keys = keys
        self.lane = lane
        self.timeout = timeout
        self._warned = False
        self._warn_lock = threading.Lock()
        #: How many times the transport fell back to the estimate (tests, logs).
        self.malformed_count = 0

    def malformed(self, what: str) -> None:
        with self._warn_lock:
            self.malformed_count += 1
            first = not self._warned
            self._warned = True
        if first:
            log.warning("%s transport for %r: %s; the permit keeps its estimate (this is logged once per transport;"
                        " later ones at debug level)", self.api.name, self.resource, what)
        else:
            log.debug("%s transport for %r: %s; the permit keeps its estimate", self.api.name, self.resource, what)

    def known(self, permit: Any) -> Tuple[str, ...]:
        if self.keys is not None:
            cached = self.client._core._dimensions.get(permit.member)
            return tuple(cached[1] or ()) + ("requests",) if cached is not None else ("requests",)
        return tuple(permit._known or ()) + ("requests",)

    def member_key(self, permit: Any) -> str:
        """The granting member's key; a member without one is a mistake in the transport's keys."""
        key = self.keys.get(permit.member) if self.keys is not None else None
        if key is None:
            raise ValueError(f"pool {self.resource!r} granted member {permit.member!r}, but the transport has no key"
                             f" for it (it has {', '.join(sorted(self.keys or {}))}): add it to keys=")
        return key

    @staticmethod
    def union(dimensions: List[Optional[Tuple[str, ...]]]) -> Tuple[str, ...]:
        """The dimensions any member's limit has: a pool's call asks for each."""
        out: List[str] = []
        for names in dimensions:
            out += [n for n in names or () if n not in out]
        return tuple(out)

    def candidate(self, request: httpx.Request) -> bool:
        """A POST of JSON to an endpoint the API meters: only then is the body read."""
        ctype = request.headers.get("content-type", "").lower()
        return request.method == "POST" and (not ctype or "json" in ctype) and self.api.meters(request.url.path)

    def recognise(self, request: httpx.Request, body: bytes) -> Optional[Plan]:
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        return self.api.plan(request.url.path, doc) if isinstance(doc, dict) else None

    def lane_of(self, request: httpx.Request) -> Optional[str]:
        lane = request.headers.get(LANE_HEADER)
        if lane is not None:
            del request.headers[LANE_HEADER]
            return lane.strip()
        return self.lane

    @staticmethod
    def model(plan: Plan, known: Tuple[str, ...]) -> Optional[str]:
        """The model to name on the acquire: the request's, when the limit counts money."""
        return plan.model if "usd" in known else None

    def load(self, plan: Plan, known: Tuple[str, ...]) -> Load:
        priced = self.model(plan, known) is not None
        return {k: max(0, v) for k, v in plan.estimate.items()
                if k == "requests" or k in known or (priced and k in PRICED_TOKENS)}

    def settle_json(self, call: Metered, response: httpx.Response) -> None:
        try:
            doc = response.json()
        except ValueError:
            self.malformed("the answer is not JSON")
            return
        if not isinstance(doc, dict):
            self.malformed(f"the answer is {type(doc).__name__}, not an object")
            return
        call.settle_with(doc.get("usage"), "the answer")

    def reporting(self, response: httpx.Response) -> Optional[Tuple[bool, Dict[str, str]]]:
        """What to tell the coordinator about an answer: (throttled, headers), or None."""
        headers, pause = self.api.report(response.headers)
        if response.status_code == 429 and pause and headers is not None:
            return True, headers
        if headers is not None and any(k.startswith(_COUNTS) for k in headers):
            return False, headers
        return None


def _is_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").lower().startswith("text/event-stream")


# ---------------------------------------------------------------------------------------------
# The sync transport


class SyncTransport(_Base, httpx.BaseTransport):
    """An ``httpx.BaseTransport`` metering the calls its API recognises through a :class:`sluice.Client`."""

    def __init__(self, api: Api, client: Client, resource: str, lane: Optional[str], timeout: Optional[float],
                 wrapped: Optional[httpx.BaseTransport], keys: Optional[Dict[str, str]] = None) -> None:
        super().__init__(api, client, resource, lane, timeout, keys)
        self.wrapped = wrapped if wrapped is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        plan = self.recognise(request, request.read()) if self.candidate(request) else None
        if plan is None:
            return self.wrapped.handle_request(request)
        lane = self.lane_of(request)
        budget = self.timeout or 30.0
        if self.keys is None:
            known = self.client._run(self.client._core.dimensions_steps(self.resource, budget))
        else:
            known = self.union([self.client._run(self.client._core.dimensions_steps(m, budget)) for m in self.keys])
        permit = self.client.acquire(self.resource, self.load(plan, known), lane=lane, timeout=self.timeout,
                                     model=self.model(plan, known))
        call = Metered(self, plan, permit)
        try:
            if self.keys is not None:
                self.api.authorize(request, self.member_key(permit))
            response = self.wrapped.handle_request(request)
            self._report(response, permit.member)
        except BaseException:
            self._end(call)
            raise
        if response.status_code != 200:
            self._end(call)
            return response
        if _is_stream(response):
            response.stream = _SyncStream(self, call, response.stream, Stream(plan, response.headers.get("content-encoding")))
            return response
        try:
            response.read()
            self.settle_json(call, response)
        finally:
            self._end(call)
        return response

    def _report(self, response: httpx.Response, member: str) -> None:
        what = self.reporting(response)
        if what is None:
            return
        try:
            # On the member that granted (the resource itself, unless a pool): only it pauses.
            if what[0]:
                self.client.report_throttled(member, headers=what[1])
            else:
                self.client.report_headers(member, what[1])
        except SluiceError as e:
            log.warning("%s transport: could not report the upstream's headers for %r: %s", self.api.name,
                        member, e)

    def _end(self, call: Metered, stream: Optional[Stream] = None, finished: bool = False) -> None:
        if not call.first():
            return
        if stream is not None and finished:
            if stream.problem is not None:
                self.malformed(stream.problem)
            else:
                call.settle_with(stream.usage, "the stream")
        call.permit.release()

    def close(self) -> None:
        self.wrapped.close()


class _SyncStream(httpx.SyncByteStream):
    def __init__(self, owner: SyncTransport, call: Metered, inner: Any, reader: Stream) -> None:
        self._owner, self._call, self._inner, self._reader = owner, call, inner, reader
        self._finished = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._reader.feed(chunk)
            yield chunk
        self._finished = True
        self._owner._end(self._call, self._reader, True)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._owner._end(self._call, self._reader, self._finished)


# ---------------------------------------------------------------------------------------------
# The asyncio transport


class AsyncTransport(_Base, httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` metering the calls its API recognises through a :class:`sluice.AsyncClient`."""

    def __init__(self, api: Api, client: AsyncClient, resource: str, lane: Optional[str],
                 timeout: Optional[float], wrapped: Optional[httpx.AsyncBaseTransport],
                 keys: Optional[Dict[str, str]] = None) -> None:
        super().__init__(api, client, resource, lane, timeout, keys)
        self.wrapped = wrapped if wrapped is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        plan = self.recognise(request, await request.aread()) if self.candidate(request) else None
        if plan is None:
            return await self.wrapped.handle_async_request(request)
        lane = self.lane_of(request)
        budget = self.timeout or 30.0
        if self.keys is None:
            known = await self.client._dimensions(self.resource, budget)
        else:
            known = self.union([await self.client._dimensions(m, budget) for m in self.keys])
        permit = await self.client.acquire(self.resource, self.load(plan, known), lane=lane, timeout=self.timeout,
                                           model=self.model(plan, known))
        call = Metered(self, plan, permit)
        try:
            if self.keys is not None:
                self.api.authorize(request, self.member_key(permit))
            response = await self.wrapped.handle_async_request(request)
            await self._report(response, permit.member)
        except BaseException:
            await self._end(call)
            raise
        if response.status_code != 200:
            await self._end(call)
            return response
        if _is_stream(response):
            response.stream = _AsyncStream(self, call, response.stream,
                                           Stream(plan, response.headers.get("content-encoding")))
            return response
        try:
            await response.aread()
            self.settle_json(call, response)
        finally:
            await self._end(call)
        return response

    async def _report(self, response: httpx.Response, member: str) -> None:
        what = self.reporting(response)
        if what is None:
            return
        try:
            if what[0]:
                await self.client.report_throttled(member, headers=what[1])
            else:
                await self.client.report_headers(member, what[1])
        except SluiceError as e:
            log.warning("%s transport: could not report the upstream's headers for %r: %s", self.api.name,
                        member, e)

    async def _end(self, call: Metered, stream: Optional[Stream] = None, finished: bool = False) -> None:
        if not call.first():
            return
        if stream is not None and finished:
            if stream.problem is not None:
                self.malformed(stream.problem)
            else:
                call.settle_with(stream.usage, "the stream")
        await call.permit.release()

    async def aclose(self) -> None:
        await self.wrapped.aclose()


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, owner: AsyncTransport, call: Metered, inner: Any, reader: Stream) -> None:
        self._owner, self._call, self._inner, self._reader = owner, call, inner, reader
        self._finished = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._reader.feed(chunk)
            yield chunk
        self._finished = True
        await self._owner._end(self._call, self._reader, True)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            await self._owner._end(self._call, self._reader, self._finished)


def make(api: Api, client: Any, resource: str, lane: Optional[str], timeout: Optional[float],
         wrapped: Any, pool: Optional[str] = None,
         keys: Optional[Mapping[str, str]] = None) -> Union[SyncTransport, AsyncTransport]:
    """The transport for ``client``'s kind, its arguments checked before any call."""
    from ._args import check_lane, check_resource, check_timeout

    members = pool_keys(pool, keys)
    resource = check_resource(pool if pool is not None else resource)
    if lane is not None:
        lane = check_lane(lane)
    if timeout is not None:
        timeout = check_timeout(timeout)
    if isinstance(client, Client):
        if wrapped is not None and not isinstance(wrapped, httpx.BaseTransport):
            raise TypeError(f"wrapped must be an httpx.BaseTransport for a sluice.Client, not {type(wrapped).__name__}")
        return SyncTransport(api, client, resource, lane, timeout, wrapped, members)
    if isinstance(client, AsyncClient):
        if wrapped is not None and not isinstance(wrapped, httpx.AsyncBaseTransport):
            raise TypeError("wrapped must be an httpx.AsyncBaseTransport for a sluice.AsyncClient, not"
                            f" {type(wrapped).__name__}")
        return AsyncTransport(api, client, resource, lane, timeout, wrapped, members)
    raise TypeError(f"client must be a sluice.Client (for httpx.Client) or a sluice.AsyncClient (for"
                    f" httpx.AsyncClient), not {type(client).__name__}")


def pool_keys(pool: Optional[str], keys: Optional[Mapping[str, str]]) -> Optional[Dict[str, str]]:
    """``keys`` checked: a non-empty map of member name to API key, given with ``pool`` only."""
    from ._args import check_resource

    if pool is None:
        if keys is not None:
            raise ValueError("keys= without pool=: name the pool whose members the keys are for")
        return None
    if not isinstance(keys, Mapping) or not keys:
        raise ValueError(f"pool={pool!r} without keys: give keys={{member: api_key, ...}}, one per member of the pool"
                         " (the call goes upstream with the key of the member that granted)")
    out: Dict[str, str] = {}
    for member, key in keys.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"keys[{member!r}] is {type(key).__name__ if not isinstance(key, str) else 'empty'}:"
                             " give the member's API key as a string")
        out[check_resource(member)] = key
    return out
