"""The drop-in transports against a scripted coordinator and a scripted upstream (both
httpx.MockTransport): what is metered and what passes through untouched, the estimate, the settle
from ``usage`` (an answer, a stream's last chunk), a malformed usage block, and the reports of
429s and rate-limit headers. Requests are shaped as the official ``openai`` and ``anthropic``
packages send them. tests/test_transport_live.py runs them against a real coordinator and the
strict mock upstream."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import sys
from typing import Any, Callable, Dict, List, Optional

import httpx
import pytest

import sluice
from sluice import _metering
from test_unit import Coordinator, grant

OPENAI_HEADERS = {
    "Accept": "application/json", "Content-Type": "application/json", "User-Agent": "OpenAI/Python 1.99.0",
    "X-Stainless-Lang": "python", "X-Stainless-Package-Version": "1.99.0", "X-Stainless-Runtime": "CPython",
    "X-Stainless-Retry-Count": "0", "Authorization": "Bearer sk-test",
}
ANTHROPIC_HEADERS = {
    "Accept": "application/json", "Content-Type": "application/json", "User-Agent": "Anthropic/Python 0.60.0",
    "X-Stainless-Lang": "python", "anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test",
}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 50}


@pytest.fixture(autouse=True)
def char_rule(monkeypatch) -> None:
    """Estimates by the character rule, whether or not tiktoken is installed here."""
    monkeypatch.setattr(_metering, "_counter", _metering.char_rule)


class Scripted(Coordinator):
    """A coordinator granting everything, on a limit of the given dimensions."""

    def __init__(self, *dimensions: str) -> None:
        super().__init__(acquire=lambda r: httpx.Response(200, json=grant()),
                         release=lambda r: httpx.Response(200, json={"released": True}),
                         report=lambda r: httpx.Response(200, json={"pausedForSeconds": 0.0}))
        self.limit = {"name": "r", "limit": {"rates": [{"dimension": d} for d in dimensions]}}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/v1/resources/r":
            self.calls.append(request)
            return httpx.Response(200, json=self.limit)
        return super().__call__(request)


def coordinator(*dimensions: str) -> Scripted:
    return Scripted(*(dimensions or ("requests", "tokens")))


class Upstream:
    """A scripted upstream that keeps what it was sent."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.got: List[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.got.append(request)
        return self.answer(request)


