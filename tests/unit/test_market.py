"""The continuous book through the engine: orders, credit, holdings,
confidentiality, market data, expiry, mass cancel, call auction, patents."""

from __future__ import annotations

import msgspec
import pytest

from exchange import credit, market
from exchange.codec import encode
from exchange.commands import (CancelOrder, CloseInstrument, CloseSession, ConsumeUnits, CreateInstrument,
                               CreateLot, CreateSession, IssuePaddle, IssueUnits, LotTerms,
                               MassCancel, ModifyOrder, PlaceOrder, RegisterParty, RelistLot,
                               ReviewCredit, ScheduleLot, SetOrderLimit, SetPriceRules,
                               StartCall, Uncross, VetLot)
from exchange.driver import Driver
from exchange.engine import Engine
from exchange.events import (CallUncrossed, CreditChanged, DepthChanged, IndicativePrice,
                             LotAwarded, OPERATORS, OrderAccepted, OrderCancelled, OrderFilled,
                             OrderLimitSet, PhaseChanged, QuoteChanged, TradeExecuted, TradeRecorded,
                             UnitsConsumed)
from tests.unit.auctionkit import one

SECOND = 10**9


class Market:
    """A session "S" with brokers b1..bn, one party and paddle each, and a
    units instrument "U" whose holders got units."""

    def __init__(self, parties: int = 3, limit: int = 10**9, stp: str = "cancel_newest",
                 call: bool = False, units: int = 1000, max_orders: int = 0,
                 ends_at: int = 0) -> None:
        self.d = Driver(start_ts=SECOND)
        self.d.engine.check_invariants = True
        self.d.ok(CreateSession(session="S", name="book", ends_at=ends_at))
        self.paddle: dict[str, int] = {}
        self.party: dict[str, int] = {}
        for n in range(1, parties + 1):
            broker = f"b{n}"
            party = self.d.ok(RegisterParty(name=f"Party {n}"), actor=broker, role="broker")[0].party
            self.d.ok(ReviewCredit(party=party, approved=True, credit_limit=limit,
                                   currency="USD", agreement_version="BRA-1"))
            self.party[broker] = party
            self.paddle[broker] = self.d.ok(IssuePaddle(session="S", party=party))[0].paddle
        self.d.ok(CreateInstrument(session="S", instrument="U", stp=stp, call=call,
                                   max_orders=max_orders))
        if units:
            for broker in self.paddle:
                self.d.ok(IssueUnits(session="S", instrument="U", paddle=self.paddle[broker],
                                     qty=units))

    @property
    def state(self):
        return self.d.engine.state

    def order(self, broker: str, oid: int, side: str, qty: int, price: int = 0, **kw):
        return self.d.send(PlaceOrder(session="S", instrument="U", paddle=self.paddle[broker],
                                      order=oid, side=side, qty=qty, price=price, **kw),
                           actor=broker, role="broker")

    def ok(self, broker: str, cmd):
        return self.d.ok(cmd, actor=broker, role="broker")

    def refused(self, broker: str, cmd):
        return self.d.refused(cmd, actor=broker, role="broker")

    def cancel(self, broker: str, oid: int):
        return self.d.send(CancelOrder(session="S", instrument="U", paddle=self.paddle[broker],
                                       order=oid), actor=broker, role="broker")

    def modify(self, broker: str, oid: int, price: int, qty: int):
        return self.d.send(ModifyOrder(session="S", instrument="U", paddle=self.paddle[broker],
                                       order=oid, price=price, qty=qty), actor=broker, role="broker")

    def exposure(self, broker: str) -> int:
        return credit.exposure(self.state, "S", self.party[broker]).total

    def holding(self, broker: str) -> int:
        return market.holding(self.state, "U", self.party[broker])


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def rejected(events):
    codes = [e.code for e in events if type(e).__name__ == "CommandRejected"]
    return codes[0] if codes else None


@pytest.mark.parametrize("taker,maker", [("buy", "sell"), ("sell", "buy")])
def test_trade_events_public_with_paddles_private_with_parties(taker, maker):
    mk = Market()
    mk.order("b2", 1, maker, 10, 500)
    events = mk.order("b1", 7, taker, 4, 500 if taker == "buy" else 400)
    trade, = of(events, TradeExecuted)
    assert trade.to == () and trade.price == 500 and trade.qty == 4 and trade.aggressor == taker
    buyer, seller = ("b1", "b2") if taker == "buy" else ("b2", "b1")
    assert (trade.buy_paddle, trade.sell_paddle) == (mk.paddle[buyer], mk.paddle[seller])
    assert not hasattr(trade, "buyer")
    fills = {f.paddle: f for f in of(events, OrderFilled)}
    assert fills[mk.paddle["b1"]].to == ("b1", OPERATORS) and fills[mk.paddle["b1"]].role == "taker"
    assert fills[mk.paddle["b2"]].to == ("b2", OPERATORS) and fills[mk.paddle["b2"]].leaves == 6
    recorded, = of(events, TradeRecorded)
    assert recorded.to == (OPERATORS,) and recorded.buyer == mk.party[buyer]
    assert recorded.currency == "USD" and recorded.session == "S"
    for event in events:
        if event.to == ():
            assert not any(hasattr(event, f) for f in ("party", "buyer", "seller")), event
    assert mk.holding(buyer) == 1004 and mk.holding(seller) == 996
    assert market.qty_at(mk.state, "U", maker, 500) == 6


def test_depth_and_quote_events_and_queries():
    mk = Market()
    events = mk.order("b1", 1, "buy", 5, 100)
    assert of(events, DepthChanged)[0].to == ()
    assert [(e.side, e.price, e.qty, e.orders) for e in of(events, DepthChanged)] == [("buy", 100, 5, 1)]
    assert [(q.bid, q.bid_qty, q.ask, q.ask_qty) for q in of(events, QuoteChanged)] == [(100, 5, 0, 0)]
    events = mk.order("b1", 2, "buy", 3, 90)
    assert not of(events, QuoteChanged)
    mk.order("b2", 1, "sell", 2, 120)
    assert market.best_bid(mk.state, "U") == 100 and market.best_ask(mk.state, "U") == 120
    assert market.depth(mk.state, "U", "buy") == [(100, 5, 1), (90, 3, 1)]
    assert market.qty_at(mk.state, "U", "buy", 90) == 3


