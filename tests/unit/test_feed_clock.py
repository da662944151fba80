"""The feed's clock, which `lotex watch` counts a lot's time left against:
the latest feed message's time, advanced by the wall time since it came."""

from __future__ import annotations

from gateway.client import FeedClock

NS = 10**9
RECORDED = 1_772_413_800 * NS          # 2026-03-02T01:10:00Z, a replayed message's ts


def test_the_feed_clock_runs_on_from_the_latest_messages_time():
    clock = FeedClock()
    clock.heard(RECORDED, at=5 * NS)
    assert clock.now(at=7 * NS) == RECORDED + 2 * NS
    clock.heard(RECORDED + 60 * NS, at=8 * NS)          # a replay's next minute, 1 s later
    assert clock.now(at=8 * NS) == RECORDED + 60 * NS
    clock.heard(0, at=9 * NS)                            # a heartbeat of a feed with no time
    assert clock.now(at=9 * NS) == RECORDED + 61 * NS
