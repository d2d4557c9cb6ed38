"""The rate-limit headers of OpenAI, Azure OpenAI and Anthropic, read for reports, by the same
rules as the Java SDK (``ReportHeaders``):

- OpenAI: ``x-ratelimit-limit|remaining|reset-<dimension>``, resets as ``6m0s``, ``1s``, ``20ms``,
  ``1h2m3.5s`` (or a bare number of seconds);
- Azure OpenAI: ``x-ratelimit-remaining-<dimension>``, ``retry-after-ms``, ``x-ms-retry-after-ms``;
- Anthropic: ``anthropic-ratelimit-<dimension>-limit|remaining|reset``, resets as RFC 3339 times;
- ``retry-after`` in seconds (its HTTP-date form is not read).

A value that does not parse (not a count from 0 to 10**15, an unreadable reset, a pause that is not
a finite number up to 7 days) is dropped; a dimension whose headers contradict each other (remaining
above the limit, OpenAI-style and Anthropic headers that disagree) is dropped whole. What was
dropped is in ``Parsed.problems``; ``Warnings.once`` logs it once per resource per 5 minutes.
"""

from __future__ import annotations

import math
import re
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import logging

log = logging.getLogger("sluice")

Headers = Union[Mapping[str, str], Sequence[Tuple[str, str]]]

MAX_COUNT = 10 ** 15
MAX_WAIT = 7 * 86400.0
WARN_EVERY = 300.0

_DIMENSION = re.compile(r"[a-z0-9._-]{1,64}\Z")
_OPENAI = re.compile(r"x-ratelimit-(limit|remaining|reset)-(.+)\Z", re.S)
_ANTHROPIC = re.compile(r"anthropic-ratelimit-(.+)-(limit|remaining|reset)\Z", re.S)
_GO = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?\Z")
_DIGITS = re.compile(r"[0-9]{1,19}\Z")
_DELAY = re.compile(r"[0-9.][0-9.eE+-]*\Z")


class Dimension(NamedTuple):
    """One dimension's headers; a field is None when absent or dropped. ``reset`` in seconds."""
    limit: Optional[int]
    remaining: Optional[int]
    reset: Optional[float]


class Parsed(NamedTuple):
    dimensions: Dict[str, Dimension]
    retry_after: Optional[float]
    problems: List[str]

    def remaining(self) -> Dict[str, int]:
        return {d: v.remaining for d, v in self.dimensions.items() if v.remaining is not None}

    def limits(self) -> Dict[str, int]:
        return {d: v.limit for d, v in self.dimensions.items() if v.limit is not None}


def _shown(s: str) -> str:
    return s if len(s) <= 40 else s[:40] + "…"


def _count(value: str) -> Optional[int]:
    if not _DIGITS.match(value):
        return None
    n = int(value)
    return None if n > MAX_COUNT else n


def _delay(value: str, scale: float) -> Optional[float]:
    if not _DELAY.match(value):
        return None  # also refuses nan, inf, signs
    try:
        seconds = float(value) * scale
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds <= MAX_WAIT else None


def go_duration(value: str) -> Optional[float]:
    """OpenAI's reset durations in seconds, also a bare number of seconds; None if unreadable."""
    if not value or len(value) > 40:
        return None
    m = _GO.match(value)
    if m is None:
        return _delay(value, 1.0)
    h, mi, s, ms = m.groups()
    if h is None and mi is None and s is None and ms is None:
        return None
    seconds = (float(h or 0) * 3600 + float(mi or 0) * 60 + float(s or 0) + float(ms or 0) / 1000)
    return seconds if seconds <= MAX_WAIT else None


def until_time(value: str, now: float) -> Optional[float]:
    """Seconds from ``now`` (Unix time) to an RFC 3339 time, 0 if it passed; None if unreadable."""
    text = value.strip()
    if not re.match(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)\Z", text):
        return None
    text = text[:-1] + "+00:00" if text[-1] in "Zz" else text
    frac = re.search(r"\.(\d+)", text)
    if frac:  # fromisoformat before Python 3.11 takes at most 6 digits
        text = text.replace(frac.group(0), "." + (frac.group(1) + "000000")[:6])
    try:
        at = datetime.fromisoformat(text.replace("t", "T"))
    except ValueError:
        return None
    seconds = at.astimezone(timezone.utc).timestamp() - now
    if seconds > MAX_WAIT:
        return None
    return max(0.0, seconds)


def _items(headers: Optional[Headers]) -> List[Tuple[str, str]]:
    if headers is None:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    return [(str(k), str(v)) for k, v in items]


