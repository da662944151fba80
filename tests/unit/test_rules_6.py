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


# ---------------------------------------------------------------------------
# liquidity counted up to a timer's time
# ---------------------------------------------------------------------------

def quoting_provider(*, ends_at: int = 0, cancel_at: int = 0,
                     expires: int = 0) -> Market:
    """A session (ending at ``ends_at`` if given) with a units book and a
    liquidity provider (90 % required) quoting from T0: its ask cancelled at
    ``cancel_at``, or good until ``expires``, if given."""
    from exchange.commands import AppointLiquidityProvider, CancelOrder, IssueUnits
    m = Market(ends_at=ends_at)
    lp = m.bidder("MarketMaker")
    m.d.ok(CreateInstrument(session="S1", instrument="U", kind="units"), **OP)
    m.d.ok(IssueUnits(session="S1", instrument="U", paddle=lp, qty=100), **OP)
    m.d.ok(AppointLiquidityProvider(session="S1", instrument="U", paddle=lp, max_spread=10,
                                    min_qty=1, presence_bp=9_000), **OP)
    m.send(PlaceOrder(session="S1", instrument="U", paddle=lp, order=1, side="buy", qty=1,
                      price=100), lp)
    m.send(PlaceOrder(session="S1", instrument="U", paddle=lp, order=2, side="sell", qty=1,
                      price=105, tif="gtd" if expires else "gtc", expires=expires), lp)
    if cancel_at:
        m.send(CancelOrder(session="S1", instrument="U", paddle=lp, order=2), lp, ts=cancel_at)
    return m


@pytest.mark.parametrize("rules", [5, 6])
def test_a_session_end_fired_late_counts_liquidity_to_its_end(rules):
    from exchange.events import LiquidityReport, SessionClosed
    m = quoting_provider(ends_at=T0 + HOUR, cancel_at=T0 + 55 * MINUTE)  # 55 of 60 minutes
    on_time = one(resumed(m, rules).tick(T0 + HOUR), LiquidityReport)
    assert (on_time.until, on_time.trading_ns, on_time.quoting_ns, on_time.met) == \
        (T0 + HOUR, HOUR, 55 * MINUTE, True)
    late = resumed(m, rules).tick(T0 + 4 * HOUR)              # the first command after it
    assert of(late, SessionClosed)
    report = one(late, LiquidityReport)
    if rules == 5:                                            # 3 h after the close counted
        assert (report.until, report.trading_ns, report.met) == (T0 + 4 * HOUR, 4 * HOUR, False)
        return
    assert report == on_time


@pytest.mark.parametrize("rules", [5, 6])
def test_an_order_expired_late_counts_liquidity_to_its_expiry(rules):
    from exchange.commands import ReportLiquidity
    from exchange.events import LiquidityReport
    d = resumed(quoting_provider(expires=T0 + HOUR), rules)
    d.tick(T0 + 3 * HOUR)                                     # the expiry, 2 h late
    report = one(d.ok(ReportLiquidity(session="S1", instrument="U"), **OP), LiquidityReport)
    assert report.trading_ns == 3 * HOUR
    assert report.quoting_ns == (3 * HOUR if rules == 5 else HOUR)
