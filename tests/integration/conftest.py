"""Fixtures shared by the gateway tests."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests.integration.gateway_harness import running


@pytest.fixture(scope="module")
def keyed_sample(tmp_path_factory):
    """The recorded demo session (`replay.sample`) with a key store, one per
    test module: replay, feed and whatif tests read it, some as an operator."""
    from gateway.keys import initialise
    from replay.sample import record_sample
    data = tmp_path_factory.mktemp("keyed-sample")
    record_sample(data)
    initialise(data)
    return data


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask 022, so only modes the code asks for make files private."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def exchange(tmp_path):
    """A running server on a fresh data directory: (data dir, server)."""
    with running(tmp_path) as server:
        yield tmp_path, server


@pytest.fixture
def shifted_clock(monkeypatch):
    """Shift the server's wall clock: returns a one-item list holding the
    offset in ns (set it to move the trading day); monotonic time is real."""
    import time as real_time
    from types import SimpleNamespace

    import gateway.server

    offset = [0]
    clock = SimpleNamespace(time_ns=lambda: real_time.time_ns() + offset[0],
                            monotonic=real_time.monotonic, monotonic_ns=real_time.monotonic_ns)
    monkeypatch.setattr(gateway.server, "time", clock)
    return offset
