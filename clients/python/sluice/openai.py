"""A drop-in httpx transport that puts OpenAI's client behind a Sluice coordinator.

::

    import httpx, openai, sluice

    client = openai.OpenAI(http_client=httpx.Client(transport=sluice.openai.transport(sluice.Client())))
    aclient = openai.AsyncOpenAI(http_client=httpx.AsyncClient(transport=sluice.openai.transport(sluice.AsyncClient())))

Chat completions, completions, responses and embeddings are metered; every other request passes
through untouched. See clients/python/README.md ("Drop-in transports").
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, Union

import httpx

from . import _metering
from ._metering import AsyncTransport, Plan, SyncTransport, amount, budget, count, count_tokens, text_of

__all__ = ["transport", "OpenAiApi"]

#: Completion budget counted for a call that names no max_tokens / max_completion_tokens / max_output_tokens.
DEFAULT_MAX_TOKENS = 256
#: OpenAI's own default max_tokens of the legacy completions endpoint.
COMPLETIONS_MAX_TOKENS = 16
#: The endpoints metered (path suffixes; the base URL may be OpenAI's, Azure's or a proxy's).
_ENDPOINTS = ("/chat/completions", "/completions", "/responses", "/embeddings")


def _usage_event(event: Any) -> Optional[Any]:
    """A chat or completions stream's usage: the last chunk when ``include_usage`` is on (the
    others carry ``usage: null``); a responses stream's: its ``response.completed`` event."""
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    if isinstance(kind, str) and kind.startswith("response."):
        inner = event.get("response")
        return inner.get("usage") if isinstance(inner, dict) else None
    return event.get("usage")


