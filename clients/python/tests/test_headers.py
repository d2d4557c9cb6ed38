"""The provider header parser (sluice._headers) on recorded header sets of each provider, the
usual ones and the odd ones; the same cases as the Java SDK's ReportHeadersTest."""

from __future__ import annotations

import logging
import random

import pytest

from sluice import _headers as h
from sluice._args import remaining_from
from sluice._core import report_args

NOW = 1796450400.0  # 2026-12-05T06:00:00Z: the recorded Anthropic resets are relative to it


def test_now_is_the_instant_the_recorded_anthropic_sets_are_relative_to() -> None:
    assert h.until_time("2026-12-05T06:00:00Z", NOW) == 0.0
    assert h.until_time("2026-12-05T06:00:01Z", NOW) == 1.0


def test_openai_chat_completion() -> None:
    p = h.parse({"x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "200000",
                 "x-ratelimit-remaining-requests": "499", "x-ratelimit-remaining-tokens": "199913",
                 "x-ratelimit-reset-requests": "120ms", "x-ratelimit-reset-tokens": "26ms"}, NOW)
    assert p.dimensions["requests"] == h.Dimension(500, 499, 0.12)
    assert p.dimensions["tokens"] == h.Dimension(200000, 199913, 0.026)
    assert p.limits() == {"requests": 500, "tokens": 200000}
    assert p.problems == [] and p.retry_after is None


@pytest.mark.parametrize("text,seconds", [("6m0s", 360.0), ("1s", 1.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5),
                                          ("0s", 0.0), ("2.5", 2.5), ("", None), ("6m0", None), ("-1s", None),
                                          ("9999999h", None)])
def test_openai_reset_durations(text: str, seconds: float) -> None:
    assert h.go_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_openai_odd_ones() -> None:
    p = h.parse([("X-RateLimit-Remaining-Requests", "0"), ("x-ratelimit-reset-requests", "0s"),
                 ("x-ratelimit-limit-tokens", "-40000"), ("x-ratelimit-remaining-tokens", "99999999999999999999"),
                 ("x-ratelimit-reset-tokens", "soon")], NOW)
    assert p.dimensions == {"requests": h.Dimension(None, 0, 0.0)}
    assert len(p.problems) == 3
    assert any("-40000" in s for s in p.problems) and any("6m0s" in s for s in p.problems)


def test_a_contradictory_dimension_is_dropped_whole() -> None:
    p = h.parse({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "900",
                 "x-ratelimit-limit-tokens": "0", "x-ratelimit-remaining-tokens": "0"}, NOW)
    assert "requests" not in p.dimensions
    assert p.limits() == {} and p.remaining() == {"tokens": 0}
    assert any("remaining 900 is above the limit 500" in s for s in p.problems)


def test_azure_openai() -> None:
    p = h.parse({"x-ratelimit-remaining-requests": "119", "x-ratelimit-remaining-tokens": "119480",
                 "retry-after-ms": "1500", "x-ms-retry-after-ms": "1500", "retry-after": "2"}, NOW)
    assert p.remaining() == {"requests": 119, "tokens": 119480}
    assert p.limits() == {} and p.retry_after == 1.5 and p.problems == []


def test_azure_odd_ones() -> None:
    assert h.parse({"x-ms-retry-after-ms": "250"}).retry_after == 0.25
    disagree = h.parse({"retry-after-ms": "100", "x-ms-retry-after-ms": "900"})
    assert disagree.retry_after == 0.9 and "disagree" in disagree.problems[0]
    assert h.parse({"x-ms-retry-after-ms": "-5", "retry-after": "3"}).retry_after == 3.0
    assert h.parse({"retry-after-ms": "1e300"}).retry_after is None
    assert h.parse({"retry-after-ms": "Infinity"}).retry_after is None
    assert h.parse({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}).problems == []


def test_anthropic_messages() -> None:
    p = h.parse({
        "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-12-05T06:00:01Z",
        "anthropic-ratelimit-input-tokens-limit": "40000", "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-input-tokens-reset": "2026-12-05T06:00:01.5+00:00",
        "anthropic-ratelimit-output-tokens-limit": "8000", "anthropic-ratelimit-output-tokens-remaining": "8000",
        "anthropic-ratelimit-output-tokens-reset": "2026-12-05T05:59:00Z",
        "anthropic-ratelimit-tokens-limit": "48000", "anthropic-ratelimit-tokens-remaining": "47000",
        "anthropic-ratelimit-tokens-reset": "2026-12-05T07:00:00+01:00",
        "retry-after": "4"}, NOW)
    assert p.limits() == {"requests": 50, "input-tokens": 40000, "output-tokens": 8000, "tokens": 48000}
    assert p.dimensions["requests"].reset == 1.0
    assert p.dimensions["input-tokens"].reset == 1.5
    assert p.dimensions["output-tokens"].reset == 0.0
    assert p.dimensions["tokens"].reset == 0.0
    assert p.retry_after == 4.0 and p.problems == []