def test_resting_buy_commits_credit_and_releases_on_cancel_and_fill():
    mk = Market(limit=10_000)
    assert rejected(mk.order("b1", 1, "buy", 101, 100)) == "over_credit_limit"
    events = mk.order("b1", 1, "buy", 50, 100)
    assert mk.exposure("b1") == 5000
    assert of(events, CreditChanged)[0].to == ("b1", OPERATORS)
    assert rejected(mk.order("b1", 2, "buy", 51, 100)) == "over_credit_limit"
    mk.cancel("b1", 1)
    assert mk.exposure("b1") == 0
    mk.order("b1", 1, "buy", 50, 100)
    mk.order("b2", 1, "sell", 20, 90)                    # trades at 100
    # 30 resting * 100 + 20 bought * 100 stay committed until settlement
    assert mk.exposure("b1") == 5000
    market.release_bought(mk.state, _ctx(), "S", mk.party["b1"], "U", 2000)
    assert mk.exposure("b1") == 3000


def test_recorded_payment_for_units_bought_frees_the_credit_they_held():
    from exchange.commands import RecordUnitsPayment
    from exchange.events import UnitsPaymentRecorded
    mk = Market(limit=10_000)
    mk.order("b1", 1, "buy", 60, 100)
    mk.order("b2", 1, "sell", 60, 90)                    # b1 bought 60 units for 6,000
    assert mk.exposure("b1") == 6000
    assert rejected(mk.order("b1", 2, "buy", 50, 100)) == "over_credit_limit"

    def pay(amount: int, **kw):
        return RecordUnitsPayment(session="S", instrument="U", paddle=mk.paddle["b1"],
                                  amount=amount, **kw)
    assert mk.refused("b1", pay(100)).code == "not_permitted"       # brokers may not
    assert mk.d.refused(pay(0), actor="op", role="operator").code == "non_positive"
    assert mk.d.refused(pay(6001), actor="op", role="operator").code == "overpayment"
    events = mk.d.ok(pay(4000, reference="wire 2017-0113"), actor="op", role="operator")
    paid = of(events, UnitsPaymentRecorded)[0]
    assert (paid.amount, paid.outstanding, paid.reference, paid.party) == \
        (4000, 2000, "wire 2017-0113", mk.party["b1"])
    assert paid.to == ("b1", OPERATORS)
    assert of(events, CreditChanged)[0].exposure == 2000 == mk.exposure("b1")
    assert not rejected(mk.order("b1", 2, "buy", 50, 100))          # room again
    mk.d.ok(pay(2000), actor="op", role="operator")
    assert mk.d.refused(pay(1), actor="op", role="operator").code == "overpayment"
    assert mk.exposure("b1") == 5000                                 # only the resting buy


def _ctx():
    from exchange.commands import Envelope, Tick
    from exchange.engine import Ctx
    return Ctx(Envelope(seq=0, ts=0, actor="op", role="operator", cmd=Tick(), client_id=""), [])


def test_market_buy_is_checked_against_the_cost_of_sweeping():
    mk = Market(limit=700)
    mk.order("b2", 1, "sell", 5, 100)
    mk.order("b2", 2, "sell", 5, 300)
    assert rejected(mk.order("b1", 1, "buy", 6, tif="market")) == "over_credit_limit"
    events = mk.order("b1", 1, "buy", 5, tif="market")
    assert [t.price for t in of(events, TradeExecuted)] == [100]
    assert rejected(mk.order("b1", 2, "buy", 5, 100, tif="market")) == "bad_field"


@pytest.mark.parametrize("stp,bought,cost", [
    ("cancel_oldest", 10, 10 * 1_000),   # its own cheap ask is cancelled; it buys deeper
    ("cancel_newest", 0, 0),             # the sweep stops at its own ask
    ("cancel_both", 0, 0),
])
def test_a_market_buy_is_priced_without_the_buyers_own_asks(stp, bought, cost):
    mk = Market(limit=2_000 if stp == "cancel_oldest" else 200, stp=stp)
    mk.order("b1", 1, "sell", 10, 100)          # its own ask, cheap
    mk.order("b2", 1, "sell", 10, 1_000)
    events = mk.order("b1", 2, "buy", 10, tif="market")
    if stp == "cancel_oldest":               # 10,000 for b2's units, over a limit of 2,000
        assert rejected(events) == "over_credit_limit"
        mk.d.ok(ReviewCredit(party=mk.party["b1"], approved=True, credit_limit=cost,
                             currency="USD", agreement_version="BRA-1"))
        events = mk.order("b1", 2, "buy", 10, tif="market")
    assert not rejected(events)               # cancel_newest/both: it costs nothing, so fits
    assert sum(t.qty for t in of(events, TradeExecuted)) == bought
    assert mk.exposure("b1") == cost


def test_closing_the_session_closes_its_books_and_cancels_what_rests():
    mk = Market()
    mk.order("b1", 1, "sell", 10, 100)
    mk.order("b2", 1, "buy", 10, 90)
    events = mk.d.ok(CloseSession(session="S"))
    assert sorted((c.paddle, c.reason) for c in of(events, OrderCancelled)) == [
        (mk.paddle["b1"], "session_closed"), (mk.paddle["b2"], "session_closed")]
    assert one(events, PhaseChanged).phase == "closed"
    assert mk.state.books["U"].phase == "closed" and not mk.state.books["U"].book.orders
    assert mk.exposure("b2") == 0
    assert rejected(mk.modify("b2", 1, 100, 10)) == "instrument_closed"
    assert mk.d.refused(StartCall(session="S", instrument="U")).code == "instrument_closed"


