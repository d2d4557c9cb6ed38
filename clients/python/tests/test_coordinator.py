"""The client against a real coordinator (SLUICE_URL, limits of tests/limits.txt): grants, FIFO,
lanes, settle, renewal, reports, every refusal, cancellation (Ctrl-C, and a storm of 1 000
asyncio tasks), and failover between two coordinators on one Redis (SLUICE_FAILOVER_URLS).
PythonClientIT runs them from the Maven build."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import httpx
import pytest

import sluice
from sluice import _core

pytestmark = pytest.mark.coordinator

URL = os.environ.get("SLUICE_URL", "")
KEY = os.environ.get("SLUICE_API_KEY")
TENANT_KEY = os.environ.get("SLUICE_TENANT_KEY")  # a worker key for "py.*" bound to the tenant "search"


def state(resource: str, url: Optional[str] = None) -> Dict[str, Any]:
    """The coordinator's live state of a resource (GET /v1/resources/{name})."""
    headers = {"Authorization": f"Bearer {KEY}"} if KEY and url is None else {}
    r = httpx.get(f"{(url or URL).split(',')[0]}/v1/resources/{resource}", headers=headers, timeout=10)
    r.raise_for_status()
    return r.json()


def waiting(resource: str, url: Optional[str] = None) -> int:
    return sum(state(resource, url)["waiting"].values())


def until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.01)


async def until_async(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.01)


def test_grants_carry_the_load_and_the_requests_default(make_client) -> None:
    c = make_client()
    with c.acquire("py.grant", tokens=1200, lane="interactive") as p:
        assert p.granted == {"requests": 1, "tokens": 1200}
        assert p.lease > 0 and p.waited >= 0 and p.resource == "py.grant"
        assert state("py.grant")["inFlight"] == 1
    with c.acquire("py.grant", {"requests": 2}, tokens=5) as p:
        assert p.granted == {"requests": 2, "tokens": 5}
    p = c.acquire("py.grant")
    assert p.granted == {"requests": 1}
    assert p.release() is True and p.release() is False
    assert state("py.grant")["inFlight"] == 0
    assert p.member == "py.grant"  # a plain resource grants itself


def test_a_pools_permits_name_the_member_that_granted(make_client) -> None:
    # py.pool (set by PythonClientIT): members py.pool.a and py.pool.b, concurrency 1 each.
    c = make_client()
    first = c.acquire("py.pool", tokens=10, timeout=10)
    second = c.acquire("py.pool", tokens=10, timeout=10)
    try:
        assert {first.member, second.member} == {"py.pool.a", "py.pool.b"}
        assert first.resource == second.resource == "py.pool"
        assert state(first.member)["inFlight"] == 1
    finally:
        first.release()
        second.release()
    assert state("py.pool.a")["inFlight"] == 0 and state("py.pool.b")["inFlight"] == 0


def test_waiters_are_granted_in_the_order_they_arrived(make_async) -> None:
    async def main() -> None:
        async with make_async() as c:
            holder = await c.acquire("py.fifo")
            order = []

            async def waiter(i: int) -> None:
                async with c.acquire("py.fifo", timeout=20):
                    order.append(i)

            tasks = []
            for i in range(6):
                tasks.append(asyncio.ensure_future(waiter(i)))
                await until_async(lambda: waiting("py.fifo") == i + 1, f"waiter {i} queued")
            await holder.release()
            await asyncio.gather(*tasks)
            assert order == list(range(6))

    asyncio.run(main())


def test_the_interactive_lane_goes_before_the_batch_lane(make_async) -> None:
    async def main() -> None:
        async with make_async() as c:
            holder = await c.acquire("py.lanes")
            order = []

            async def waiter(lane: str) -> None:
                async with c.acquire("py.lanes", lane=lane, timeout=20):
                    order.append(lane)

            batch = asyncio.ensure_future(waiter("batch"))
            await until_async(lambda: state("py.lanes")["waiting"]["batch"] == 1, "batch waiter queued")
            interactive = asyncio.ensure_future(waiter("interactive"))
            await until_async(lambda: state("py.lanes")["waiting"]["interactive"] == 1, "interactive waiter queued")
            await holder.release()
            await asyncio.gather(batch, interactive)
            assert order == ["interactive", "batch"]

    asyncio.run(main())


