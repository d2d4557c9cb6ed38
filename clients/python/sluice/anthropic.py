"""A drop-in httpx transport that puts Anthropic's client behind a Sluice coordinator.

::

    import anthropic, httpx, sluice

    client = anthropic.Anthropic(http_client=httpx.Client(transport=sluice.anthropic.transport(sluice.Client())))

``POST /v1/messages`` is metered; every other request (token counting, batches, models) passes
through untouched. See clients/python/README.md ("Drop-in transports").
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, Union

import httpx

from . import _metering
from ._metering import AsyncTransport, Plan, SyncTransport, amount, budget, count_tokens, text_of

__all__ = ["transport", "AnthropicApi"]

#: Output budget counted for a call without max_tokens (Anthropic refuses it anyway).
DEFAULT_MAX_TOKENS = 1024

#: Anthropic's remaining and limit headers of the dimensions this transport spells its own way
#: (``input_tokens``), by the names the client reads for those (``x-ratelimit-remaining-input_tokens``).
_OURS = {f"anthropic-ratelimit-{a}-{field}": f"x-ratelimit-{field}-{ours}"
         for a, ours in (("input-tokens", "input_tokens"), ("output-tokens", "output_tokens"))
         for field in ("remaining", "limit")}


def _usage_event(event: Any) -> Optional[Any]:
    """``message_start`` carries the input tokens (and 1 output token so far), ``message_delta``
    the output tokens (cumulative); the stream's reader merges them."""
    if not isinstance(event, dict):
        return None
    if event.get("type") == "message_start":
        message = event.get("message")
        return message.get("usage") if isinstance(message, dict) else None
    if event.get("type") == "message_delta":
        return event.get("usage")
    return None


def _settle(usage: Any) -> Dict[str, int]:
    # Input tokens count against ITPM as written and as cache writes; cache reads do not.
    used_in = amount(usage, "input_tokens") + amount(usage, "cache_creation_input_tokens", optional=True)
    used_out = amount(usage, "output_tokens")
    return {"input_tokens": used_in, "output_tokens": used_out, "tokens": used_in + used_out}


class AnthropicApi(_metering.Api):
    """What a Messages call costs in Anthropic's terms: ``requests`` 1, ``input_tokens`` the
    prompt (system, messages, tools), ``output_tokens`` its ``max_tokens`` (Anthropic counts that
    against OTPM at the start and corrects it at the end, as the settle does), ``tokens`` both."""

    name = "anthropic"

    def meters(self, path: str) -> bool:
        return path.rstrip("/").endswith("/messages")

    def plan(self, path: str, body: Dict[str, Any]) -> Plan:
        prompt = count_tokens(text_of(body.get("system")))
        messages = body.get("messages")
        for m in messages if isinstance(messages, list) else [messages]:
            prompt += 3 + count_tokens(text_of(m.get("content"))) if isinstance(m, dict) else count_tokens(text_of(m))
        prompt += count_tokens(text_of(body.get("tools"))) if body.get("tools") else 0
        output = budget(body, "max_tokens") or DEFAULT_MAX_TOKENS
        prompt = max(1, prompt)
        return Plan({"requests": 1, "input_tokens": prompt, "output_tokens": output, "tokens": prompt + output},
                    _settle, _usage_event).with_model(body)

    def report(self, headers: httpx.Headers) -> Tuple[Optional[Dict[str, str]], bool]:
        out: Dict[str, str] = {}
        for name, value in headers.items():
            low = name.lower()
            if low == "retry-after":
                out["retry-after"] = value
            elif low.startswith("anthropic-ratelimit-"):
                # As Anthropic names them (the dimensions `sluice limit set --learn anthropic`
                # starts with: input-tokens), and as this transport meters them (input_tokens):
                # the coordinator takes what remains and the limits of the dimensions its limit has.
                out[low] = value
                if low in _OURS:
                    out[_OURS[low]] = value
        return (out or None), "retry-after" in out

    def authorize(self, request: httpx.Request, key: str) -> None:
        request.headers["x-api-key"] = key


def transport(client: Any, resource: str = "anthropic", *, lane: Optional[str] = None,
              timeout: Optional[float] = None, wrapped: Any = None, pool: Optional[str] = None,
              keys: Optional[Mapping[str, str]] = None) -> Union[SyncTransport, AsyncTransport]:
    """An httpx transport that meters Anthropic's Messages calls through ``client``.

    :param client: a :class:`sluice.Client` (gives an ``httpx.BaseTransport``, for
        ``httpx.Client``) or a :class:`sluice.AsyncClient` (an ``httpx.AsyncBaseTransport``).
    :param resource: the coordinator's resource; its limit may have any of ``requests``,
        ``input_tokens``, ``output_tokens`` and ``tokens`` (input + output): only those it has are
        asked for. Default ``"anthropic"``.
    :param lane: lane of every call (default: the client's); one call's own with the request
        header ``X-Sluice-Lane``, stripped before sending.
    :param timeout: seconds an acquire waits (default: the client's).
    :param wrapped: the transport that sends (default ``httpx.HTTPTransport()`` /
        ``httpx.AsyncHTTPTransport()``).
    :param pool: acquire on this pool instead of ``resource``: each call goes upstream with the
        ``x-api-key`` of the member that granted (``permit.member``), and its 429s and headers
        are reported on that member, so only it pauses. Needs ``keys``.
    :param keys: with ``pool``, each member's API key. The keys stay here.
    """
    return _metering.make(AnthropicApi(), client, resource, lane, timeout, wrapped, pool, keys)