def test_a_session_closes_its_books_at_its_end_time_without_an_operator():
    mk = Market(ends_at=100 * SECOND)
    mk.order("b1", 1, "sell", 10, 100)
    mk.order("b2", 1, "buy", 10, 90, tif="gtd", expires=100 * SECOND)   # due at the end too
    assert not of(mk.d.tick(100 * SECOND - 1), PhaseChanged)
    events = mk.d.tick(100 * SECOND)
    cancelled = [(c.paddle, c.reason) for c in of(events, OrderCancelled)]
    assert cancelled == [(mk.paddle["b2"], "expired"), (mk.paddle["b1"], "session_closed")]
    assert [type(e).__name__ for e in events if type(e).__name__ == "SessionClosed"] == \
        ["SessionClosed"]
    assert mk.state.books["U"].phase == "closed" and not mk.state.sessions["S"].open
    assert rejected(mk.order("b2", 2, "buy", 1, 100)) == "instrument_closed"
    assert mk.d.refused(CloseSession(session="S")).code == "session_closed"


def test_sessions_ending_at_the_same_time_close_in_the_order_created():
    mk = Market(ends_at=100 * SECOND)
    mk.d.ok(CreateSession(session="T", name="same end", ends_at=100 * SECOND))
    mk.order("b1", 1, "sell", 10, 100, tif="gtd", expires=100 * SECOND)
    events = mk.d.tick(100 * SECOND)
    assert [e.session for e in events if type(e).__name__ == "SessionClosed"] == ["S", "T"]
    assert one(events, OrderCancelled).reason == "expired"        # due then: before the close


def test_a_session_closed_before_its_end_time_is_not_closed_again_and_no_end_is_past():
    mk = Market(ends_at=100 * SECOND)
    mk.d.ok(CloseSession(session="S"))
    assert not mk.d.tick(200 * SECOND)                 # the end's timer finds it closed
    refusal = mk.d.refused(CreateSession(session="T", name="late", ends_at=200 * SECOND))
    assert refusal.code == "bad_field" and "not after now" in refusal.text
    mk.d.ok(CreateSession(session="T", name="open-ended"))           # 0: no end time


def test_a_session_created_under_the_first_rules_stays_open_past_its_end_time():
    """An envelope is applied under the rules version it carries: a journal
    written before sessions closed at their end time replays as it was."""
    from exchange.commands import Envelope, Tick
    engine = Engine()
    first = Envelope(seq=1, ts=SECOND, actor="op", role="operator", rules=1,
                     cmd=CreateSession(session="S", name="old", ends_at=100 * SECOND), client_id="")
    assert not rejected(engine.apply(first))
    late = engine.apply(Envelope(seq=2, ts=200 * SECOND, actor="clock", role="system",
                                 cmd=Tick(), rules=2, client_id=""))
    assert late == [] and engine.state.sessions["S"].open
    past = Envelope(seq=3, ts=300 * SECOND, actor="op", role="operator",
                    cmd=CreateSession(session="T", name="old", ends_at=250 * SECOND), client_id="")
    assert past.rules == 1 and not rejected(engine.apply(past))     # allowed then
    now = msgspec.structs.replace(past, seq=4, rules=2,
                                  cmd=CreateSession(session="U", name="new", ends_at=250 * SECOND))
    assert rejected(engine.apply(now)) == "bad_field"


def test_prices_off_the_tick_are_refused_on_place_and_modify():
    mk = Market()
    event = one(mk.d.ok(SetPriceRules(session="S", instrument="U", tick=5)),
                __import__("exchange.events", fromlist=["PriceRulesSet"]).PriceRulesSet)
    assert (event.to, event.tick, event.band_bp) == ((), 5, 0)          # public
    refusal = mk.refused("b1", PlaceOrder(session="S", instrument="U", paddle=mk.paddle["b1"],
                                          order=1, side="sell", qty=1, price=102))
    assert refusal.code == "bad_tick" and "not a multiple of 'U''s tick of 5" in refusal.text
    assert not rejected(mk.order("b1", 1, "sell", 2, 105))
    assert rejected(mk.modify("b1", 1, 103, 2)) == "bad_tick"
    assert not rejected(mk.modify("b1", 1, 105, 1))       # a reduction at the same price


def test_the_band_refuses_what_would_trade_beyond_it_and_market_orders_stop_at_it():
    mk = Market(limit=10**12)
    mk.d.ok(SetPriceRules(session="S", instrument="U", band_bp=1_000))   # 10 %
    assert not rejected(mk.order("b1", 1, "sell", 1, 5_000))       # no reference yet: no band
    assert not rejected(mk.order("b2", 1, "buy", 1, 5_000))        # trades at 5,000
    assert mk.state.books["U"].last_price == 5_000                  # band 4,500 .. 5,500
    assert rejected(mk.order("b2", 2, "buy", 1, 5_501)) == "price_out_of_band"
    refusal = mk.refused("b1", PlaceOrder(session="S", instrument="U", paddle=mk.paddle["b1"],
                                          order=2, side="sell", qty=1, price=4_499))
    assert refusal.code == "price_out_of_band"
    assert "below 'U''s band: at least 4500 (10.00 % under the reference 5000)" in refusal.text
    assert not rejected(mk.order("b2", 3, "buy", 1, 100))           # far, but passive: rests
    assert not rejected(mk.order("b1", 3, "sell", 1, 90_000))       # likewise
    mk.order("b1", 4, "sell", 2, 5_400)
    mk.order("b3", 4, "sell", 5, 6_000)                             # beyond the band
    events = mk.order("b2", 5, "buy", 4, tif="market")
    assert [(t.price, t.qty) for t in of(events, TradeExecuted)] == [(5_400, 2)]
    assert one(events, OrderCancelled).reason == "ioc"             # the rest: not at 6,000
    assert mk.state.books["U"].last_price == 5_400                  # band now 4,860 .. 5,940
    assert rejected(mk.modify("b2", 3, 5_950, 1)) == "price_out_of_band"
    assert not rejected(mk.modify("b2", 3, 5_000, 1))


