"""Arguments, checked before anything is sent (every refusal names the fix), and the upstream's
rate-limit headers read for reports."""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from . import _headers

log = logging.getLogger("sluice")

DEFAULT_URL = "http://localhost:7421"
LANES = ("interactive", "default", "batch")
MAX_UNITS = 10 ** 18
_DIMENSION = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_RESOURCE = re.compile(r"[A-Za-z0-9._:/-]{1,200}\Z")

Load = Dict[str, int]
Headers = Union[Mapping[str, str], Sequence[Tuple[str, str]]]


def parse_urls(urls: Union[str, Sequence[str], None]) -> List[str]:
    """One URL, a comma-separated list, or a sequence; default ``$SLUICE_URL``, else localhost:7421."""
    if urls is None:
        urls = os.environ.get("SLUICE_URL") or DEFAULT_URL
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    out: List[str] = []
    for raw in items:
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError(f"coordinator URL {raw!r} is empty: give http://host:port of a coordinator's HTTP port"
                             " (default 7421), several separated by commas")
        u = raw.strip().rstrip("/")
        parts = urlsplit(u)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or (parts.path not in ("", "/")) \
                or parts.query or (port is None and ":" in parts.netloc.rsplit("@", 1)[-1].rsplit("]", 1)[-1]):
            raise ValueError(f"coordinator URL {raw!r} is not http(s)://host:port: give the coordinator's HTTP port,"
                             " e.g. http://127.0.0.1:7421 (no path)")
        out.append(u)
    if not out:
        raise ValueError("no coordinator URL given: pass e.g. 'http://127.0.0.1:7421' or set SLUICE_URL")
    return out


def check_resource(resource: Any) -> str:
    if not isinstance(resource, str) or not _RESOURCE.match(resource):
        raise ValueError(f"resource name {resource!r} is invalid: use 1-200 characters of A-Z a-z 0-9 . _ : / -,"
                         " e.g. 'openai'")
    return resource


def check_load(load: Optional[Mapping[str, Any]], dimensions: Mapping[str, Any], what: str) -> Load:
    """Merges ``load`` and keyword ``dimensions``; refuses names, negatives and non-integers."""
    if load is not None and not isinstance(load, Mapping):
        raise TypeError(f"{what} must be a mapping of dimension to whole number, such as {{'tokens': 1200}},"
                        f" not {type(load).__name__}")
    merged: Dict[str, Any] = dict(load or {})
    for name, amount in dimensions.items():
        if name in merged:
            raise ValueError(f"{what} names dimension {name!r} twice: name each dimension once with the total amount")
        merged[name] = amount
    out: Load = {}
    for name, amount in merged.items():
        if not isinstance(name, str) or not _DIMENSION.match(name):
            raise ValueError(f"{what} dimension name {name!r} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ -,"
                             " e.g. 'requests' or 'tokens'")
        if isinstance(amount, bool) or not isinstance(amount, int):
            if isinstance(amount, float) and amount.is_integer():
                amount = int(amount)
            else:
                raise TypeError(f"{what} {name}={amount!r} is not a whole number: give an int >= 0,"
                                f" e.g. {name}=1200 (round estimates up)")
        if amount < 0:
            raise ValueError(f"{what} {name}={amount} is negative: amounts must be >= 0 (to give back an"
                             " over-estimate, settle the permit with what the call really used)")
        if amount > MAX_UNITS:
            raise ValueError(f"{what} {name}={amount} is out of range: use 0 to {MAX_UNITS}")
        out[name] = amount
    return out


#: Token counts the coordinator prices in ``usd`` when a call names its model (``sluice price set``):
#: they need not be dimensions of the limit then.
PRICED_TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens")

_MODEL = re.compile(r"[A-Za-z0-9._:/@+-]{1,200}")


def check_model(model: Any) -> Optional[str]:
    """A model name as the price table takes it, or None for none."""
    if model is None:
        return None
    if not isinstance(model, str) or not _MODEL.fullmatch(model):
        raise ValueError(f"model must be 1-200 characters of A-Z a-z 0-9 . _ : / @ + -, as `sluice price set` names"
                         f" it, not {model!r}")
    return model


def check_known(resource: str, load: Load, known: Optional[Sequence[str]], what: str, priced: bool = False) -> None:
    """Refuses a dimension the resource's limit does not have (``requests`` is always known, and
    with a model the token counts it prices); ``known`` None (a pool) leaves the check to the
    coordinator."""
    if known is None:
        return
    for name in load:
        if name != "requests" and name not in known and not (priced and name in PRICED_TOKENS):
            raise ValueError(f"{what} names dimension {name!r} but resource {resource!r} limits only"
                             f" {', '.join(sorted(known)) or 'requests'}: fix the name, or add a rate for it to the"
                             " limit (the keyword arguments lane=, timeout= and tenant= are options; every other one is a"
                             " dimension)")


_TENANT = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def check_tenant(tenant: Any, what: str = "tenant") -> Optional[str]:
    """A tenant name as the coordinator takes it, or None for none (the tenant ``default``)."""
    if tenant is None:
        return None
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise ValueError(f"{what} {tenant!r} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ : -, such as 'search'"
                         " (or None for the default tenant)")
    return tenant


def check_lane(lane: Any) -> str:
    if lane not in LANES:
        raise ValueError(f"lane {lane!r} is unknown: use 'interactive', 'default' or 'batch'")
    return lane


def check_timeout(timeout: Any, what: str = "timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout):
        raise TypeError(f"{what} must be seconds as a number (0 tries once), not {timeout!r}")
    if timeout < 0 or timeout > 86400:
        raise ValueError(f"{what}={timeout} is out of range: give seconds >= 0 (0 tries once), at most a day")
    return float(timeout)


def retry_after_from(headers: Optional[Headers]) -> Optional[float]:
    """The pause asked for: ``retry-after-ms`` or Azure's ``x-ms-retry-after-ms``, else ``retry-after`` in
    seconds; None when none is usable (the rules of ``_headers``, as the Java SDK)."""
    return _headers.parse(headers).retry_after


def remaining_from(headers: Optional[Headers], resource: Optional[str] = None) -> Load:
    """What is left, by lower-case dimension, from OpenAI's, Azure's and Anthropic's headers; unusable
    or contradictory values dropped (one WARN per resource now and then when ``resource`` is given)."""
    parsed = _headers.parse(headers)
    if resource is not None:
        _headers.WARNINGS.once(resource, parsed)
    return parsed.remaining()


def limits_from(headers: Optional[Headers]) -> Load:
    """The provider's per-minute limits, by lower-case dimension (what a learning resource takes)."""
    return _headers.parse(headers).limits()


def report_from(headers: Optional[Headers], resource: str) -> _headers.Parsed:
    """The headers read once for a report: what remains, the provider's limits and the pause asked
    for, unusable or contradictory values dropped (one WARN per resource now and then)."""
    parsed = _headers.parse(headers)
    _headers.WARNINGS.once(resource, parsed)
    return parsed


def _lower(headers: Optional[Headers]) -> Dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if hasattr(headers, "items") else headers
    return {str(k).lower(): str(v) for k, v in items}


