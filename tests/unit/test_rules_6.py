"""The changes of the engine's rules 6 (`exchange.commands.RULES`): each
applies to envelopes made under rules 6, and an envelope of rules 5 (a
journal written before) still replays as it did."""

from __future__ import annotations

import pickle

import pytest

from exchange.commands import CreateInstrument, PlaceOrder
from exchange.driver import Driver
from exchange.engine import Engine
from exchange.events import LotPassed, OrderCancelled, PhaseChanged
from tests.unit.auctionkit import DAY, HOUR, MINUTE, T0, USD, Market, of, one
from tests.unit.test_market import rejected

OP = dict(actor="op", role="operator")


def resumed(m: Market, rules: int) -> Driver:
    """A driver on a copy of ``m``'s state, as after a restart, under ``rules``."""
    d = Driver(Engine(pickle.loads(pickle.dumps(m.state))))
    d.engine.check_invariants = True
    d.rules = rules
    return d


# ---------------------------------------------------------------------------
# reactions to each timer before the next fires
# ---------------------------------------------------------------------------

def bid_ask_with_gtd_order() -> tuple[Market, int]:
    """A bid_ask lot closing at T0 + 1 h with its book; a buy order on it good
    until T0 + 2 h. Returns the market and the buyer's paddle."""
    m = Market()
    seller_paddle, buyer = m.bidder("Seller"), m.bidder("Buyer")
    m.lot("BA-1", seller=m.parties[seller_paddle], mechanism="bid_ask", opens_at=T0 + MINUTE,
          closes_at=T0 + HOUR, broker=m.brokers[seller_paddle])
    m.tick(T0 + MINUTE)
    m.d.ok(CreateInstrument(session="S1", instrument="P-1", kind="patent", lot="BA-1"), **OP)
    m.send(PlaceOrder(session="S1", instrument="P-1", paddle=buyer, order=1, side="buy", qty=1,
                      price=500 * USD, tif="gtd", expires=T0 + 2 * HOUR), buyer)
    return m, buyer


@pytest.mark.parametrize("rules", [5, 6])
def test_a_lot_passed_closes_its_book_before_a_later_expiry_fires(rules):
    m, buyer = bid_ask_with_gtd_order()
    d = resumed(m, rules)
    events = d.tick(T0 + 3 * HOUR)                       # one late tick covers both
    cancelled = one(events, OrderCancelled)
    assert one(events, PhaseChanged).phase == "closed"
    assert of(events, LotPassed)
    if rules == 5:                                       # the expiry ran first
        assert cancelled.reason == "expired"
        return
    assert cancelled.reason == "closed"                  # as with a tick at each time
    dense = resumed(m, 6)
    assert one(dense.tick(T0 + HOUR), OrderCancelled).reason == "closed"
    assert not of(dense.tick(T0 + 3 * HOUR), OrderCancelled)
    assert [type(e) for e in events] == [type(e) for e in
                                         resumed(m, 6).tick(T0 + HOUR)]
