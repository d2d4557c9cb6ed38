"""The drop-in transports between a real coordinator (SLUICE_URL, limits of tests/limits.txt) and
the strict mock upstream (SLUICE_MOCK_URL: examples' MockOpenAi, OpenAI's and Anthropic's APIs),
with requests shaped as the official packages send them. PythonClientIT starts both."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Dict, List

import httpx
import pytest

import sluice
from test_coordinator import state, until
from test_transport_unit import ANTHROPIC_HEADERS, OPENAI_HEADERS

pytestmark = pytest.mark.coordinator

MOCK = os.environ.get("SLUICE_MOCK_URL", "")


@pytest.fixture(autouse=True)
def needs_the_mock() -> None:
    if not MOCK:
        if os.environ.get("SLUICE_REQUIRE_COORDINATOR") == "1":
            pytest.fail("SLUICE_MOCK_URL is not set: give the mock upstream's URL (examples' MockOpenAiMain)")
        pytest.skip("needs the mock upstream: set SLUICE_MOCK_URL (see clients/python/README.md)")


def mock_stats() -> Dict[str, Any]:
    return httpx.get(f"{MOCK}/mock/stats", timeout=10).json()


def chat(**extra: Any) -> bytes:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello in five words."}],
            "max_tokens": 40, **extra}
    return json.dumps(body).encode()


def openai_headers(project: str) -> Dict[str, str]:
    return {**OPENAI_HEADERS, "OpenAI-Project": project}  # a quota of its own on the mock


def test_a_chat_completion_is_granted_forwarded_settled_and_released(make_client) -> None:
    c = make_client()
    before = mock_stats()["admitted"]
    t = sluice.openai.transport(c, "py.openai")
    with httpx.Client(base_url=f"{MOCK}/v1", transport=t, headers=openai_headers("p-chat")) as http:
        r = http.send(http.build_request("POST", "/chat/completions", content=chat()))
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] > 0
        models = http.get("/models")  # not metered: passes through
        assert models.status_code == 200 and models.json()["object"] == "list"
    assert mock_stats()["admitted"] == before + 1
    assert state("py.openai")["inFlight"] == 0
    assert c._core.counts["py.openai"]["granted"] == 1 and t.malformed_count == 0


def test_a_stream_reaches_the_caller_as_it_comes_and_holds_the_permit_until_it_ends(make_client) -> None:
    c = make_client()
    t = sluice.openai.transport(c, "py.openai")
    with httpx.Client(base_url=f"{MOCK}/v1", transport=t, headers=openai_headers("p-stream")) as http:
        request = http.build_request("POST", "/chat/completions",
                                     content=chat(stream=True, stream_options={"include_usage": True}))
        r = http.send(request, stream=True)
        try:
            lines = (line.rstrip("\r\n") for line in r.iter_lines() if line.strip())  # httpx < 0.24 keeps the ends
            first = next(lines)
            assert first.startswith("data: ") and json.loads(first[6:])["object"] == "chat.completion.chunk"
            assert state("py.openai")["inFlight"] == 1  # held while the caller reads
            rest = list(lines)
        finally:
            r.close()
        assert rest[-1] == "data: [DONE]" and json.loads(rest[-2][6:])["usage"]["total_tokens"] > 0
    assert state("py.openai")["inFlight"] == 0 and t.malformed_count == 0


def test_upstream_429s_are_reported_and_pause_every_worker(make_async) -> None:
    # The coordinator's limit is loose, the mock's bucket holds 666 tokens: of five calls of 600
    # at once, the mock admits one and refuses the others (those that reach it before it has
    # refilled), with retry-after-ms; each refusal is reported and pauses the resource.
    async def run() -> List[int]:
        async with make_async() as c:
            t = sluice.openai.transport(c, "py.openai")
            async with httpx.AsyncClient(base_url=f"{MOCK}/v1", transport=t, headers=openai_headers("p-429")) as http:
                async def one() -> int:
                    return (await http.post("/chat/completions", content=chat(max_tokens=600))).status_code
                codes = await asyncio.gather(*(one() for _ in range(5)))
                assert state("py.openai")["paused"] is True
                return codes

    before = mock_stats()["rejected"]["tokens"]
    codes = asyncio.run(run())
    assert 200 in codes and 429 in codes and set(codes) == {200, 429}
    assert mock_stats()["rejected"]["tokens"] == before + codes.count(429)


def messages(max_tokens: int = 8, **extra: Any) -> bytes:
    # The mock's output bucket holds 20 tokens: two calls of 8 in a row always fit.
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": max_tokens, "system": "You are terse.",
                       "messages": [{"role": "user", "content": "Say hello."}], **extra}).encode()


def test_anthropic_messages_and_their_stream_through_the_transport(make_client) -> None:
    c = make_client()
    t = sluice.anthropic.transport(c, "py.anthropic")
    with httpx.Client(base_url=MOCK, transport=t, headers={**ANTHROPIC_HEADERS, "x-api-key": "sk-ant-a"}) as http:
        r = http.post("/v1/messages", content=messages())
        assert r.status_code == 200, r.text
        assert r.json()["type"] == "message" and r.json()["usage"]["output_tokens"] >= 1
        assert r.headers["anthropic-ratelimit-output-tokens-limit"] == "1200"
        with http.stream("POST", "/v1/messages", content=messages(stream=True)) as s:
            lines = (line.rstrip("\r\n") for line in s.iter_lines() if line.strip())
            assert next(lines) == "event: message_start"
            assert state("py.anthropic")["inFlight"] == 1  # held while the caller reads
            events = [line[7:] for line in lines if line.startswith("event: ")]
        assert events[-2:] == ["message_delta", "message_stop"]
    until(lambda: state("py.anthropic")["inFlight"] == 0, "the stream's permit is released")
    assert c._core.counts["py.anthropic"]["granted"] == 2 and t.malformed_count == 0


def test_anthropic_429s_are_reported_with_retry_after(make_async) -> None:
    # The mock's output bucket holds 20 tokens: of four calls of max_tokens 16 at once, it admits
    # one and refuses the others with retry-after (whole seconds); the resource pauses.
    async def run() -> List[int]:
        async with make_async() as c:
            t = sluice.anthropic.transport(c, "py.anthropic")
            async with httpx.AsyncClient(base_url=MOCK, transport=t,
                                         headers={**ANTHROPIC_HEADERS, "x-api-key": "sk-ant-429"}) as http:
                codes = await asyncio.gather(*(http.post("/v1/messages", content=messages(16)) for _ in range(4)))
                refused = [r for r in codes if r.status_code == 429]
                assert refused and refused[0].json()["error"]["type"] == "rate_limit_error"
                assert int(refused[0].headers["retry-after"]) >= 1
                assert state("py.anthropic")["paused"] is True
                return [r.status_code for r in codes]

    codes = asyncio.run(run())
    assert 200 in codes and set(codes) == {200, 429}


# -- learned limits --------------------------------------------------------------------------


def per_minute(resource: str) -> Dict[str, float]:
    """The limit's rates now, per minute, by dimension (GET /v1/resources/{name})."""
    return {r["dimension"]: r["amount"] * 60 / r["periodSeconds"] for r in state(resource)["limit"]["rates"]}