def test_settle_refunds_an_over_estimate_that_is_spendable_at_once(make_client) -> None:
    c = make_client()
    with c.acquire("py.settle", tokens=1000, timeout=10) as p:  # the whole burst (it fills in 1 s)
        p.settle(tokens=100)
    # 900 came back: without the refund the bucket would hold what it refilled since (1 000/s).
    refunded = c.try_acquire("py.settle", tokens=850, timeout=0)
    assert refunded is not None
    refunded.release()


def test_a_model_prices_the_tokens_of_the_acquire_and_of_the_settle(make_client, caplog) -> None:
    # py.usd counts usd; PythonClientIT prices py-model at $1/M input and $2/M output tokens.
    c = make_client()
    with caplog.at_level(logging.WARNING, logger="sluice"):
        with c.acquire("py.usd", model="py-model", input_tokens=1000, output_tokens=500, timeout=10) as p:
            assert p.granted["usd"] == 2000  # micro-dollars: 1 000 x $1/M + 500 x $2/M
            p.settle(input_tokens=1000, output_tokens=100)  # priced too: without the model, refused
    assert "refused" not in caplog.text, "the settle went with the model, so the coordinator could price it"
    assert state("py.usd")["inFlight"] == 0
    with pytest.raises(ValueError, match="model must be"):
        c.acquire("py.usd", model="no spaces", input_tokens=1)
    with pytest.raises(ValueError, match="limits only"):
        c.acquire("py.usd", input_tokens=1)  # no model: a dimension the limit does not have


def test_leases_are_renewed_in_the_background_while_a_permit_is_held(make_client, make_async) -> None:
    c = make_client()
    with c.acquire("py.lease") as p:
        assert p.lease == 1.0
        time.sleep(1.6)  # past the 1 s lease: only renewals keep it
        assert not p.expired
        assert state("py.lease")["inFlight"] == 1
    assert state("py.lease")["expired"] == 0 and state("py.lease")["inFlight"] == 0

    async def main() -> None:
        async with make_async() as a:
            async with a.acquire("py.lease") as q:
                await asyncio.sleep(1.6)
                assert not q.expired and state("py.lease")["inFlight"] == 1

    asyncio.run(main())
    assert state("py.lease")["expired"] == 0 and state("py.lease")["inFlight"] == 0


def test_a_throttled_report_pauses_every_worker(make_client) -> None:
    c = make_client()
    paused = c.report_throttled("py.report", headers={"retry-after-ms": "1500", "x-ratelimit-remaining-requests": "0"})
    assert 1.0 < paused <= 1.5
    assert state("py.report")["paused"] is True
    assert c.try_acquire("py.report", timeout=0) is None
    assert c.report_headers("py.report", {"x-ratelimit-remaining-requests": "5"}) > 0
    with c.acquire("py.report", timeout=5) as p:  # granted once the pause is over
        assert p.waited > 0 or state("py.report")["paused"] is False


def test_every_refusal_maps_to_its_exception(make_client, monkeypatch) -> None:
    c = make_client()
    with pytest.raises(sluice.InvalidRequestError) as e:
        c.acquire("py.grant", tokens=100_001)
    assert e.value.status == 400 and e.value.code == "INVALID_ARGUMENT" and "can never fit" in str(e.value)
    with pytest.raises(sluice.ResourceNotFoundError) as e:
        c.acquire("py.nolimit")
    assert e.value.status == 404 and "has no limit" in str(e.value)
    with pytest.raises(sluice.AcquireTimeoutError) as e:
        c.acquire("py.never", timeout=0.2)
    assert e.value.status == 408 and e.value.code == "DEADLINE_EXCEEDED"
    assert c.try_acquire("py.never", timeout=0) is None
    if KEY:
        with pytest.raises(sluice.PermissionDeniedError) as e:
            c.acquire("other.resource")
        assert e.value.status == 403 and e.value.code == "PERMISSION_DENIED"
        monkeypatch.delenv("SLUICE_API_KEY")
        with pytest.raises(sluice.AuthenticationError) as e:
            make_client().acquire("py.grant")
        assert e.value.status == 401 and "requires an API key" in str(e.value)
        with pytest.raises(sluice.AuthenticationError, match="unknown or revoked"):
            make_client(api_key="slk_000000000000_nope").acquire("py.grant")

    holder = c.acquire("py.room")
    queued = threading.Thread(target=lambda: c.acquire("py.room", timeout=20).release())
    queued.start()
    until(lambda: waiting("py.room") == 1, "one waiter in py.room")
    with pytest.raises(sluice.WaitingRoomFullError) as e:
        c.acquire("py.room", timeout=5)
    assert e.value.status == 429 and e.value.retry_after > 0
    holder.release()
    queued.join(10)
    assert state("py.room")["inFlight"] == 0