def _texts(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return text_of(value)


class OpenAiApi(_metering.Api):
    """What each OpenAI endpoint costs, in OpenAI's terms: ``requests`` 1 and ``tokens`` the prompt
    plus the completion budget it reserves (n × max_tokens), as OpenAI counts against TPM."""

    name = "openai"

    def __init__(self, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self.default_max_tokens = default_max_tokens

    def meters(self, path: str) -> bool:
        return path.rstrip("/").endswith(_ENDPOINTS)

    def plan(self, path: str, body: Dict[str, Any]) -> Plan:
        return self._plan(path, body).with_model(body)

    def _plan(self, path: str, body: Dict[str, Any]) -> Plan:
        path = path.rstrip("/")
        if path.endswith("/chat/completions"):
            return self._chat(body)
        if path.endswith("/completions"):
            return self._reserving(count_tokens(_texts(body.get("prompt"))), body,
                                   budget(body, "max_tokens") or COMPLETIONS_MAX_TOKENS, True,
                                   "prompt_tokens", "total_tokens")
        if path.endswith("/responses"):
            return self._responses(body)
        return self._embeddings(body)

    def _chat(self, body: Dict[str, Any]) -> Plan:
        messages = body.get("messages")
        prompt = 3  # the reply's priming, as OpenAI's cookbook counts
        for m in messages if isinstance(messages, list) else [messages]:
            if isinstance(m, dict):
                prompt += 3 + count_tokens(str(m.get("role", ""))) + count_tokens(text_of(m.get("content")))
                prompt += count_tokens(str(m["name"])) if isinstance(m.get("name"), str) else 0
            else:
                prompt += count_tokens(text_of(m))
        prompt += count_tokens(text_of(body.get("tools"))) if body.get("tools") else 0
        given = budget(body, "max_completion_tokens", "max_tokens")
        return self._reserving(prompt, body, given or self.default_max_tokens, given is not None,
                               "prompt_tokens", "total_tokens")

    def _responses(self, body: Dict[str, Any]) -> Plan:
        prompt = count_tokens(text_of(body.get("instructions")))
        items = body.get("input")
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict) and "content" in item:
                prompt += 3 + count_tokens(text_of(item.get("content")))
            else:
                prompt += count_tokens(text_of(item))
        prompt += count_tokens(text_of(body.get("tools"))) if body.get("tools") else 0
        given = budget(body, "max_output_tokens")
        return self._reserving(prompt, {}, given or self.default_max_tokens, given is not None,
                               "input_tokens", "total_tokens")

    def _reserving(self, prompt: int, body: Dict[str, Any], per_choice: int, given: bool,
                   prompt_field: str, total_field: str) -> Plan:
        n = count(body.get("n"))
        reserved = n * per_choice

        def settle(usage: Any) -> Dict[str, int]:
            # What OpenAI counted: the real prompt plus the budget it reserved; the total when
            # the call named no budget (then nothing was reserved but what the reply used).
            # input_tokens and output_tokens are what it bills, for a limit that counts usd.
            used_in, used_total = amount(usage, prompt_field), amount(usage, total_field)
            priced = {"input_tokens": used_in, "output_tokens": max(0, used_total - used_in)}
            if given:
                return {"tokens": used_in + reserved, **priced}
            return {"tokens": used_total, **priced}

        return Plan({"requests": 1, "tokens": max(1, prompt + reserved), "input_tokens": prompt,
                     "output_tokens": reserved}, settle, _usage_event)

    def _embeddings(self, body: Dict[str, Any]) -> Plan:
        inputs = body.get("input")
        if isinstance(inputs, str):
            tokens = count_tokens(inputs)
        elif isinstance(inputs, list) and all(isinstance(i, int) for i in inputs):
            tokens = len(inputs)
        elif isinstance(inputs, list):
            tokens = sum(len(i) if isinstance(i, list) else count_tokens(text_of(i)) for i in inputs)
        else:
            tokens = count_tokens(text_of(inputs))
        return Plan({"requests": 1, "tokens": max(1, tokens), "input_tokens": tokens},
                    lambda usage: {"tokens": amount(usage, "total_tokens"), "input_tokens": amount(usage, "total_tokens")},
                    _usage_event)

    def report(self, headers: httpx.Headers) -> Tuple[Optional[Dict[str, str]], bool]:
        # The limits too: a resource set with --learn openai takes its rates from them.
        out = {k.lower(): v for k, v in headers.items()
               if k.lower() in ("retry-after", "retry-after-ms")
               or k.lower().startswith(("x-ratelimit-remaining-", "x-ratelimit-limit-"))}
        return (out or None), ("retry-after" in out or "retry-after-ms" in out)

    def authorize(self, request: httpx.Request, key: str) -> None:
        # Azure OpenAI reads api-key; OpenAI and compatible APIs a bearer token.
        if "api-key" in request.headers:
            request.headers["api-key"] = key
        else:
            request.headers["Authorization"] = f"Bearer {key}"


def transport(client: Any, resource: str = "openai", *, lane: Optional[str] = None,
              timeout: Optional[float] = None, wrapped: Any = None,
              default_max_tokens: int = DEFAULT_MAX_TOKENS, pool: Optional[str] = None,
              keys: Optional[Mapping[str, str]] = None) -> Union[SyncTransport, AsyncTransport]:
    """An httpx transport that meters OpenAI's calls through ``client``.

    :param client: a :class:`sluice.Client` (gives an ``httpx.BaseTransport``, for
        ``httpx.Client``) or a :class:`sluice.AsyncClient` (an ``httpx.AsyncBaseTransport``).
    :param resource: the coordinator's resource, whose limit has ``requests`` and/or ``tokens``
        (a dimension it lacks is not asked for); default ``"openai"``.
    :param lane: lane of every call (default: the client's); one call's own with the request
        header ``X-Sluice-Lane`` (``extra_headers=`` in the OpenAI client), stripped before sending.
    :param timeout: seconds an acquire waits (default: the client's).
    :param wrapped: the transport that sends (default ``httpx.HTTPTransport()`` /
        ``httpx.AsyncHTTPTransport()``; give one for proxies, TLS or pool settings).
    :param default_max_tokens: the completion budget counted for a call that names none;
        default 256. The settle corrects it.
    :param pool: acquire on this pool instead of ``resource``: each call goes upstream with the
        key of the member that granted (``permit.member``), and its 429s and headers are
        reported on that member, so only it pauses. Needs ``keys``.
    :param keys: with ``pool``, each member's API key (``{"proj-a": "sk-...", ...}``); it
        replaces the request's ``Authorization`` (or Azure's ``api-key``). The keys stay here.
    """
    if isinstance(default_max_tokens, bool) or not isinstance(default_max_tokens, int) or default_max_tokens < 0:
        raise ValueError(f"default_max_tokens={default_max_tokens!r}: give the usual reply length in tokens, >= 0")
    return _metering.make(OpenAiApi(default_max_tokens), client, resource, lane, timeout, wrapped, pool, keys)
