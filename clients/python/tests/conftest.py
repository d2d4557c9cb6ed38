"""Fixtures of the tests against a real coordinator (tests/test_coordinator.py).

They need ``SLUICE_URL`` (a coordinator's HTTP port with the limits of tests/limits.txt) and,
with keys on, ``SLUICE_API_KEY`` (a worker key for ``py.*``). Without ``SLUICE_URL`` they are
skipped, unless ``SLUICE_REQUIRE_COORDINATOR=1`` (PythonClientIT sets it), which fails instead.
``SLUICE_SUMMARY`` names a file where the session writes what the clients saw, per resource, for
PythonClientIT to compare with the coordinator's counters.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any, Dict, List

import pytest

import sluice

URL = os.environ.get("SLUICE_URL")
_clients: List[Any] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "coordinator: needs a real coordinator (SLUICE_URL)")
    # The Ctrl-C tests send SIGINT to the main thread. A process started in the background by a
    # shell without job control inherits SIGINT ignored, and Python then installs no handler:
    # the signal would be dropped and those tests would wait out their timeouts. Handle it as an
    # interactive run does.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    if URL:
        return
    if os.environ.get("SLUICE_REQUIRE_COORDINATOR") == "1":
        raise pytest.UsageError("SLUICE_REQUIRE_COORDINATOR=1 but SLUICE_URL is not set: give the coordinator's"
                                " HTTP URL, e.g. SLUICE_URL=http://127.0.0.1:7421")
    skip = pytest.mark.skip(reason="needs a coordinator: set SLUICE_URL (see clients/python/README.md)")
    for item in items:
        if "coordinator" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def make_client():
    """Makes sync clients of the test coordinator, closed after the test, counted in the summary."""
    made: List[sluice.Client] = []

    def make(**kw: Any) -> sluice.Client:
        c = sluice.Client(URL, **kw)
        made.append(c)
        _clients.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def make_async():
    """Makes asyncio clients (close them with ``async with``), counted in the summary."""

    def make(**kw: Any) -> sluice.AsyncClient:
        c = sluice.AsyncClient(URL, **kw)
        _clients.append(c)
        return c

    return make


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("SLUICE_SUMMARY")
    if not path:
        return
    summary: Dict[str, Dict[str, int]] = {"granted": {}, "timedOut": {}, "cancelled": {}}
    for c in _clients:
        for resource, counts in c._core.counts.items():
            for what, n in counts.items():
                summary[what][resource] = summary[what].get(resource, 0) + n
    with open(path, "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