def test_anthropic_odd_ones() -> None:
    p = h.parse({"anthropic-ratelimit-requests-remaining": "3", "anthropic-ratelimit-requests-reset": "tomorrow",
                 "anthropic-ratelimit-tokens-limit": "1000000000000000000",
                 "anthropic-ratelimit-tokens-reset": "2030-01-01T00:00:00Z",
                 "anthropic-ratelimit-Bad Name!-limit": "5"}, NOW)
    assert p.dimensions == {"requests": h.Dimension(None, 3, None)}
    assert len(p.problems) == 4


def test_families_that_disagree_on_a_dimension_are_both_dropped() -> None:
    p = h.parse({"x-ratelimit-limit-requests": "500", "anthropic-ratelimit-requests-limit": "50",
                 "x-ratelimit-remaining-tokens": "10", "anthropic-ratelimit-tokens-remaining": "10"}, NOW)
    assert "requests" not in p.dimensions and p.remaining() == {"tokens": 10}
    assert len(p.problems) == 1 and "disagree" in p.problems[0]


def test_one_warning_per_resource_then_again_after_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    w = h.Warnings(lambda: now[0])
    bad = h.parse({"x-ratelimit-remaining-tokens": "lots"})
    with caplog.at_level(logging.WARNING, logger="sluice"):
        assert w.once("openai", bad) and not w.once("openai", bad)
        assert w.once("anthropic", bad) and not w.once("openai", h.parse({}))
        now[0] += h.WARN_EVERY - 0.001
        assert not w.once("openai", bad)
        now[0] += 0.001
        assert w.once("openai", bad)
    assert len(caplog.records) == 3 and "lots" in caplog.records[0].getMessage()


def test_the_report_path_keeps_what_is_left_and_drops_the_rest() -> None:
    assert remaining_from({"X-RateLimit-Remaining-Tokens": "1500", "x-ratelimit-remaining-images": "lots",
                           "x-ratelimit-limit-tokens": "90000"}, "py.headers") == {"tokens": 1500}


def test_a_report_carries_the_providers_limits_as_the_java_sdk_does() -> None:
    # What a report sends: resource, pause, remaining, limits. A limit of 0, one below what remains,
    # one past 10**15 or not a number is dropped: never a learned limit.
    assert report_args("py.headers", None, {
        "x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
        "X-RateLimit-Limit-Tokens": "200000", "x-ratelimit-remaining-tokens": "0", "retry-after-ms": "250",
        "x-ratelimit-limit-images": "0", "x-ratelimit-limit-audio": "lots",
        "x-ratelimit-limit-embeddings": str(h.MAX_COUNT + 1),
        "x-ratelimit-limit-files": "5", "x-ratelimit-remaining-files": "6"}) == (
        "py.headers", 0.25, {"requests": 499, "tokens": 0}, {"requests": 500, "tokens": 200000})
    # Anthropic's own names; an explicit pause wins over the headers'.
    assert report_args("py.headers", 2.0, {
        "anthropic-ratelimit-input-tokens-limit": "40000", "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-requests-limit": "50", "retry-after": "9"}) == (
        "py.headers", 2.0, {"input-tokens": 39000}, {"input-tokens": 40000, "requests": 50})
    assert report_args("py.headers", None, None) == ("py.headers", None, {}, {})


def test_random_header_sets_never_raise_and_keep_only_bucket_safe_values() -> None:
    # The fuzz test's property, on seeded random input (the Java SDK fuzzes the same rules).
    names = ["x-ratelimit-limit-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
             "retry-after", "retry-after-ms", "x-ms-retry-after-ms", "anthropic-ratelimit-tokens-limit",
             "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-input-tokens-reset"]
    alphabet = "0123456789.-+eEhmsTZ: :,abcxyz\u00e9\x00"
    rnd = random.Random(20)
    for _ in range(3000):
        headers = []
        for _ in range(rnd.randint(0, 8)):
            name = rnd.choice(names) if rnd.random() < 0.8 else "".join(rnd.choice(alphabet) for _ in range(12))
            value = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
            if rnd.random() < 0.3:
                value = str(rnd.randint(-10, 10 ** 19))
            headers.append((name.upper() if rnd.random() < 0.2 else name, value))
        p = h.parse(headers, rnd.uniform(0, 4e9))
        for d, v in p.dimensions.items():
            assert v.limit is None or 1 <= v.limit <= h.MAX_COUNT
            assert v.remaining is None or 0 <= v.remaining <= (v.limit if v.limit is not None else h.MAX_COUNT)
            assert v.reset is None or 0 <= v.reset <= h.MAX_WAIT
        assert p.retry_after is None or 0 <= p.retry_after <= h.MAX_WAIT