def parse(headers: Optional[Headers], now: Optional[float] = None) -> Parsed:
    """Reads every known header; ``now`` is Unix time, for RFC 3339 resets (default: the clock)."""
    now = time.time() if now is None else now
    problems: List[str] = []
    counts: Dict[str, Dict[str, List[Optional[int]]]] = {"openai": {}, "anthropic": {}}
    resets: Dict[str, float] = {}
    plain: Dict[str, str] = {}
    for name, raw in _items(headers):
        lower = name.lower().strip()
        value = raw.strip()
        o = _OPENAI.match(lower)
        a = None if o else _ANTHROPIC.match(lower)
        if o is None and a is None:
            plain[lower] = value
            continue
        family = "openai" if o else "anthropic"
        field, dim = (o.group(1), o.group(2)) if o else (a.group(2), a.group(1))
        if not _DIMENSION.match(dim):
            problems.append(f"{name}: '{_shown(dim)}' is not a dimension name")
            continue
        if field == "reset":
            reset = go_duration(value) if o else until_time(value, now)
            if reset is None:
                problems.append(f"{name}: '{_shown(value)}' is not a reset "
                                + ("duration such as 6m0s" if o else "time in RFC 3339"))
            else:
                resets[dim] = max(reset, resets.get(dim, 0.0))
            continue
        count = _count(value)
        if count is None:
            problems.append(f"{name}: '{_shown(value)}' is not a count from 0 to {MAX_COUNT}")
            continue
        counts[family].setdefault(dim, [None, None])[0 if field == "limit" else 1] = count

    dimensions: Dict[str, Dimension] = {}
    for dim in sorted(set(counts["openai"]) | set(counts["anthropic"]) | set(resets)):
        x = counts["openai"].get(dim, [None, None])
        y = counts["anthropic"].get(dim, [None, None])
        if any(x[i] is not None and y[i] is not None and x[i] != y[i] for i in (0, 1)):
            problems.append(f"{dim}: the OpenAI-style and Anthropic headers disagree")
            continue
        limit = x[0] if x[0] is not None else y[0]
        remaining = x[1] if x[1] is not None else y[1]
        if limit is not None and remaining is not None and remaining > limit:
            problems.append(f"{dim}: remaining {remaining} is above the limit {limit}")
            continue
        if limit == 0:
            problems.append(f"{dim}: a limit of 0 allows nothing, so it is not a limit")
            limit = None
        if limit is not None or remaining is not None or dim in resets:
            dimensions[dim] = Dimension(limit, remaining, resets.get(dim))
    return Parsed(dimensions, _retry_after(plain, problems), problems)


def _millis(plain: Dict[str, str], name: str, problems: List[str]) -> Optional[float]:
    value = plain.get(name)
    if value is None:
        return None
    d = _delay(value, 0.001)
    if d is None:
        problems.append(f"{name}: '{_shown(value)}' is not a number of milliseconds")
    return d


def _retry_after(plain: Dict[str, str], problems: List[str]) -> Optional[float]:
    ms = _millis(plain, "retry-after-ms", problems)
    ms_azure = _millis(plain, "x-ms-retry-after-ms", problems)
    if ms is not None and ms_azure is not None and ms != ms_azure:
        problems.append(f"retry-after-ms {ms * 1000:g} and x-ms-retry-after-ms {ms_azure * 1000:g} disagree:"
                        " the longer is used")
        return max(ms, ms_azure)
    if ms is not None or ms_azure is not None:
        return ms if ms is not None else ms_azure
    seconds = plain.get("retry-after")
    if seconds is None:
        return None
    d = _delay(seconds, 1.0)
    if d is None and "," not in seconds:  # an HTTP-date is valid, just not read
        problems.append(f"retry-after: '{_shown(seconds)}' is not a number of seconds")
    return d


class Warnings:
    """One WARN per resource per ``WARN_EVERY`` seconds, not one per call."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: Dict[str, float] = {}
        self._lock = threading.Lock()

    def once(self, resource: str, parsed: Parsed) -> bool:
        if not parsed.problems:
            return False
        now = self._clock()
        with self._lock:
            last = self._last.get(resource)
            if last is not None and now - last < WARN_EVERY:
                return False
            self._last[resource] = now
        log.warning("ignoring rate-limit headers for %r (the next such WARN for it comes after %ds at the"
                    " earliest): %s", resource, WARN_EVERY, "; ".join(parsed.problems))
        return True


WARNINGS = Warnings()
