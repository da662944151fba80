"""The host's clock set back (an NTP step): the exchange's time never runs
back. It stands still until the host's clock catches up (timers are times of
day, UTC: a lot closes when the clock reaches its close), the log says so,
and the feed's time, which `lotex watch` counts time left by, never runs back."""

from __future__ import annotations

import json
import time

from exchange.commands import PlaceBid, RegisterParty
from gateway.client import FeedClient
from tests.integration.gateway_harness import build_market, client, running

HOUR = 3600 * 10**9


def test_a_clock_set_back_stands_the_exchanges_time_still_and_is_logged(tmp_path,
                                                                       shifted_clock, capsys):
    with running(tmp_path, heartbeat_ms=200) as server, client(tmp_path, "op") as op, \
            client(tmp_path, "b1") as b1, client(tmp_path, "b2") as b2, \
            FeedClient.from_data_dir(tmp_path, "viewer") as feed:
        feed.start()
        market = build_market(op, b1, b2)
        list(feed.updates(timeout=0.5))
        before = server.last_ts
        shifted_clock[0] = -HOUR
        assert b1.ok(RegisterParty(name="After the step")).accepted
        stood = server.last_ts
        assert stood >= before
        for n in range(3):
            assert b1.ok(RegisterParty(name=f"After the step {n}")).accepted
        assert server.last_ts == stood                      # stands still, not run back
        heard = feed.clock.ts
        list(feed.updates(timeout=0.6))                     # heartbeats meanwhile
        assert feed.clock.ts >= heard >= before
        snap = feed.snapshot()
        assert snap.ts >= before
        bid = b2.request(PlaceBid(serial=market.sealed, paddle=market.paddles["Borealis"],
                                  amount=9_000_000))
        assert bid.accepted                                 # the close is a time of day
        shifted_clock[0] = 0                                 # caught up: time moves on
        assert b1.ok(RegisterParty(name="Caught up")).accepted
        assert server.last_ts > before
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()
              if line.startswith("{")]
    behind = [e for e in logged if e["event"] == "clock_behind"]
    assert len(behind) == 1 and behind[0]["behind_ms"] >= HOUR // 10**6 - 1000