def test_an_estimate_queues_nothing_and_fail_if_late_is_refused_at_once_past_the_timeout(make_client,
                                                                                       make_async) -> None:
    c = make_client()
    # py.never refills 1 request an hour and started empty: the next one is most of an hour away.
    est = c.estimate("py.never")
    assert not est.paused and est.wait is not None and 60 < est.wait <= 3600 and not est.fits(60)
    assert c.estimate("py.never", lane="batch", tenant="search").wait > 60
    assert waiting("py.never") == 0
    with pytest.raises(sluice.AcquireTimeoutError) as e:
        c.acquire("py.never", timeout=10, fail_if_late=True)
    assert e.value.status == 408 and e.value.code == "DEADLINE_EXCEEDED"
    assert e.value.estimate is not None and e.value.estimate.wait > 60
    assert "the estimated wait on 'py.never' is" in str(e.value) and "past the 10 s timeout" in str(e.value)
    assert "failIfLate" in str(e.value)
    c.acquire("py.grant", timeout=10, fail_if_late=True).release()  # the estimate fits: granted

    async def in_asyncio() -> None:
        async with make_async() as a:
            assert (await a.estimate("py.grant", tokens=10)).fits(10)
            with pytest.raises(sluice.AcquireTimeoutError) as late:
                await a.acquire("py.never", timeout=1, fail_if_late=True)
            assert late.value.estimate is not None and late.value.estimate.wait > 60

    asyncio.run(in_asyncio())
    with pytest.raises(sluice.ResourceNotFoundError):
        c.estimate("py.nolimit")
    with pytest.raises(sluice.InvalidRequestError, match="can never fit"):
        c.estimate("py.grant", tokens=100_001)
    if TENANT_KEY:
        bound = make_client(api_key=TENANT_KEY)
        assert bound.estimate("py.grant", tenant="search").wait is not None
        with pytest.raises(sluice.PermissionDeniedError, match="bound to tenant 'search'"):
            bound.estimate("py.grant", tenant="ads")


def test_a_tenant_bound_key_acquires_in_its_tenant_and_is_refused_another(make_client) -> None:
    make_client().acquire("py.grant", tenant="search").release()  # an unbound key names any tenant
    if not TENANT_KEY:
        pytest.skip("SLUICE_TENANT_KEY is not set: no key bound to a tenant")
    bound = make_client(api_key=TENANT_KEY)
    bound.acquire("py.grant").release()
    bound.acquire("py.grant", tenant="search").release()
    with pytest.raises(sluice.PermissionDeniedError) as e:
        bound.acquire("py.grant", tenant="ads")
    assert e.value.status == 403 and e.value.code == "PERMISSION_DENIED"
    assert "bound to tenant 'search'" in str(e.value) and "tenant 'ads'" in str(e.value)
    with pytest.raises(sluice.PermissionDeniedError):
        make_client(api_key=TENANT_KEY, tenant="ads").acquire("py.grant")


def test_ctrl_c_while_waiting_withdraws_the_waiter_and_a_raced_grant_comes_back(make_client) -> None:
    c = make_client()
    before = state("py.interrupt")["cancelled"]
    holder = c.acquire("py.interrupt")

    def ctrl_c(release_first: bool) -> None:
        until(lambda: waiting("py.interrupt") == 1, "the acquire is queued")
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        if release_first:
            holder.release()  # the grant races with the withdrawal

    for race in (False, True):
        t = threading.Thread(target=ctrl_c, args=(race,))
        t.start()
        with pytest.raises(KeyboardInterrupt):
            c.acquire("py.interrupt", timeout=20)
        t.join()
    s = state("py.interrupt")
    assert s["cancelled"] >= before + 1
    assert s["inFlight"] == 0 and sum(s["waiting"].values()) == 0
    again = c.try_acquire("py.interrupt", timeout=0)  # the slot is free: nothing leaked
    assert again is not None
    again.release()