def test_a_market_buy_under_a_band_is_charged_for_what_it_can_buy_within_it():
    mk = Market(limit=10**12)
    mk.d.ok(SetPriceRules(session="S", instrument="U", band_bp=1_000))
    mk.order("b1", 1, "sell", 1, 5_000)
    mk.order("b2", 1, "buy", 1, 5_000)                  # the last trade: 5,000
    mk.order("b1", 2, "sell", 1, 5_000)
    mk.order("b3", 1, "sell", 900, 50_000)              # far beyond the band
    mk.d.ok(ReviewCredit(party=mk.party["b2"], approved=True, credit_limit=10_000,
                         currency="USD", agreement_version="BRA-1"))
    events = mk.order("b2", 2, "buy", 100, tif="market")
    assert not rejected(events)                         # at most 5,000 can trade
    assert [(t.price, t.qty) for t in of(events, TradeExecuted)] == [(5_000, 1)]


def test_price_rules_are_the_operators_and_checked():
    mk = Market()
    assert mk.refused("b1", SetPriceRules(session="S", instrument="U", tick=5)).code \
        == "not_permitted"
    assert mk.d.refused(SetPriceRules(session="S", instrument="U", tick=0)).code == "non_positive"
    assert mk.d.refused(SetPriceRules(session="S", instrument="U", band_bp=10_001)).code \
        == "bad_field"
    assert mk.d.refused(SetPriceRules(session="S", instrument="X")).code \
        == "unknown_instrument"
    mk.d.ok(CloseInstrument(session="S", instrument="U"))
    assert mk.d.refused(SetPriceRules(session="S", instrument="U", tick=5)).code \
        == "instrument_closed"


def test_a_withdrawn_approval_cancels_the_partys_resting_orders():
    mk = Market()
    mk.order("b1", 1, "buy", 10, 100)
    mk.order("b1", 2, "sell", 5, 120)
    mk.order("b2", 1, "buy", 1, 99)
    events = mk.d.ok(ReviewCredit(party=mk.party["b1"], approved=False, credit_limit=0,
                                  currency="USD"))
    assert sorted((c.order, c.reason) for c in of(events, OrderCancelled)) == [
        (1, "approval_withdrawn"), (2, "approval_withdrawn")]
    assert list(mk.state.books["U"].book.orders) == [(mk.paddle["b2"], 1)]
    assert mk.exposure("b1") == 0
    assert not of(mk.order("b2", 2, "sell", 10, 100), TradeExecuted)
    lowered = mk.d.ok(ReviewCredit(party=mk.party["b2"], approved=True, credit_limit=50,
                                   currency="USD", agreement_version="BRA-1"))
    assert not of(lowered, OrderCancelled)          # a lower limit keeps what rests


def test_sells_need_units_held_and_not_offered():
    mk = Market(units=0)
    mk.d.ok(IssueUnits(session="S", instrument="U", paddle=mk.paddle["b2"], qty=10))
    assert rejected(mk.order("b1", 1, "sell", 1, 100)) == "insufficient_units"
    mk.order("b2", 1, "sell", 6, 100)
    assert rejected(mk.order("b2", 2, "sell", 5, 100)) == "insufficient_units"
    assert rejected(mk.modify("b2", 1, 100, 11)) == "insufficient_units"
    consume = ConsumeUnits(session="S", instrument="U", paddle=mk.paddle["b2"], qty=5)
    assert mk.refused("b2", consume).code == "insufficient_units"
    events = mk.ok("b2", ConsumeUnits(session="S", instrument="U", paddle=mk.paddle["b2"], qty=4))
    consumed, = of(events, UnitsConsumed)
    assert consumed.holding == 6 and consumed.to == ("b2", OPERATORS)
    assert mk.holding("b2") == 6


@pytest.mark.parametrize("how,code", [("filled", "order_filled"), ("cancelled", "order_cancelled"),
                                      ("never", "unknown_order")])
def test_cancel_or_modify_of_an_order_not_resting_is_refused(how, code):
    mk = Market()
    if how != "never":
        mk.order("b1", 1, "buy", 5, 100)
        if how == "filled":
            mk.order("b2", 1, "sell", 5, 100)
        else:
            mk.cancel("b1", 1)
    before = mk.d.engine.snapshot()
    assert rejected(mk.cancel("b1", 1)) == code
    assert rejected(mk.modify("b1", 1, 100, 1)) == code
    mk.state.last_seq -= 2
    assert mk.d.engine.snapshot() == before


def test_order_id_is_unique_while_live_and_reusable_after():
    mk = Market()
    mk.order("b1", 1, "buy", 5, 100)
    assert rejected(mk.order("b1", 1, "buy", 5, 99)) == "duplicate_order"
    mk.order("b2", 1, "buy", 5, 99)                     # another paddle's id space
    mk.cancel("b1", 1)
    assert rejected(mk.order("b1", 1, "buy", 5, 98)) is None


def test_broker_touches_only_its_own_paddles():
    mk = Market()
    mk.order("b1", 1, "buy", 5, 100)
    cmd = CancelOrder(session="S", instrument="U", paddle=mk.paddle["b1"], order=1)
    assert mk.refused("b2", cmd).code == "not_your_paddle"
    cmd = PlaceOrder(session="S", instrument="U", paddle=mk.paddle["b1"], order=2, side="buy",
                     qty=1, price=1)
    assert mk.refused("b2", cmd).code == "not_your_paddle"
    assert mk.refused("b2", MassCancel(session="S", broker="b1")).code == "not_permitted"