def test_a_report_through_the_openai_transport_teaches_a_learning_limit_the_providers_limits(make_client) -> None:
    # py.learn starts far above the mock (600 RPM, 40 000 TPM); the answer's x-ratelimit-limit-*
    # headers, reported by the transport, set its rates to the provider's.
    assert per_minute("py.learn") == {"requests": 600000, "tokens": 60000000}
    c = make_client()
    with httpx.Client(base_url=f"{MOCK}/v1", transport=sluice.openai.transport(c, "py.learn"),
                      headers=openai_headers("p-learn")) as http:
        r = http.post("/chat/completions", content=chat())
        assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == "40000", r.text
    until(lambda: per_minute("py.learn") == {"requests": 600, "tokens": 40000}, "the limit learned from the report")
    assert state("py.learn")["limit"]["learn"]["learnedAt"] is not None


def test_a_report_through_the_anthropic_transport_teaches_a_learning_limit_the_providers_limits(make_async) -> None:
    # py.learn.anthropic has the starting rates of --learn anthropic (requests=50/min, input-tokens
    # 20 000/min, ...); the mock allows 600 RPM, 60 000 input and 1 200 output tokens a minute.
    before = per_minute("py.learn.anthropic")
    assert before["requests"] == 50 and before["input-tokens"] == 20000 and before["output-tokens"] == 4000

    async def run() -> int:
        async with make_async() as c:
            t = sluice.anthropic.transport(c, "py.learn.anthropic")
            async with httpx.AsyncClient(base_url=MOCK, transport=t,
                                         headers={**ANTHROPIC_HEADERS, "x-api-key": "sk-ant-learn"}) as http:
                return (await http.post("/v1/messages", content=messages())).status_code

    assert asyncio.run(run()) == 200
    until(lambda: [per_minute("py.learn.anthropic")[d] for d in ("requests", "input-tokens", "output-tokens")]
          == [600, 60000, 1200], "the limit learned from the report")


# -- pools ------------------------------------------------------------------------------------


def test_a_pool_transport_sends_each_call_with_its_members_key_and_reports_a_429_on_that_member(make_async) -> None:
    # py.pool: members py.pool.a and py.pool.b, one call at a time each, so two calls at once take
    # one member each. Each key is its own project at the mock (a bucket of 666 tokens); a's has
    # been spent just before, so a's call is refused and reported on a alone, b's goes through.
    keys = {"py.pool.a": "sk-pool-a", "py.pool.b": "sk-pool-b"}
    spent = httpx.post(f"{MOCK}/v1/chat/completions", content=chat(max_tokens=640), timeout=10,
                       headers={**OPENAI_HEADERS, "Authorization": f"Bearer {keys['py.pool.a']}"})
    assert spent.status_code == 200, spent.text
    before = {m: state(m) for m in keys}

    async def run() -> List[int]:
        async with make_async() as c:
            t = sluice.openai.transport(c, pool="py.pool", keys=keys)
            async with httpx.AsyncClient(base_url=f"{MOCK}/v1", transport=t, headers=OPENAI_HEADERS) as http:
                answers = await asyncio.gather(*(http.post("/chat/completions", content=chat(max_tokens=640))
                                                 for _ in range(2)))
                return sorted(r.status_code for r in answers)

    assert asyncio.run(run()) == [200, 429]
    after = {m: state(m) for m in keys}
    assert [after[m]["granted"] - before[m]["granted"] for m in keys] == [1, 1]
    assert after["py.pool.a"]["throttleReports"] == before["py.pool.a"]["throttleReports"] + 1
    assert after["py.pool.b"]["throttleReports"] == before["py.pool.b"]["throttleReports"]
    assert after["py.pool.a"]["inFlight"] == after["py.pool.b"]["inFlight"] == 0
