"""The broker throttle: at most a second's worth of requests at once, then
the rate, however long the broker was idle before (a fake clock)."""

from __future__ import annotations

from types import SimpleNamespace

from gateway import server as gateway_server
from gateway.server import Server

SECOND = 10**9


def throttle(monkeypatch, rate: int):
    clock = [1_000 * SECOND]
    monkeypatch.setattr(gateway_server.time, "monotonic_ns", lambda: clock[0])
    server = Server.__new__(Server)              # only its throttle
    server.config = SimpleNamespace(max_requests_per_second=rate)
    server.allowance = {}

    def passed(n: int) -> int:
        return sum(not server._throttled("b1") for _ in range(n))
    return clock, passed, server


def test_a_burst_is_a_seconds_worth_even_after_a_long_idle(monkeypatch):
    clock, passed, server = throttle(monkeypatch, 1_000)
    assert passed(1_500) == 1_000                # a second's worth at once
    clock[0] += 5 * SECOND                       # idle: the allowance does not pile up
    assert passed(3_000) == 1_000
    clock[0] += SECOND // 100                    # 10 ms: 10 more
    assert passed(100) == 10
    assert server._throttled("b2") is False      # each broker has its own


def test_a_steady_rate_passes_and_a_faster_one_is_cut_to_it(monkeypatch):
    clock, passed, _ = throttle(monkeypatch, 1_000)
    assert passed(1_000) == 1_000
    total = 0
    for _ in range(2_000):                       # two seconds, 2 requests a ms
        clock[0] += SECOND // 1_000
        total += passed(2)
    assert total == 2_000                        # 1 a ms


def test_a_rate_that_does_not_divide_a_second_is_kept_exactly(monkeypatch):
    clock, passed, _ = throttle(monkeypatch, 3)
    assert passed(10) == 3
    clock[0] += SECOND // 3                      # 333,333,333 ns: not quite a third
    assert passed(10) == 0
    clock[0] += 1
    assert passed(10) == 1


def test_a_costly_request_counts_as_many(monkeypatch):
    clock, passed, server = throttle(monkeypatch, 1_000)
    assert server._throttled("b1", 600) is False         # a big status scan
    assert server._throttled("b1", 600) is True          # a second one: over the second's worth
    assert passed(1_000) == 400                          # what is left of the burst
    clock[0] += SECOND
    assert server._throttled("b1", 600) is False


def test_a_request_costing_a_whole_seconds_worth_passes_once_the_bucket_is_full(monkeypatch):
    clock, passed, server = throttle(monkeypatch, 1_000)
    assert server._throttled("b1", 1_000) is False       # what a status is capped at
    assert server._throttled("b1", 1_000) is True
    clock[0] += SECOND
    assert server._throttled("b1", 1_000) is False
    assert server._throttled("b2", 1_001) is True        # more: never (the cap avoids it)