def test_post_only_refused_when_it_would_trade_on_place_and_modify():
    mk = Market()
    mk.order("b2", 1, "sell", 5, 100)
    assert rejected(mk.order("b1", 1, "buy", 5, 100, post_only=True)) == "would_trade"
    assert rejected(mk.order("b1", 1, "buy", 5, 100, tif="ioc", post_only=True)) == "bad_field"
    mk.order("b1", 1, "buy", 5, 99, post_only=True)
    assert rejected(mk.modify("b1", 1, 100, 5)) == "would_trade"
    assert market.qty_at(mk.state, "U", "buy", 99) == 5


@pytest.mark.parametrize("side,other", [("buy", "sell"), ("sell", "buy")])
def test_ioc_fok_market_outcomes(side, other):
    mk = Market()
    mk.order("b2", 1, other, 3, 100)
    events = mk.order("b1", 1, side, 5, 100, tif="ioc")
    assert [(c.qty, c.reason) for c in of(events, OrderCancelled)] == [(2, "ioc")]
    mk.order("b2", 2, other, 3, 100)
    events = mk.order("b1", 2, side, 5, 100, tif="fok")
    assert not of(events, TradeExecuted)
    assert [(c.qty, c.reason) for c in of(events, OrderCancelled)] == [(5, "fok")]
    events = mk.order("b1", 3, side, 3, 100, tif="fok")
    assert sum(t.qty for t in of(events, TradeExecuted)) == 3 and not of(events, OrderCancelled)
    events = mk.order("b1", 4, side, 2, tif="market")
    assert [(c.qty, c.reason) for c in of(events, OrderCancelled)] == [(2, "ioc")]


def test_gtd_order_expires_at_its_time():
    mk = Market()
    assert rejected(mk.order("b1", 1, "buy", 5, 100, tif="gtd", expires=SECOND)) == "bad_expiry"
    assert rejected(mk.order("b1", 1, "buy", 5, 100, expires=5 * SECOND)) == "bad_field"
    mk.order("b1", 1, "buy", 5, 100, tif="gtd", expires=5 * SECOND)
    mk.modify("b1", 1, 101, 5)                              # re-queued, same expiry
    assert mk.d.tick(4 * SECOND) == []
    events = mk.d.tick(5 * SECOND)
    assert [(c.order, c.reason) for c in of(events, OrderCancelled)] == [(1, "expired")]
    assert mk.exposure("b1") == 0 and market.best_bid(mk.state, "U") is None
    mk.order("b1", 1, "buy", 5, 100)                        # reused id outlives the old timer
    assert mk.d.tick(9 * SECOND) == [] and market.best_bid(mk.state, "U") == 100


def test_an_envelope_older_than_the_engine_clock_is_handled_at_the_engine_time():
    from exchange.commands import Envelope
    mk = Market()
    mk.d.tick(10 * SECOND)
    engine = mk.d.engine
    late = PlaceOrder(session="S", instrument="U", paddle=mk.paddle["b1"], order=7, side="sell",
                      qty=1, price=500, tif="gtd", expires=9 * SECOND)
    events = engine.apply(Envelope(seq=mk.d.seq + 1, ts=8 * SECOND, actor="b1", role="broker",
                                   cmd=late, client_id=""))
    assert rejected(events) == "bad_expiry"       # 9 s is past: the engine's time is 10 s
    assert engine.state.now == 10 * SECOND


def test_modify_keeps_or_loses_priority_and_trades_at_resting_price():
    mk = Market()
    mk.order("b1", 1, "buy", 5, 100)
    mk.order("b2", 1, "buy", 5, 100)
    events = mk.modify("b1", 1, 100, 3)
    assert of(events, type(events[0]))[0].priority_kept is True
    assert [o.key[0] for o in mk.state.books["U"].book.level_orders(0, 100)] == [mk.paddle["b1"], mk.paddle["b2"]]
    mk.modify("b1", 1, 100, 4)
    assert [o.key[0] for o in mk.state.books["U"].book.level_orders(0, 100)] == [mk.paddle["b2"], mk.paddle["b1"]]
    mk.order("b3", 1, "sell", 2, 104)
    events = mk.modify("b1", 1, 105, 4)
    assert [(t.price, t.qty) for t in of(events, TradeExecuted)] == [(104, 2)]
    assert market.depth(mk.state, "U", "buy")[0] == (105, 2, 1)


@pytest.mark.parametrize("stp,survivors", [("cancel_newest", {"own"}), ("cancel_oldest", {"new"}),
                                           ("cancel_both", set())])
def test_self_trade_prevention_per_instrument(stp, survivors):
    mk = Market(stp=stp)
    mk.order("b1", 1, "sell", 5, 100)
    events = mk.order("b1", 2, "buy", 5, 100)
    assert not of(events, TradeExecuted)
    assert all(c.reason == "self_trade" for c in of(events, OrderCancelled))
    live = {("own" if k[1] == 1 else "new") for k in mk.state.books["U"].book.orders}
    assert live == survivors


def test_mass_cancel_by_paddle_and_by_broker():
    mk = Market()
    for broker in ("b1", "b2", "b3"):
        mk.order(broker, 1, "buy", 1, 90)
        mk.order(broker, 2, "sell", 1, 110)
    mk.d.ok(CreateInstrument(session="S", instrument="V"))
    mk.ok("b1", PlaceOrder(session="S", instrument="V", paddle=mk.paddle["b1"], order=1,
                           side="buy", qty=1, price=5))
    events = mk.ok("b1", MassCancel(session="S"))
    assert sorted((c.instrument, c.order) for c in of(events, OrderCancelled)) == [("U", 1), ("U", 2), ("V", 1)]
    assert all(c.reason == "mass_cancel" for c in of(events, OrderCancelled))
    events = mk.d.ok(MassCancel(session="S", instrument="U", paddle=mk.paddle["b2"]))
    assert {c.paddle for c in of(events, OrderCancelled)} == {mk.paddle["b2"]}
    assert len(mk.state.books["U"].book.orders) == 2
    mk.d.ok(MassCancel(session="S"))
    assert not mk.state.books["U"].book.orders