def test_a_storm_of_cancelled_and_timed_out_tasks_loses_nothing(make_client, make_async) -> None:
    """1 000 tasks on a resource with 10 slots, granted all along: a quarter cancelled, a quarter
    with a client-side deadline (asyncio.wait_for), half timing out at the coordinator."""
    outcomes: Dict[str, int] = {}

    async def main() -> None:
        async with make_async() as c:
            warm = await c.try_acquire("py.storm", timeout=0)  # learns the dimensions, warms a connection
            assert warm is not None
            await warm.release()

            async def one(i: int) -> None:
                try:
                    if i % 4 == 1:
                        permit = await asyncio.wait_for(c.acquire("py.storm", timeout=30), 0.3 + (i % 5) * 0.1)
                    else:
                        permit = await c.acquire("py.storm", timeout=30 if i % 4 == 0 else 0.2 + (i % 7) * 0.1)
                    async with permit:
                        await asyncio.sleep(0.002)
                    outcomes["granted"] = outcomes.get("granted", 0) + 1
                except sluice.AcquireTimeoutError:
                    outcomes["timed out"] = outcomes.get("timed out", 0) + 1

            tasks = [asyncio.ensure_future(one(i)) for i in range(1000)]
            await asyncio.sleep(0.5)
            for t in tasks[::4]:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            outcomes["cancelled"] = sum(isinstance(r, (asyncio.CancelledError, asyncio.TimeoutError)) for r in results)
            unexpected = [r for r in results if isinstance(r, BaseException)
                          and not isinstance(r, (asyncio.CancelledError, asyncio.TimeoutError))]
            assert not unexpected, unexpected[:3]

    asyncio.run(main())
    s = state("py.storm")
    print(f"storm outcomes: {outcomes}; at the coordinator: granted {s['granted']}, given back {s['givenBack']},"
          f" timed out {s['timedOut']}, cancelled {s['cancelled']}")
    assert sum(outcomes.values()) == 1000
    assert s["inFlight"] == 0, s
    assert sum(s["waiting"].values()) == 0, s
    # Every slot is free, exactly: ten try-once acquires get them, an eleventh does not.
    c = make_client()
    held = [c.try_acquire("py.storm", timeout=0) for _ in range(11)]
    assert [p is not None for p in held] == [True] * 10 + [False]
    for p in held[:10]:
        p.release()


@pytest.mark.skipif(not os.environ.get("SLUICE_FAILOVER_URLS"), reason="needs SLUICE_FAILOVER_URLS and SLUICE_CONTROL")
def test_an_acquire_parked_on_a_node_that_stops_is_granted_by_the_other() -> None:
    urls = os.environ["SLUICE_FAILOVER_URLS"].split(",")
    control = Path(os.environ["SLUICE_CONTROL"])
    with sluice.Client(urls, api_key=None, timeout=20) as c:
        c._core.nodes = _core.Nodes(urls, start=0)  # every call on the first node until it fails
        c.report_throttled("py.failover", retry_after=2)  # parks the next acquire
        got: Dict[str, Any] = {}
        t = threading.Thread(target=lambda: got.setdefault("permit", c.acquire("py.failover", timeout=20)))
        t.start()
        until(lambda: waiting("py.failover", urls[0]) == 1, "the acquire is parked on the first node")
        (control / "stop").write_text(urls[0])
        until(lambda: (control / "stopped").exists(), "the IT stopped the first node", 20)
        t.join(20)
        permit = got["permit"]
        assert c._core.nodes.current == urls[1]
        assert state("py.failover", urls[1])["inFlight"] == 1
        assert permit.release() is True
        assert state("py.failover", urls[1])["inFlight"] == 0
    with sluice.Client(urls[0]) as down, pytest.raises(sluice.SluiceUnavailableError) as e:
        down.acquire("py.failover", timeout=0.5)
    assert "no coordinator answered within" in str(e.value)
