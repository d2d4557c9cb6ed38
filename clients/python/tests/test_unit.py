"""The client against a scripted coordinator (httpx.MockTransport): arguments refused before
anything is sent, every error answer mapped, malformed answers, failover with the same request
id, late grants on a fake clock, cancellation that withdraws by request id and gives a raced
grant back. No coordinator needed; tests/test_coordinator.py runs against a real one."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from typing import Any, Callable, Dict, List

import httpx
import pytest

import sluice
from sluice import _core

LIMIT = {"name": "r", "limit": {"rates": [{"dimension": "requests"}, {"dimension": "tokens"}]}}


def grant(permit: str = "cg.1", **extra: Any) -> Dict[str, Any]:
    doc = {"permitId": permit, "resource": "r", "granted": {"requests": 1}, "leaseSeconds": 30.0,
           "waitedSeconds": 0.0, "answeredAfterSeconds": 0.0, "freshForSeconds": 0.5}
    doc.update(extra)
    return doc


def error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "status": status, "message": message}})


class Coordinator:
    """A scripted coordinator: ``answers`` maps a path suffix to a function of the request."""

    def __init__(self, **answers: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = answers
        self.calls: List[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if request.method == "GET" and request.url.path == "/v1/resources/r":
            return httpx.Response(200, json=LIMIT)
        for suffix, answer in self.answers.items():
            if request.url.path.endswith("/" + suffix):
                return answer(request)
        return error(404, "NOT_FOUND", "no such endpoint")

    def sent(self, suffix: str) -> List[Dict[str, Any]]:
        return [json.loads(c.content or b"{}") for c in self.calls if c.url.path.endswith("/" + suffix)]


def client(coordinator: Coordinator, urls: str = "http://a:1", **kw: Any) -> sluice.Client:
    return sluice.Client(urls, api_key="slk_test", transport=httpx.MockTransport(coordinator), **kw)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, kind, words", [
    ({"tokens": -1}, ValueError, ["tokens=-1 is negative", "settle"]),
    ({"tokens": "12"}, TypeError, ["'12' is not a whole number", "tokens=1200"]),
    ({"tokens": 1.5}, TypeError, ["1.5 is not a whole number"]),
    ({"tokens": True}, TypeError, ["not a whole number"]),
    ({"tokenz": 5}, ValueError, ["dimension 'tokenz'", "limits only requests, tokens", "timeout= and tenant="]),
    ({"tenant": "no spaces"}, ValueError, ["tenant 'no spaces' is invalid", "A-Z a-z 0-9 . _ : -", "'search'"]),
    ({"tenant": ""}, ValueError, ["tenant '' is invalid"]),
    ({"tenant": 7}, ValueError, ["tenant 7 is invalid"]),
    ({"timout": 5}, ValueError, ["dimension 'timout'"]),
    ({"load": {"tokens": 1}, "tokens": 2}, ValueError, ["twice"]),
    ({"load": {"to kens": 1}}, ValueError, ["'to kens' is invalid", "A-Z a-z 0-9"]),
    ({"lane": "fast"}, ValueError, ["lane 'fast' is unknown", "'interactive', 'default' or 'batch'"]),
    ({"timeout": -1}, ValueError, ["timeout=-1", ">= 0"]),
    ({"timeout": "30s"}, TypeError, ["seconds as a number"]),
])
def test_a_bad_load_or_option_is_refused_before_the_acquire_is_sent(kwargs, kind, words) -> None:
    c = Coordinator(acquire=lambda r: httpx.Response(200, json=grant()))
    with client(c) as cl:
        with pytest.raises(kind) as e:
            cl.acquire("r", **kwargs)
    for w in words:
        assert w in str(e.value)
    assert c.sent("acquire") == []


def test_the_tenant_is_sent_with_the_acquire_and_the_clients_default_fills_in() -> None:
    c = Coordinator(acquire=lambda r: httpx.Response(200, json=grant()), release=lambda r: httpx.Response(200, json={"released": True}))
    with client(c) as cl:
        cl.acquire("r").release()
        cl.acquire("r", tenant="search").release()
    with client(c, tenant="batch-jobs") as cl:
        cl.acquire("r").release()
        cl.acquire("r", tenant="search").release()
    assert [b.get("tenant") for b in c.sent("acquire")] == [None, "search", "batch-jobs", "search"]
    assert "tenant" not in c.sent("acquire")[0], "no tenant: the field is left out (the tenant 'default')"
    with pytest.raises(ValueError, match="tenant 'a/b' is invalid"):
        sluice.Client("http://a:1", tenant="a/b")
    with pytest.raises(ValueError, match="tenant 'a/b' is invalid"):
        sluice.AsyncClient("http://a:1", tenant="a/b")


def test_the_async_client_sends_the_tenant_too() -> None:
    c = Coordinator(acquire=lambda r: httpx.Response(200, json=grant()), release=lambda r: httpx.Response(200, json={"released": True}))

    async def run() -> None:
        async with sluice.AsyncClient("http://a:1", api_key="slk_test", tenant="ads",
                                      transport=httpx.MockTransport(c)) as cl:
            await (await cl.acquire("r")).release()
            await (await cl.acquire("r", tenant="search")).release()

    asyncio.run(run())
    assert [b.get("tenant") for b in c.sent("acquire")] == ["ads", "search"]


def test_bad_resource_names_urls_and_keys_are_refused_at_once() -> None:
    with client(Coordinator()) as cl:
        with pytest.raises(ValueError, match="resource name 'a b' is invalid"):
            cl.acquire("a b")
        with pytest.raises(ValueError, match="retry_after=-1"):
            cl.report_throttled("r", retry_after=-1)
    for bad in ("", "127.0.0.1:7421", "ftp://h:1", "http://h:1/v1", "http://h:x", "http://a:1,,http://b:2"):
        with pytest.raises(ValueError, match="coordinator URL"):
            sluice.Client(bad)
    with pytest.raises(ValueError, match="api_key"):
        sluice.Client("http://a:1", api_key=" ")


def test_settle_is_checked_before_the_release_is_sent() -> None:
    c = Coordinator(acquire=lambda r: httpx.Response(200, json=grant()),
                    release=lambda r: httpx.Response(200, json={"released": True}))
    with client(c) as cl:
        with cl.acquire("r", tokens=5) as p:
            with pytest.raises(ValueError, match="'tokenz'"):
                p.settle(tokenz=3)
            with pytest.raises(ValueError, match="negative"):
                p.settle(tokens=-3)
            p.settle(tokens=3)
        with pytest.raises(RuntimeError, match="already released"):
            p.settle(tokens=4)
    assert c.sent("release") == [{"usage": {"tokens": 3}}]
    assert p.release() is False  # idempotent


# -- answers mapped to exceptions ----------------------------------------------------------------


@pytest.mark.parametrize("answer, kind, code", [
    (error(400, "INVALID_ARGUMENT", "load tokens=9 can never fit"), sluice.InvalidRequestError, "INVALID_ARGUMENT"),
    (error(401, "UNAUTHENTICATED", "this coordinator requires an API key"), sluice.AuthenticationError,
     "UNAUTHENTICATED"),
    (error(403, "PERMISSION_DENIED", "may use resources 'x'"), sluice.PermissionDeniedError, "PERMISSION_DENIED"),
    (error(404, "NOT_FOUND", "'r' has no limit"), sluice.ResourceNotFoundError, "NOT_FOUND"),
    (error(408, "DEADLINE_EXCEEDED", "not granted within 1s"), sluice.AcquireTimeoutError, "DEADLINE_EXCEEDED"),
    (error(405, "METHOD_NOT_ALLOWED", "use POST"), sluice.SluiceError, "METHOD_NOT_ALLOWED"),
    (error(500, "INTERNAL", "internal error"), sluice.SluiceError, "INTERNAL"),
    (httpx.Response(413), sluice.InvalidRequestError, None),
])
def test_every_error_answer_maps_to_its_exception_with_the_coordinators_words(answer, kind, code) -> None:
    c = Coordinator(acquire=lambda r: answer)
    with client(c) as cl, pytest.raises(kind) as e:
        cl.acquire("r", timeout=1)
    assert type(e.value) is kind
    assert e.value.status == answer.status_code
    assert e.value.code == code
    assert "acquire on resource 'r' failed" in str(e.value)
    if code:
        assert e.value.server_message and e.value.server_message.rstrip(".") in str(e.value)


def test_a_full_waiting_room_carries_retry_after_and_try_acquire_answers_none_on_timeout() -> None:
    room = Coordinator(acquire=lambda r: httpx.Response(
        429, headers={"Retry-After": "3"}, json={"error": {"code": "RESOURCE_EXHAUSTED", "status": 429,
                                                           "message": "the waiting room is full"}}))
    with client(room) as cl, pytest.raises(sluice.WaitingRoomFullError) as e:
        cl.acquire("r")
    assert e.value.retry_after == 3.0
    late = Coordinator(acquire=lambda r: error(408, "DEADLINE_EXCEEDED", "not granted"))
    with client(late) as cl:
        assert cl.try_acquire("r", timeout=0) is None
        assert cl._core.counts["r"]["timedOut"] == 1


def test_fail_if_late_is_sent_and_its_refusal_carries_the_estimate_and_is_no_timeout() -> None:
    said = ("not granted in time: the estimated wait on 'r' is 4.2 s, past the 2 s timeout; nothing was queued."
            " Raise the timeout to at least 4.2 s, or drop failIfLate to queue anyway")
    late = Coordinator(acquire=lambda r: httpx.Response(408, json={"error": {
        "code": "DEADLINE_EXCEEDED", "status": 408, "message": said,
        "estimate": {"waitSeconds": 4.2, "paused": False}}}))
    with client(late) as cl, pytest.raises(sluice.AcquireTimeoutError) as e:
        cl.acquire("r", timeout=2, fail_if_late=True)
    assert e.value.estimate == sluice.WaitEstimate(wait=4.2, paused=False)
    assert str(e.value) == f"acquire on resource 'r' failed: {said.rstrip('.')}. Nothing was granted"
    assert late.sent("acquire")[0]["failIfLate"] is True
    assert len(late.sent("acquire")) == 1, "an answer, never sent again"
    assert "r" not in cl._core.counts, "refused before queueing: not a timeout at the coordinator"
    plain = Coordinator(acquire=lambda r: error(408, "DEADLINE_EXCEEDED", "not granted"))
    with client(plain) as cl, pytest.raises(sluice.AcquireTimeoutError) as e:
        cl.acquire("r", timeout=0)
    assert e.value.estimate is None and "failIfLate" not in plain.sent("acquire")[0]
    with client(plain) as cl, pytest.raises(TypeError, match="fail_if_late must be True or False"):
        cl.acquire("r", fail_if_late="yes")


def test_estimate_sends_the_load_lane_and_tenant_and_reads_wait_or_paused() -> None:
    answers = iter([httpx.Response(503, json={"error": {"code": "UNAVAILABLE", "status": 503, "message": "stopping"}}),
                    httpx.Response(200, json={"resource": "r", "waitSeconds": 1.5, "paused": False}),
                    httpx.Response(200, json={"resource": "r", "waitSeconds": None, "paused": True})])
    c = Coordinator(estimate=lambda r: next(answers))
    with client(c, "http://a:1,http://b:2", tenant="search", lane="batch") as cl:
        est = cl.estimate("r", tokens=10)
        assert est == sluice.WaitEstimate(wait=1.5, paused=False) and est.fits(1.5) and not est.fits(1.4)
        assert c.sent("estimate")[1] == {"load": {"tokens": 10}, "lane": "batch", "tenant": "search"}
        assert {str(x.url.host) for x in c.calls} == {"a", "b"}, "a 503 is sent again to the other node"
        paused = cl.estimate("r", lane="interactive", tenant="ads")
        assert paused == sluice.WaitEstimate(wait=None, paused=True) and not paused.fits(1e9)
        assert c.sent("estimate")[2] == {"load": {}, "lane": "interactive", "tenant": "ads"}
        with pytest.raises(ValueError, match="lane 'urgent' is unknown"):
            cl.estimate("r", lane="urgent")
    bad = Coordinator(estimate=lambda r: httpx.Response(200, json={"waitSeconds": 1}))
    with client(bad) as cl, pytest.raises(sluice.MalformedAnswerError, match="not an estimate"):
        cl.estimate("r")


def test_async_estimate_and_fail_if_late() -> None:
    c = Coordinator(estimate=lambda r: httpx.Response(200, json={"resource": "r", "waitSeconds": 0.0, "paused": False}),
                    acquire=lambda r: httpx.Response(200, json=grant()), release=lambda r: httpx.Response(
                        200, json={"released": True}))

    async def main() -> None:
        async with sluice.AsyncClient("http://a:1", transport=httpx.MockTransport(c)) as cl:
            assert await cl.estimate("r", tokens=5) == sluice.WaitEstimate(wait=0.0, paused=False)
            async with cl.acquire("r", fail_if_late=True, timeout=1) as p:
                assert p.granted == {"requests": 1}

    asyncio.run(main())
    assert c.sent("acquire")[0]["failIfLate"] is True


@pytest.mark.parametrize("answer, words", [
    (httpx.Response(200, text="<html>hello</html>"), ["is not JSON", "<html>", "HTTP port (default 7421)"]),
    (httpx.Response(200, json={"permit": "x"}), ["is not a grant", "permitId"]),
    (httpx.Response(200, json={"permitId": "x", "granted": {"requests": "1"}, "leaseSeconds": 1}),
     ["is not a grant"]),
    (httpx.Response(404, text="Not Found"), ["not a Sluice error answer", "Not Found"]),
    (httpx.Response(200, json=[1]), ["not a JSON object"]),
])
def test_a_malformed_answer_raises_an_exception_naming_it(answer, words) -> None:
    c = Coordinator(acquire=lambda r: answer)
    with client(c) as cl, pytest.raises(sluice.MalformedAnswerError) as e:
        cl.acquire("r", timeout=1)
    for w in words:
        assert w in str(e.value)


# -- failover, down coordinators ---------------------------------------------------------------


def test_a_failing_node_is_left_for_the_next_with_the_same_request_id() -> None:
    seen: List[str] = []

    def acquire(r: httpx.Request) -> httpx.Response:
        seen.append(r.url.host)
        if r.url.host == "a":
            return error(503, "UNAVAILABLE", "the node is stopping")
        return httpx.Response(200, json=grant())

    def refuse_a(r: httpx.Request) -> httpx.Response:
        if r.url.host == "a" and r.url.path.endswith("/acquire"):
            return acquire(r)
        if r.url.host == "a" and r.method == "GET":
            raise httpx.ConnectError("connection refused")
        return c2(r)

    c2 = Coordinator(acquire=acquire)
    with sluice.Client("http://a:1,http://b:2", transport=httpx.MockTransport(refuse_a)) as cl:
        cl._core.nodes = _core.Nodes(cl._core.nodes.urls, start=0)
        cl._core.nodes.failed("http://a:1")  # the describe failed over first; make the acquire start on a again
        cl._core.nodes = _core.Nodes(cl._core.nodes.urls, start=0)
        cl._core._dimensions["r"] = (cl._core.clock(), ("requests", "tokens"))
        p = cl.acquire("r", timeout=5)
        assert p.id == "cg.1"
    assert seen == ["a", "b"]
    ids = {s["requestId"] for s in c2.sent("acquire")}
    assert len(ids) == 1


def test_a_coordinator_that_is_down_gives_a_clear_error_after_the_timeout_never_a_hang() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nobody listens there
    with sluice.Client(f"http://127.0.0.1:{port}", api_key="slk_x") as cl:
        cl._core._dimensions["r"] = (cl._core.clock(), ("requests",))
        started = time.monotonic()
        with pytest.raises(sluice.SluiceUnavailableError) as e:
            cl.acquire("r", timeout=0.3)
        took = time.monotonic() - started
    assert "no coordinator answered within 0.3 s" in str(e.value)
    assert "HTTP port" in str(e.value)
    assert took < 5  # retried until the timeout, then gave up


# -- late grants ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_late_grant_is_confirmed_once_with_its_request_id() -> None:
    clock = FakeClock()
    trips = iter([0.002, 0.5, 0.003, 0.5, 0.5])  # the round trip of each acquire answer

    def acquire(r: httpx.Request) -> httpx.Response:
        clock.now += next(trips)
        n = len(c.sent("acquire"))
        fresh = None if n >= 4 else 0.1
        return httpx.Response(200, json=grant(f"cg.{n}", answeredAfterSeconds=0.0, freshForSeconds=fresh))

    c = Coordinator(acquire=acquire, release=lambda r: httpx.Response(200, json={"released": True}))
    with client(c, clock=clock) as cl:
        assert cl.acquire("r").id == "cg.1"  # sets the baseline: 2 ms on the way
        late = cl.acquire("r")  # 500 ms on the way, fresh for 100 ms: confirmed, once
        assert late.id == "cg.3" and cl._core.late_grants == 1
        assert cl.acquire("r").id == "cg.4"  # slow again, but freshForSeconds null: never stale
        assert cl._core.late_grants == 1
    ids = [s["requestId"] for s in c.sent("acquire")]
    assert ids[1] == ids[2] and len(set(ids)) == 3


def test_transit_keeps_the_least_of_the_last_ten_to_twenty_seconds() -> None:
    t = _core.Transit()
    assert t.excess(0.050, 0.0) == 0.0
    assert t.excess(0.060, 1.0) == pytest.approx(0.010)
    assert t.excess(0.040, 11.0) == 0.0  # new window; the last one's least (50 ms) still counts
    assert t.excess(0.045, 12.0) == pytest.approx(0.005)
    assert t.excess(0.070, 22.0) == pytest.approx(0.030)  # 40 ms from the window before
    assert t.excess(0.070, 33.0) == pytest.approx(0.0)  # 40 ms forgotten: 70 ms is the least now


def test_leases_are_renewed_a_third_of_the_way_and_retried_after_a_failure() -> None:
    leases = _core.Leases()
    p = type("P", (), {"lease": 3.0, "released": False, "expired": False, "id": "x", "resource": "r"})()
    leases.add(p, 10.0)
    assert leases.next_due() == 11.0 and leases.due(10.5) == []
    assert leases.due(11.0) == [p] and leases.next_due() == 12.0
    leases.retry(p, 11.2)
    assert leases.next_due() == pytest.approx(12.2)  # 1 s after the failure, within the lease
    _core.renewed(leases, p, 6.0, 12.0)
    assert p.lease == 6.0 and leases.next_due() == 14.0
    _core.renewed(leases, p, None, 14.0)
    assert p.expired and len(leases) == 0


# -- reports -----------------------------------------------------------------------------------


def test_reports_read_retry_after_and_the_remaining_counts_from_the_upstreams_headers() -> None:
    c = Coordinator(report=lambda r: httpx.Response(200, json={"pausedForSeconds": 2.5}))
    with client(c) as cl:
        assert cl.report_throttled("r", headers={"Retry-After": "20", "retry-after-ms": "2500",
                                                 "X-RateLimit-Remaining-Tokens": "0",
                                                 "x-ratelimit-remaining-requests": "junk"}) == 2.5
        cl.report_throttled("r", headers=[("retry-after", "7")])
        cl.report_throttled("r")
        cl.report_headers("r", {"x-ratelimit-remaining-tokens": "1200", "x-ratelimit-limit-tokens": "90000"})
    assert c.sent("report") == [
        {"throttled": True, "retryAfter": 2.5, "remaining": {"tokens": 0}},
        {"throttled": True, "retryAfter": 7.0},
        {"throttled": True},
        {"throttled": False, "remaining": {"tokens": 1200}, "limits": {"tokens": 90000}},
    ]


# -- cancellation ------------------------------------------------------------------------------


class Parked:
    """An acquire that waits until cancelled, or is granted as the cancel arrives (the race)."""

    def __init__(self, race: bool) -> None:
        self.race = race
        self.cancelled = threading.Event()
        self.c = Coordinator(acquire=self.acquire, cancel=self.cancel,
                             release=lambda r: httpx.Response(200, json={"released": True}))

    def acquire(self, r: httpx.Request) -> httpx.Response:
        self.cancelled.wait(10)
        if self.race:
            return httpx.Response(200, json=grant("cg.raced"))
        return error(503, "CANCELLED", "the acquire was cancelled")

    def cancel(self, r: httpx.Request) -> httpx.Response:
        self.cancelled.set()
        return httpx.Response(200, json={"cancelled": not self.race})


class AsyncParked(Parked):
    async def acquire(self, r: httpx.Request) -> httpx.Response:  # type: ignore[override]
        while not self.cancelled.is_set():
            await asyncio.sleep(0.005)
        return Parked.acquire(self, r)


@pytest.mark.parametrize("race", [False, True])
def test_a_cancelled_task_withdraws_by_request_id_and_a_raced_grant_is_given_back(race: bool) -> None:
    parked = AsyncParked(race)

    async def main() -> None:
        async with sluice.AsyncClient("http://a:1", transport=httpx.MockTransport(parked.c)) as cl:
            task = asyncio.ensure_future(cl.acquire("r", timeout=10))
            while not parked.c.sent("acquire"):
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with pytest.raises(asyncio.TimeoutError):  # a deadline is a cancel too
                parked.cancelled.clear()
                await asyncio.wait_for(cl.acquire("r", timeout=10), 0.05)

    asyncio.run(main())
    acquires = parked.c.sent("acquire")
    assert [s["requestId"] for s in parked.c.sent("cancel")] == [a["requestId"] for a in acquires]
    assert parked.c.sent("release") == ([{"unused": True}] * 2 if race else [])


@pytest.mark.parametrize("race", [False, True])
def test_keyboard_interrupt_while_waiting_withdraws_the_waiter(race: bool) -> None:
    parked = Parked(race)
    with client(parked.c) as cl:
        ctrl_c = threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
        ctrl_c.start()
        with pytest.raises(KeyboardInterrupt):
            cl.acquire("r", timeout=10)
    assert [s["requestId"] for s in parked.c.sent("cancel")] == [parked.c.sent("acquire")[0]["requestId"]]
    assert parked.c.sent("release") == ([{"unused": True}] if race else [])


def test_async_with_releases_on_every_exit_path_and_sends_the_settle() -> None:
    c = Coordinator(acquire=lambda r: httpx.Response(200, json=grant()),
                    release=lambda r: httpx.Response(200, json={"released": True}))

    async def main() -> None:
        async with sluice.AsyncClient("http://a:1", transport=httpx.MockTransport(c)) as cl:
            async with cl.acquire("r", tokens=10) as p:
                p.settle(tokens=4)
            with pytest.raises(ZeroDivisionError):
                async with cl.acquire("r", tokens=10):
                    1 / 0
            p2 = await cl.acquire("r")
            async with p2:
                pass
            assert await p2.release() is False

    asyncio.run(main())
    assert c.sent("release") == [{"usage": {"tokens": 4}}, {}, {}]
    assert c.sent("acquire")[0]["load"] == {"tokens": 10}


def test_a_coordinator_without_cancel_keeps_the_waiter_and_its_grant_is_given_back() -> None:
    """An older coordinator answers the cancel 405: the long poll stays open (a hang-up could lose
    a grant already written), and the grant it brings is released as unused."""
    parked = AsyncParked(race=True)
    parked.c.answers["cancel"] = lambda r: (parked.cancelled.set(), error(405, "METHOD_NOT_ALLOWED", "use GET"))[1]

    async def main() -> None:
        async with sluice.AsyncClient("http://a:1", transport=httpx.MockTransport(parked.c)) as cl:
            task = asyncio.ensure_future(cl.acquire("r", timeout=10))
            while not parked.c.sent("acquire"):
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert len(parked.c.sent("cancel")) == 1
    assert parked.c.sent("release") == [{"unused": True}]