def test_call_auction_collects_publishes_indicative_and_uncrosses():
    mk = Market(call=True)
    events = mk.order("b1", 1, "buy", 10, 105)
    assert not of(events, QuoteChanged) and not of(events, TradeExecuted)
    events = mk.order("b2", 1, "sell", 6, 100)
    assert [(i.price, i.volume, i.imbalance) for i in of(events, IndicativePrice)] == [(100, 6, 4)]
    mk.order("b3", 1, "buy", 3, 101, tif="ioc")
    assert rejected(mk.order("b3", 2, "buy", 3, 101, tif="fok")) == "wrong_phase"
    assert rejected(mk.order("b3", 2, "buy", 3, tif="market")) == "wrong_phase"
    mk.order("b2", 2, "sell", 4, 102)
    assert mk.state.books["U"].book.crossed()
    events = mk.d.ok(Uncross(session="S", instrument="U", reference=101))
    (uncrossed,) = of(events, CallUncrossed)
    assert (uncrossed.price, uncrossed.volume) == (102, 10)
    assert {t.price for t in of(events, TradeExecuted)} == {102}
    assert all(t.aggressor == "" for t in of(events, TradeExecuted))
    assert [(c.paddle, c.reason) for c in of(events, OrderCancelled)] == [(mk.paddle["b3"], "auction_ioc")]
    assert [p.phase for p in of(events, PhaseChanged)] == ["continuous"]
    assert not mk.state.books["U"].book.crossed()
    # continuous again: orders trade on arrival
    assert of(mk.order("b3", 3, "sell", 1, 90), TradeExecuted) == []  # nothing left to hit
    # a new call period that does not cross says so, after the last one's match
    events = mk.d.ok(StartCall(session="S", instrument="U"))
    assert [(i.price, i.volume, i.imbalance) for i in of(events, IndicativePrice)] == [(0, 0, 0)]
    assert mk.d.refused(StartCall(session="S", instrument="U")).code == "wrong_phase"


def test_an_uncross_reports_what_each_order_has_left_after_each_of_its_fills():
    mk = Market(call=True)
    mk.order("b1", 1, "buy", 10, 105)                 # filled in three pieces, 2 left
    mk.order("b2", 1, "sell", 3, 100)
    mk.order("b3", 1, "sell", 4, 100)
    mk.order("b2", 2, "sell", 1, 101)
    events = mk.d.ok(Uncross(session="S", instrument="U", reference=101))
    buys = [(f.qty, f.leaves) for f in of(events, OrderFilled) if f.side == "buy"]
    sells = [(f.paddle, f.order, f.qty, f.leaves) for f in of(events, OrderFilled)
             if f.side == "sell"]
    assert buys == [(3, 7), (4, 3), (1, 2)]
    assert sells == [(mk.paddle["b2"], 1, 3, 0), (mk.paddle["b3"], 1, 4, 0),
                     (mk.paddle["b2"], 2, 1, 0)]
    assert mk.state.books["U"].book.orders[(mk.paddle["b1"], 1)].qty == 2


def test_an_ioc_partly_filled_in_an_uncross_leaves_its_rest_until_the_cancel():
    mk = Market(call=True)
    mk.order("b1", 1, "buy", 10, 100, tif="ioc")
    mk.order("b2", 1, "sell", 4, 100)
    events = mk.d.ok(Uncross(session="S", instrument="U"))
    mine = [(type(e).__name__, e.qty, getattr(e, "leaves", None)) for e in events
            if isinstance(e, (OrderFilled, OrderCancelled)) and e.paddle == mk.paddle["b1"]]
    assert mine == [("OrderFilled", 4, 6), ("OrderCancelled", 6, None)]


@pytest.mark.parametrize("stp", ["cancel_newest", "cancel_oldest", "cancel_both"])
def test_call_period_self_cross_is_prevented_on_entry(stp):
    mk = Market(call=True, stp=stp)
    mk.order("b1", 1, "sell", 5, 100)
    events = mk.order("b1", 2, "buy", 5, 101)
    cancelled = {c.order for c in of(events, OrderCancelled)}
    assert cancelled == {"cancel_newest": {2}, "cancel_oldest": {1}, "cancel_both": {1, 2}}[stp]
    assert not mk.state.books["U"].book.crossed()


def test_primary_offering_with_uniform_price():
    mk = Market(call=True, units=0)
    mk.d.ok(IssueUnits(session="S", instrument="U", paddle=mk.paddle["b1"], qty=750_000))
    mk.order("b1", 1, "sell", 750_000, 500)                  # the issuer at its floor
    mk.order("b2", 1, "buy", 500_000, 520)
    mk.order("b3", 1, "buy", 400_000, 510)
    # every price from 500 to 510 clears 750,000 with 150,000 left over: the
    # reference decides (without one, the lowest price would)
    assert mk.state.books["U"].book.equilibrium() == (500, 750_000, 150_000)
    events = mk.d.ok(Uncross(session="S", instrument="U", reference=515))
    (uncrossed,) = of(events, CallUncrossed)
    assert uncrossed.volume == 750_000 and uncrossed.price == 510
    assert mk.holding("b2") == 500_000 and mk.holding("b3") == 250_000
    assert market.depth(mk.state, "U", "buy") == [(510, 150_000, 1)]


def test_close_instrument_cancels_everything():
    mk = Market()
    mk.order("b1", 1, "buy", 5, 100)
    events = mk.d.ok(CloseInstrument(session="S", instrument="U"))
    assert [c.reason for c in of(events, OrderCancelled)] == ["closed"]
    assert rejected(mk.order("b1", 2, "buy", 5, 100)) == "instrument_closed"
    assert mk.exposure("b1") == 0