def usage_answer(usage: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> Callable:
    return lambda r: httpx.Response(status, json={"id": "x", "object": "chat.completion", "usage": usage},
                                    headers=headers)


def sse(events: List[Any], named: bool = False) -> bytes:
    out = b""
    for e in events:
        if named:
            out += b"event: " + e["type"].encode() + b"\n"
        out += b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
    return out


def openai_http(c: Coordinator, upstream: Upstream, **kw: Any) -> httpx.Client:
    client = sluice.Client("http://a:1", transport=httpx.MockTransport(c))
    t = sluice.openai.transport(client, "r", wrapped=httpx.MockTransport(upstream), **kw)
    return httpx.Client(base_url="https://api.openai.com/v1", transport=t, headers=OPENAI_HEADERS)


def post(http: httpx.Client, path: str, body: Any, stream: bool = False) -> httpx.Response:
    request = http.build_request("POST", path, content=json.dumps(body).encode())
    return http.send(request, stream=stream)


# -- what passes through --------------------------------------------------------------------


def test_unknown_endpoints_and_bodies_that_are_not_json_pass_through_untouched() -> None:
    c = coordinator()
    up = Upstream(lambda r: httpx.Response(200, json={"ok": True}))
    with openai_http(c, up) as http:
        http.get("/models")
        http.post("/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "batch"})
        http.post("/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
        http.post("/chat/completions", content=b"[1, 2]")
        http.post("/chat/completions", content=json.dumps(CHAT).encode(), headers={"Content-Type": "text/plain"})
        http.post("/messages", json={"model": "claude", "max_tokens": 5, "messages": []})  # not OpenAI's
    assert c.sent("acquire") == [] and c.sent("report") == [] and c.sent("release") == []
    assert [r.url.path for r in up.got] == ["/v1/models", "/v1/files", "/v1/chat/completions",
                                            "/v1/chat/completions", "/v1/chat/completions", "/v1/messages"]
    assert up.got[2].content == b"{not json" and up.got[3].content == b"[1, 2]"
    assert up.got[0].headers["x-stainless-lang"] == "python"


def test_a_metered_call_is_forwarded_byte_for_byte_bar_the_lane_header() -> None:
    c = coordinator()
    up = Upstream(usage_answer({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}))
    body = json.dumps(CHAT).encode()
    with openai_http(c, up) as http:
        http.send(http.build_request("POST", "/chat/completions", content=body,
                                     headers={"X-Sluice-Lane": "interactive"}))
    assert up.got[0].content == body
    assert "x-sluice-lane" not in up.got[0].headers
    assert up.got[0].headers["authorization"] == "Bearer sk-test"
    assert c.sent("acquire")[0]["lane"] == "interactive"


# -- estimates and settles --------------------------------------------------------------------


def test_chat_estimates_prompt_plus_budget_and_settles_what_openai_counted() -> None:
    c = coordinator()
    up = Upstream(usage_answer({"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}))
    with openai_http(c, up) as http:
        r = post(http, "/chat/completions", {**CHAT, "n": 2})
        assert r.json()["usage"]["total_tokens"] == 19
        post(http, "/chat/completions", {**CHAT, "max_tokens": None, "max_completion_tokens": 30})
        post(http, "/chat/completions", {k: v for k, v in CHAT.items() if k != "max_tokens"})
    # "hello there" is 3 tokens by the character rule, "user" 1: 3 + 3 + 1 + 3 = 10, plus the budget.
    assert [a["load"] for a in c.sent("acquire")] == [
        {"requests": 1, "tokens": 10 + 2 * 50}, {"requests": 1, "tokens": 10 + 30}, {"requests": 1, "tokens": 10 + 256}]
    # The real prompt plus the budget reserved; with none named, the total.
    assert [b.get("usage") for b in c.sent("release")] == [{"tokens": 12 + 100}, {"tokens": 12 + 30}, {"tokens": 19}]


@pytest.mark.parametrize("path, body, load, usage, settled", [
    ("/embeddings", {"model": "text-embedding-3-small", "input": ["abcdefgh", "abcd"]}, 3,
     {"prompt_tokens": 4, "total_tokens": 4}, 4),
    ("/embeddings", {"model": "text-embedding-3-small", "input": [[1, 2, 3], [4, 5]]}, 5,
     {"prompt_tokens": 5, "total_tokens": 5}, 5),
    ("/responses", {"model": "gpt-4.1", "instructions": "be brief", "input": "abcdefgh", "max_output_tokens": 40},
     2 + 2 + 40, {"input_tokens": 9, "output_tokens": 3, "total_tokens": 12}, 9 + 40),
    ("/responses", {"model": "gpt-4.1", "input": [{"role": "user", "content": [{"type": "input_text", "text": "abcd"}]}]},
     3 + 1 + 256, {"input_tokens": 9, "output_tokens": 3, "total_tokens": 12}, 12),
    ("/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "abcdefgh"}, 2 + 16,
     {"prompt_tokens": 3, "completion_tokens": 16, "total_tokens": 19}, 3 + 16),
])
def test_each_openai_endpoint_is_estimated_and_settled(path, body, load, usage, settled) -> None:
    c = coordinator()
    with openai_http(c, Upstream(usage_answer(usage))) as http:
        post(http, path, body)
    assert c.sent("acquire")[0]["load"] == {"requests": 1, "tokens": load}
    assert c.sent("release")[0]["usage"] == {"tokens": settled}


def test_a_dimension_the_limit_lacks_is_not_asked_for() -> None:
    c = coordinator("requests")
    with openai_http(c, Upstream(usage_answer({"prompt_tokens": 1, "total_tokens": 2}))) as http:
        post(http, "/chat/completions", CHAT)
    assert c.sent("acquire")[0]["load"] == {"requests": 1}
    assert c.sent("release") == [{}]


def test_on_a_limit_that_counts_usd_the_call_names_its_model_and_its_billed_tokens() -> None:
    # The coordinator prices input_tokens and output_tokens at the model's price (sluice price set):
    # the acquire carries the estimate and the model, the settle what OpenAI billed and the model.
    c = coordinator("requests", "usd")
    up = Upstream(usage_answer({"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}))
    with openai_http(c, up) as http:
        post(http, "/chat/completions", CHAT)
    acquire = c.sent("acquire")[0]
    assert acquire["model"] == "gpt-4o-mini"
    assert acquire["load"] == {"requests": 1, "input_tokens": 10, "output_tokens": 50}
    assert c.sent("release") == [{"usage": {"input_tokens": 12, "output_tokens": 7}, "model": "gpt-4o-mini"}]


def test_without_usd_no_model_is_named_and_anthropic_names_its_model_too() -> None:
    c = coordinator()
    with openai_http(c, Upstream(usage_answer({"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}))) as h:
        post(h, "/chat/completions", CHAT)
    assert "model" not in c.sent("acquire")[0] and "model" not in c.sent("release")[0]
    a = coordinator("requests", "usd")
    answer = lambda r: httpx.Response(200, json={"type": "message", "usage": {"input_tokens": 20, "output_tokens": 5}})
    with httpx.Client(transport=sluice.anthropic.transport(sluice.Client("http://a:1", transport=httpx.MockTransport(a)), "r",
                                                           wrapped=httpx.MockTransport(Upstream(answer))),
                      base_url="https://api.anthropic.com/v1", headers=ANTHROPIC_HEADERS) as http:
        http.post("/messages", json={"model": "claude-sonnet-4", "max_tokens": 30,
                                     "messages": [{"role": "user", "content": "abcd"}]})
    assert a.sent("acquire")[0]["model"] == "claude-sonnet-4"
    assert a.sent("release") == [{"usage": {"input_tokens": 20, "output_tokens": 5}, "model": "claude-sonnet-4"}]


# -- bad usage ----------------------------------------------------------------------------


def test_a_malformed_usage_block_keeps_the_estimate_and_is_logged_once(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="sluice")
    c = coordinator()
    answers = iter([
        usage_answer({"prompt_tokens": "many", "total_tokens": 5}),
        usage_answer([1, 2]),
        lambda r: httpx.Response(200, content=b"<html>oops</html>", headers={"content-type": "text/html"}),
        usage_answer({"prompt_tokens": 12, "total_tokens": 15}),
    ])
    with openai_http(c, Upstream(lambda r: next(answers)(r))) as http:
        for _ in range(4):
            assert post(http, "/chat/completions", CHAT).status_code == 200
    assert [b.get("usage") for b in c.sent("release")] == [None, None, None, {"tokens": 62}]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "usage.prompt_tokens is 'many', not a count of tokens" in warnings[0].getMessage()
    assert "keeps its estimate" in warnings[0].getMessage()
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "estimate" in r.getMessage()]
    assert any("usage is [1, 2], not an object" in m for m in debug) and any("not JSON" in m for m in debug)


def test_an_answer_without_usage_keeps_the_estimate_without_a_warning(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="sluice")
    c = coordinator()
    with openai_http(c, Upstream(lambda r: httpx.Response(200, json={"id": "x"}))) as http:
        post(http, "/chat/completions", CHAT)
    assert "usage" not in c.sent("release")[0] and caplog.records == []


# -- streams ----------------------------------------------------------------------------------


def chat_chunks(usage: Any) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}}],
             "usage": None}
    return sse([chunk, chunk, {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage},
                b"[DONE]"])


def test_a_stream_reaches_the_caller_and_settles_from_its_last_chunk_when_it_ends() -> None:
    c = coordinator()
    body = chat_chunks({"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14})
    up = Upstream(lambda r: httpx.Response(200, stream=httpx.ByteStream(body),
                                           headers={"content-type": "text/event-stream; charset=utf-8"}))
    with openai_http(c, up) as http:
        r = post(http, "/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
                 stream=True)
        assert c.sent("release") == []  # held while the caller reads
        lines = [line.rstrip("\r\n") for line in r.iter_lines() if line.strip()]  # httpx < 0.24 keeps the ends
        assert lines[-1] == "data: [DONE]" and len(lines) == 4
        r.close()
    assert c.sent("release") == [{"usage": {"tokens": 12 + 50}}]


def test_a_gzip_stream_is_read_through_its_encoding() -> None:
    c = coordinator()
    packed = gzip.compress(chat_chunks({"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}))
    up = Upstream(lambda r: httpx.Response(200, stream=httpx.ByteStream(packed),
                                           headers={"content-type": "text/event-stream", "content-encoding": "gzip"}))
    with openai_http(c, up) as http:
        r = post(http, "/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
                 stream=True)
        assert r.read().endswith(b"data: [DONE]\n\n")  # the caller gets it decoded
        r.close()
    assert c.sent("release") == [{"usage": {"tokens": 12 + 50}}]


def test_a_stream_closed_early_or_without_usage_keeps_the_estimate(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="sluice")
    c = coordinator()
    streams = iter([chat_chunks({"prompt_tokens": 12, "total_tokens": 14}), chat_chunks(None),
                    chat_chunks(7)])
    up = Upstream(lambda r: httpx.Response(200, stream=httpx.ByteStream(next(streams)),
                                           headers={"content-type": "text/event-stream"}))
    with openai_http(c, up) as http:
        r = post(http, "/chat/completions", {**CHAT, "stream": True}, stream=True)
        next(r.iter_raw(10))
        r.close()  # the caller stopped reading: what was used is unknown
        for _ in range(2):
            r = post(http, "/chat/completions", {**CHAT, "stream": True}, stream=True)
            r.read()
            r.close()
    assert c.sent("release") == [{}, {}, {}]
    assert [r.getMessage() for r in caplog.records] == [
        "openai transport for 'r': a usage block of the stream is 7, not an object; the permit keeps its estimate"
        " (this is logged once per transport; later ones at debug level)"]


# -- reports ----------------------------------------------------------------------------------


def test_a_429_is_reported_with_its_retry_after_and_headers_after_a_success() -> None:
    c = coordinator()
    answers = iter([
        usage_answer({"error": 1}, 429, {"retry-after-ms": "1500", "retry-after": "2",
                                         "x-ratelimit-remaining-tokens": "0", "x-request-id": "req_1"}),
        usage_answer({"error": 1}, 429, {"x-ratelimit-remaining-tokens": "0"}),  # too large: no pause
        usage_answer({"prompt_tokens": 12, "total_tokens": 15}, 200,
                     {"x-ratelimit-remaining-requests": "59", "x-ratelimit-remaining-tokens": "39000",
                      "x-ratelimit-limit-requests": "60", "x-ratelimit-limit-tokens": "40000"}),
        usage_answer({"prompt_tokens": 12, "total_tokens": 15}),
    ])
    with openai_http(c, Upstream(lambda r: next(answers)(r))) as http:
        assert [post(http, "/chat/completions", CHAT).status_code for _ in range(4)] == [429, 429, 200, 200]
    assert c.sent("report") == [
        {"throttled": True, "retryAfter": 1.5, "remaining": {"tokens": 0}},
        {"throttled": False, "remaining": {"tokens": 0}},
        {"throttled": False, "remaining": {"requests": 59, "tokens": 39000},
         "limits": {"requests": 60, "tokens": 40000}},  # what a resource set with --learn openai learns from
    ]
    assert [b.get("usage") for b in c.sent("release")] == [None, None, {"tokens": 62}, {"tokens": 62}]


def test_an_upstream_that_fails_releases_the_permit_as_granted() -> None:
    c = coordinator()

    def down(r: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=r)

    with openai_http(c, Upstream(down)) as http, pytest.raises(httpx.ConnectError):
        post(http, "/chat/completions", CHAT)
    assert c.sent("release") == [{}]


# -- Anthropic ---------------------------------------------------------------------------------

MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 100, "system": "be brief",
           "messages": [{"role": "user", "content": [{"type": "text", "text": "abcdefgh"}]}]}


def test_anthropic_messages_are_metered_on_input_and_output_and_report_its_headers() -> None:
    c = coordinator("requests", "input_tokens", "output_tokens")
    headers = {"anthropic-ratelimit-requests-remaining": "49", "anthropic-ratelimit-input-tokens-remaining": "29000",
               "anthropic-ratelimit-output-tokens-remaining": "7900", "anthropic-ratelimit-tokens-remaining": "7900",
               "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-input-tokens-limit": "30000",
               "anthropic-ratelimit-output-tokens-limit": "8000", "anthropic-ratelimit-tokens-limit": "8000",
               "anthropic-ratelimit-requests-reset": "2026-12-05T05:00:01Z", "request-id": "req_1"}
    answers = iter([
        lambda r: httpx.Response(200, headers=headers, json={"type": "message", "usage": {
            "input_tokens": 14, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 50, "output_tokens": 9}}),
        lambda r: httpx.Response(429, headers={**headers, "retry-after": "3"},
                                 json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}),
        lambda r: httpx.Response(200, headers=headers, json={"input_tokens": 7}),
    ])
    client = sluice.Client("http://a:1", transport=httpx.MockTransport(c))
    t = sluice.anthropic.transport(client, "r", wrapped=httpx.MockTransport(Upstream(lambda r: next(answers)(r))))
    with httpx.Client(base_url="https://api.anthropic.com", transport=t, headers=ANTHROPIC_HEADERS) as http:
        assert post(http, "/v1/messages", MESSAGE).status_code == 200
        assert post(http, "/v1/messages", MESSAGE).status_code == 429
        http.post("/v1/messages/count_tokens", json=MESSAGE)  # not metered
    # "be brief" 2 tokens, the message 3 + 2: 7 in; max_tokens out. Settled: cache writes count, reads not.
    assert [a["load"] for a in c.sent("acquire")] == [{"requests": 1, "input_tokens": 7, "output_tokens": 100}] * 2
    assert [b.get("usage") for b in c.sent("release")] == [{"input_tokens": 16, "output_tokens": 9}, None]
    # Both spellings: input_tokens as this transport meters it, input-tokens as --learn anthropic starts with.
    remaining = {"requests": 49, "input_tokens": 29000, "output_tokens": 7900, "tokens": 7900,
                 "input-tokens": 29000, "output-tokens": 7900}
    limits = {"requests": 50, "input_tokens": 30000, "output_tokens": 8000, "tokens": 8000,
              "input-tokens": 30000, "output-tokens": 8000}
    assert c.sent("report") == [{"throttled": False, "remaining": remaining, "limits": limits},
                                {"throttled": True, "retryAfter": 3.0, "remaining": remaining, "limits": limits}]


def test_an_anthropic_stream_settles_from_its_start_and_delta_events() -> None:
    c = coordinator("requests", "input_tokens", "output_tokens")
    events = sse([
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 14, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 21}},
        {"type": "message_stop"},
    ], named=True)
    client = sluice.AsyncClient("http://a:1", transport=httpx.MockTransport(c))
    up = Upstream(lambda r: httpx.Response(200, stream=httpx.ByteStream(events),
                                           headers={"content-type": "text/event-stream"}))

    async def run() -> List[str]:
        t = sluice.anthropic.transport(client, "r", wrapped=httpx.MockTransport(up))
        async with client, httpx.AsyncClient(base_url="https://api.anthropic.com", transport=t,
                                             headers=ANTHROPIC_HEADERS) as http:
            request = http.build_request("POST", "/v1/messages", content=json.dumps({**MESSAGE, "stream": True}))
            r = await http.send(request, stream=True)
            assert c.sent("release") == []
            lines = [line.rstrip("\r\n") async for line in r.aiter_lines() if line.startswith("event:")]
            await r.aclose()
            return lines

    lines = asyncio.run(run())
    assert lines[0] == "event: message_start" and lines[-1] == "event: message_stop"
    assert c.sent("release") == [{"usage": {"input_tokens": 14, "output_tokens": 21}}]


# -- arguments -----------------------------------------------------------------------------


def test_bad_transport_arguments_are_refused_with_the_fix() -> None:
    client = sluice.Client("http://a:1")
    with pytest.raises(TypeError, match="sluice.Client .for httpx.Client. or a sluice.AsyncClient"):
        sluice.openai.transport(httpx.Client())
    with pytest.raises(TypeError, match="wrapped must be an httpx.BaseTransport"):
        sluice.openai.transport(client, wrapped=httpx.AsyncHTTPTransport())
    with pytest.raises(ValueError, match="lane 'fast' is unknown"):
        sluice.anthropic.transport(client, lane="fast")
    with pytest.raises(ValueError, match="default_max_tokens=-1"):
        sluice.openai.transport(client, default_max_tokens=-1)
    with pytest.raises(ValueError, match="resource name 'a b' is invalid"):
        sluice.openai.transport(client, "a b")
    client.close()


def test_tiktoken_counts_when_importable_and_the_rule_otherwise(monkeypatch, caplog) -> None:
    class Encoding:
        def encode(self, text: str, disallowed_special: Any = None) -> List[int]:
            return list(range(len(text.split())))  # a token a word

    class Tiktoken:
        @staticmethod
        def get_encoding(name: str) -> Encoding:
            assert name == "o200k_base"
            return Encoding()

    monkeypatch.setattr(_metering, "_counter", None)
    monkeypatch.setitem(sys.modules, "tiktoken", Tiktoken)
    assert _metering.count_tokens("three short words") == 3

    class Offline:
        @staticmethod
        def get_encoding(name: str) -> Encoding:
            raise OSError("no vocabulary cached and no network")

    monkeypatch.setattr(_metering, "_counter", None)
    monkeypatch.setitem(sys.modules, "tiktoken", Offline)
    assert _metering.count_tokens("three short words") == 5  # 17 characters
    assert "o200k_base vocabulary is not (no vocabulary cached and no network)" in caplog.text


def test_the_character_rule_is_one_token_per_four_characters() -> None:
    assert [_metering.char_rule(t) for t in ["", "a", "abcd", "abcde", "x" * 400]] == [0, 1, 1, 2, 100]


# -- pools --------------------------------------------------------------------------------------


class PoolCoordinator(Coordinator):
    """A pool ``p`` of members ``m1`` (requests and tokens) and ``m2`` (requests): the pool itself
    cannot be described (400, as the coordinator answers); grants name their member in turn."""

    def __init__(self, members: List[str]) -> None:
        turn = iter(members)
        super().__init__(
            acquire=lambda r: httpx.Response(200, json=grant(f"{len(self.sent('acquire'))}@m", resource=m,
                                                             member=m)) if (m := next(turn)) else None,
            release=lambda r: httpx.Response(200, json={"released": True}),
            report=lambda r: httpx.Response(200, json={"pausedForSeconds": 0.0}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        limits = {"m1": ["requests", "tokens"], "m2": ["requests"]}
        if request.method == "GET" and request.url.path.startswith("/v1/resources/"):
            self.calls.append(request)
            name = request.url.path.rsplit("/", 1)[1]
            if name == "p":
                return httpx.Response(400, json={"error": {"code": "INVALID_ARGUMENT", "status": 400, "message":
                                                           "'p' is a pool of m1, m2: its state is its members'"}})
            return httpx.Response(200, json={"name": name, "limit": {"rates": [{"dimension": d} for d in limits[name]]}})
        return super().__call__(request)


def test_a_pool_call_goes_upstream_with_its_members_key_and_reports_on_that_member() -> None:
    c = PoolCoordinator(["m1", "m2"])
    answers = iter([
        usage_answer({"prompt_tokens": 12, "total_tokens": 15}, 200, {"x-ratelimit-remaining-tokens": "900"}),
        usage_answer({"error": 1}, 429, {"retry-after-ms": "700", "x-ratelimit-remaining-requests": "0"}),
    ])
    up = Upstream(lambda r: next(answers)(r))
    client = sluice.Client("http://a:1", transport=httpx.MockTransport(c))
    t = sluice.openai.transport(client, pool="p", keys={"m1": "sk-one", "m2": "sk-two"},
                                wrapped=httpx.MockTransport(up))
    with httpx.Client(base_url="https://api.openai.com/v1", transport=t, headers=OPENAI_HEADERS) as http:
        assert [post(http, "/chat/completions", CHAT).status_code for _ in range(2)] == [200, 429]
    assert [r.headers["authorization"] for r in up.got] == ["Bearer sk-one", "Bearer sk-two"]
    assert [r.url.path for r in c.calls if r.url.path.endswith("/acquire")] == ["/v1/resources/p/acquire"] * 2
    # The load asks for every dimension a member has; a member's settle only for its own.
    assert [a["load"] for a in c.sent("acquire")] == [{"requests": 1, "tokens": 60}] * 2
    assert [b.get("usage") for b in c.sent("release")] == [{"tokens": 62}, None]
    reports = [r for r in c.calls if r.url.path.endswith("/report")]
    assert [r.url.path for r in reports] == ["/v1/resources/m1/report", "/v1/resources/m2/report"]
    assert json.loads(reports[1].content)["throttled"] is True


def test_a_pool_permit_names_its_member_and_keeps_the_pool_as_its_resource() -> None:
    c = PoolCoordinator(["m2"])
    with sluice.Client("http://a:1", transport=httpx.MockTransport(c)) as client:
        with client.acquire("p", tokens=5) as permit:  # the pool has no dimensions here: the members check
            assert (permit.resource, permit.member) == ("p", "m2")
    plain = grant()
    del plain["resource"]
    c2 = Coordinator(acquire=lambda r: httpx.Response(200, json=plain),
                     release=lambda r: httpx.Response(200, json={"released": True}))
    with sluice.Client("http://a:1", transport=httpx.MockTransport(c2)) as client:
        with client.acquire("r") as permit:
            assert permit.member == "r" == permit.resource


def test_an_async_pool_transport_uses_the_members_key() -> None:
    c = PoolCoordinator(["m2"])
    up = Upstream(usage_answer({"prompt_tokens": 12, "total_tokens": 15}))

    async def main() -> None:
        async with sluice.AsyncClient("http://a:1", transport=httpx.MockTransport(c)) as client:
            t = sluice.anthropic.transport(client, pool="p", keys={"m1": "sk-ant-1", "m2": "sk-ant-2"},
                                           wrapped=httpx.MockTransport(up))
            async with httpx.AsyncClient(base_url="https://api.anthropic.com/v1", transport=t,
                                         headers=ANTHROPIC_HEADERS) as http:
                await http.post("/messages", json={"model": "claude", "max_tokens": 5,
                                                   "messages": [{"role": "user", "content": "hi"}]})

    asyncio.run(main())
    assert up.got[0].headers["x-api-key"] == "sk-ant-2"


def test_a_member_without_a_key_and_bad_pool_arguments_say_what_to_fix() -> None:
    c = PoolCoordinator(["m2"])
    up = Upstream(usage_answer({"prompt_tokens": 1, "total_tokens": 2}))
    client = sluice.Client("http://a:1", transport=httpx.MockTransport(c))
    t = sluice.openai.transport(client, pool="p", keys={"m1": "sk-one"}, wrapped=httpx.MockTransport(up))
    with httpx.Client(base_url="https://api.openai.com/v1", transport=t, headers=OPENAI_HEADERS) as http:
        with pytest.raises(ValueError, match="granted member 'm2', but the transport has no key for it"):
            post(http, "/chat/completions", CHAT)
    assert up.got == [] and c.sent("release") == [{}]
    with pytest.raises(ValueError, match="without keys"):
        sluice.openai.transport(client, pool="p")
    with pytest.raises(ValueError, match="keys= without pool="):
        sluice.openai.transport(client, keys={"m1": "k"})
    with pytest.raises(ValueError, match=r"keys\['m1'\] is empty"):
        sluice.anthropic.transport(client, pool="p", keys={"m1": " "})


def test_an_azure_request_gets_its_members_key_in_api_key() -> None:
    c = PoolCoordinator(["m1"])
    up = Upstream(usage_answer({"prompt_tokens": 12, "total_tokens": 15}))
    client = sluice.Client("http://a:1", transport=httpx.MockTransport(c))
    t = sluice.openai.transport(client, pool="p", keys={"m1": "azure-one"}, wrapped=httpx.MockTransport(up))
    azure = {k: v for k, v in OPENAI_HEADERS.items() if k != "Authorization"}
    with httpx.Client(base_url="https://x.openai.azure.com/openai/deployments/d", transport=t,
                      headers={**azure, "api-key": "placeholder"}) as http:
        assert post(http, "/chat/completions", CHAT).status_code == 200
    assert up.got[0].headers["api-key"] == "azure-one" and "authorization" not in up.got[0].headers