def test_refusals_change_nothing_and_replay_is_identical():
    mk = Market()
    mk.order("b2", 1, "sell", 5, 100)
    before = mk.d.engine.snapshot()
    for cmd in (PlaceOrder(session="S", instrument="U", paddle=mk.paddle["b1"], order=1,
                           side="buy", qty=0, price=100),
                PlaceOrder(session="S", instrument="nope", paddle=mk.paddle["b1"], order=1,
                           side="buy", qty=1, price=100),
                PlaceOrder(session="S", instrument="U", paddle=999, order=1, side="buy", qty=1,
                           price=100)):
        assert mk.d.refused(cmd, actor="b1", role="broker")
    mk.state.last_seq -= 3
    assert mk.d.engine.snapshot() == before
    # same commands, same events, byte for byte; snapshot/restore keeps the book
    log = []
    first = Market()
    first.d.log = log
    first.order("b2", 1, "sell", 5, 100)
    first.order("b1", 1, "buy", 7, 101, tif="gtd", expires=50 * SECOND)
    restored = Engine.restore(first.d.engine.snapshot())
    assert restored.state.books["U"].book.depth(0) == [(101, 2, 1)]
    second = Market()
    replayed = [second.d.engine.apply(env) for env, _ in log]
    assert [encode(events) for _, events in log] == [encode(events) for events in replayed]


# ---------------------------------------------------------------------------
# a patent lot traded bid-ask
# ---------------------------------------------------------------------------

def patent_market():
    mk = Market(units=0)
    seller = mk.party["b3"]
    mk.ok("b3", CreateLot(serial="L1", session="S", seller=seller,
                          terms=LotTerms(title="Printing", mechanism="bid_ask", currency="USD",
                                         opens_at=2 * SECOND, closes_at=100 * SECOND,
                                         buyer_premium_bp=1000)))
    mk.d.ok(VetLot(serial="L1", score=80, approved=True))
    mk.d.ok(ScheduleLot(serial="L1"))
    mk.d.ok(CreateInstrument(session="S", instrument="P1", kind="patent", lot="L1"))
    return mk


def patent_order(mk, broker, oid, side, price, qty=1):
    return mk.d.send(PlaceOrder(session="S", instrument="P1", paddle=mk.paddle[broker], order=oid,
                                side=side, qty=qty, price=price), actor=broker, role="broker")


def test_patent_trades_once_at_quantity_one_and_is_awarded():
    mk = patent_market()
    assert rejected(patent_order(mk, "b1", 1, "buy", 30_000)) == "lot_not_trading"
    mk.d.tick(2 * SECOND)
    assert rejected(patent_order(mk, "b1", 1, "buy", 30_000, qty=2)) == "bad_quantity"
    assert rejected(patent_order(mk, "b1", 1, "sell", 30_000)) == "seller_only"
    assert rejected(patent_order(mk, "b3", 1, "buy", 30_000)) == "own_patent"
    patent_order(mk, "b1", 1, "buy", 30_000)
    patent_order(mk, "b2", 1, "buy", 35_000)
    # the bid commits price plus the 10 % buyer's premium
    assert credit.committed(mk.state, "S", mk.party["b2"], ("order", "P1", 1)) == 38_500
    events = patent_order(mk, "b3", 1, "sell", 32_000)
    (trade,) = of(events, TradeExecuted)
    assert (trade.price, trade.buy_paddle) == (35_000, mk.paddle["b2"])
    (awarded,) = of(events, LotAwarded)
    assert awarded.how == "book" and awarded.hammer == 35_000
    assert mk.state.lots["L1"].status == "sold"
    assert mk.state.books["P1"].phase == "closed"
    assert [c.paddle for c in of(events, OrderCancelled)] == [mk.paddle["b1"]]
    assert mk.exposure("b1") == 0
    assert market.holding(mk.state, "P1", mk.party["b2"]) == 1


def test_patent_book_closes_when_the_lot_passes():
    mk = patent_market()
    mk.d.tick(2 * SECOND)
    patent_order(mk, "b1", 1, "buy", 30_000)
    events = mk.d.tick(100 * SECOND)
    assert [c.reason for c in of(events, OrderCancelled)] == ["closed"]
    assert mk.state.books["P1"].phase == "closed" and mk.exposure("b1") == 0


def test_a_passed_patent_lot_relisted_trades_on_a_new_book():
    mk = patent_market()
    mk.d.tick(100 * SECOND)                                  # passes: its book closes
    assert mk.state.lots["L1"].status == "passed"
    mk.d.ok(RelistLot(serial="L1", opens_at=101 * SECOND, closes_at=200 * SECOND))
    mk.d.ok(CreateInstrument(session="S", instrument="P2", kind="patent", lot="L1"))
    refused = mk.d.send(CreateInstrument(session="S", instrument="P3", kind="patent", lot="L1"),
                        actor="op", role="operator")
    assert rejected(refused) == "instrument_exists"           # one live book a lot
    mk.d.tick(101 * SECOND)
    mk.d.send(PlaceOrder(session="S", instrument="P2", paddle=mk.paddle["b1"], order=1,
                         side="buy", qty=1, price=30_000), actor="b1", role="broker")
    events = mk.d.send(PlaceOrder(session="S", instrument="P2", paddle=mk.paddle["b3"], order=1,
                                  side="sell", qty=1, price=30_000), actor="b3", role="broker")
    assert one(events, LotAwarded).hammer == 30_000 and mk.state.lots["L1"].status == "sold"


def test_max_orders_caps_a_paddles_resting_orders_and_frees_as_they_leave():
    """With ``max_orders`` 2, a third order that could rest is refused
    `too_many_orders`; an IOC (never rests) still goes; a fill, a cancel or
    an expiry frees a place; a modify (cancel and re-place) keeps the count."""
    m = Market(max_orders=2)
    created = m.d.ok(CreateInstrument(session="S", instrument="V", max_orders=4))
    assert one(created, OrderLimitSet) == OrderLimitSet(session="S", instrument="V", max_orders=4)
    assert not any(isinstance(e, OrderLimitSet)
                   for e in m.d.ok(CreateInstrument(session="S", instrument="W")))
    m.ok("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"], order=1,
                          side="buy", qty=5, price=100))
    m.ok("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"], order=2,
                          side="buy", qty=5, price=101))
    assert m.refused("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"],
                                      order=3, side="buy", qty=1, price=99)).code == "too_many_orders"
    m.ok("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"], order=4,
                          side="buy", qty=1, price=99, tif="ioc"))        # nothing to trade with
    m.ok("b2", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b2"], order=1,
                          side="sell", qty=5, price=101))                 # fills order 2
    assert m.state.books["U"].open_orders == {m.paddle["b1"]: 1}
    m.ok("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"], order=5,
                          side="buy", qty=1, price=98, tif="gtd", expires=5 * SECOND))
    m.modify("b1", 5, price=97, qty=2)                                    # re-placed: still 2
    assert m.refused("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"],
                                      order=6, side="buy", qty=1, price=96)).code == "too_many_orders"
    m.cancel("b1", 1)
    m.ok("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"], order=6,
                          side="buy", qty=1, price=96))
    m.d.tick(6 * SECOND)                                                  # order 5 expires
    assert m.state.books["U"].open_orders == {m.paddle["b1"]: 1}
    m.ok("b1", MassCancel(session="S"))
    assert m.state.books["U"].open_orders == {}


def test_max_orders_counts_call_period_orders_and_is_validated():
    m = Market(max_orders=1, call=True)
    m.ok("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"], order=1,
                          side="buy", qty=5, price=100, tif="ioc"))       # rests until uncross
    assert m.refused("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"],
                                      order=2, side="buy", qty=1, price=99)).code == "too_many_orders"
    m.d.ok(Uncross(session="S", instrument="U"))                          # the IOC leaves
    assert m.state.books["U"].open_orders == {}
    assert m.d.refused(CreateInstrument(session="S", instrument="V", max_orders=-1)).code == "negative"


def test_the_operator_changes_the_order_limit_of_a_live_instrument():
    """`SetOrderLimit` counts the orders already resting: they stay, and a
    paddle at or above the new limit rests no more until it is under it;
    0 lifts the limit. Public, operator only, validated."""
    m = Market()
    for oid in (1, 2, 3):
        m.ok("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"], order=oid,
                              side="buy", qty=1, price=90 + oid))
    m.ok("b2", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b2"], order=1,
                          side="sell", qty=1, price=110))
    limit = SetOrderLimit(session="S", instrument="U", max_orders=2)
    assert m.d.refused(limit, actor="b1", role="broker").code == "not_permitted"
    set_event = one(m.d.ok(limit), OrderLimitSet)
    assert set_event == OrderLimitSet(session="S", instrument="U", max_orders=2)
    assert not set_event.to                                       # market data
    inst = m.state.books["U"]
    assert inst.open_orders == {m.paddle["b1"]: 3, m.paddle["b2"]: 1}
    assert len(inst.book.orders) == 4                             # nothing cancelled
    refused = m.refused("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"],
                                         order=4, side="buy", qty=1, price=80))
    assert refused.code == "too_many_orders"
    assert refused.text.endswith("holds 3 resting orders on 'U', above its limit of 2")
    m.ok("b2", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b2"], order=2,
                          side="sell", qty=1, price=111))
    assert m.refused("b2", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b2"],
                                      order=3, side="sell", qty=1, price=112)).code == "too_many_orders"
    m.cancel("b1", 1)
    assert m.refused("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"],
                                      order=4, side="buy", qty=1, price=80)).code == "too_many_orders"
    m.cancel("b1", 2)                                             # under the limit again
    m.ok("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"], order=4,
                          side="buy", qty=1, price=80))
    m.d.ok(SetOrderLimit(session="S", instrument="U", max_orders=0))
    assert inst.open_orders == {} and inst.max_orders == 0
    for oid in (5, 6, 7):
        m.ok("b1", PlaceOrder(session="S", instrument="U", paddle=m.paddle["b1"], order=oid,
                              side="buy", qty=1, price=80))
    assert m.d.refused(SetOrderLimit(session="S", instrument="U", max_orders=-1)).code == "negative"
    assert m.d.refused(SetOrderLimit(session="S", instrument="X", max_orders=1)).code == \
        "unknown_instrument"
    m.d.ok(CloseInstrument(session="S", instrument="U"))
    assert m.d.refused(SetOrderLimit(session="S", instrument="U", max_orders=1)).code == \
        "instrument_closed"


def test_orders_modified_again_and_again_leave_no_timer_each_until_their_expiry():
    from exchange.engine import COMPACT_TIMERS_FROM
    mk = Market()
    far = mk.d.ts + 30 * 24 * 3600 * SECOND
    mk.order("b1", 1, "buy", 5, 100, tif="gtd", expires=far)
    for n in range(3 * COMPACT_TIMERS_FROM):             # each re-place sets a new expiry timer
        assert not rejected(mk.modify("b1", 1, 100 + n % 2, 5))
    inst = mk.state.books["U"]
    assert len(inst.expiring) == 1
    assert len(mk.state.timers) <= COMPACT_TIMERS_FROM
    events = mk.d.tick(far)                              # the live order still expires
    assert [e.reason for e in of(events, OrderCancelled)] == ["expired"]


def test_dropping_stale_timers_replays_the_same_with_and_without_snapshots():
    from exchange.engine import COMPACT_TIMERS_FROM
    first = Market()
    log = first.d.log = []
    far = first.d.ts + 30 * 24 * 3600 * SECOND
    for oid in (1, 2):
        first.order("b1", oid, "buy", 5, 100, tif="gtd", expires=far + oid)
    for n in range(2 * COMPACT_TIMERS_FROM + 7):
        first.modify("b1", 1 + n % 2, 100 + n % 3, 5)
    first.d.tick(far + 5)
    second = Market()
    engine = second.d.engine
    for index, (env, events) in enumerate(log):
        if index % 2_000 == 1_999:
            engine = Engine.restore(engine.snapshot())
        assert encode(engine.apply(env)) == encode(events), index
    assert engine.state.timers == first.state.timers
