"""The changes of the engine's rules 3 (`exchange.commands.RULES`): each
applies to envelopes made under rules 3, and an envelope of rules 2 (a
journal written before) still replays as it did."""

from __future__ import annotations

import random

import pytest

from exchange.book import ANY_PRICE, BUY, SELL, Book
from exchange.commands import ReviewCredit, SetPriceRules, StartCall, Uncross
from exchange.errors import MAX_INT
from exchange.events import CallUncrossed, TradeExecuted
from tests.unit.test_market import Market, of, rejected


def market(rules: int, **kw) -> Market:
    mk = Market(**kw)
    mk.d.rules = rules
    return mk


# ---------------------------------------------------------------------------
# the book
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("rules", [2, 3])
def test_a_buy_reduced_under_a_lowered_credit_limit_is_not_refused(rules):
    mk = market(rules, limit=10_000)
    mk.order("b1", 1, "buy", 50, 100)                        # commits 5,000
    mk.d.ok(ReviewCredit(party=mk.party["b1"], approved=True, credit_limit=1_000,
                         currency="USD", agreement_version="BRA-1"))
    reduced = rejected(mk.modify("b1", 1, 100, 20))
    cheaper = rejected(mk.modify("b1", 1, 90, 20))
    more = rejected(mk.modify("b1", 1, 100, 30))            # commits more: checked
    if rules == 2:
        assert (reduced, cheaper) == ("over_credit_limit", "over_credit_limit")
        assert mk.exposure("b1") == 5_000
    else:
        assert (reduced, cheaper, more) == (None, None, "over_credit_limit")
        assert mk.exposure("b1") == 1_800


@pytest.mark.parametrize("rules", [2, 3])
def test_a_call_trades_at_the_highest_legal_price(rules):
    mk = market(rules, limit=MAX_INT)
    mk.d.engine.check_invariants = rules == 3               # rules 2 left the book crossed
    mk.d.ok(StartCall(session="S", instrument="U"))
    mk.order("b1", 1, "buy", 1, MAX_INT)
    mk.order("b2", 1, "sell", 1, MAX_INT)
    trades = of(mk.d.ok(Uncross(session="S", instrument="U")), TradeExecuted)
    assert [t.price for t in trades] == ([] if rules == 2 else [MAX_INT])
    assert mk.state.books["U"].book.crossed() == (rules == 2)


@pytest.mark.parametrize("rules", [2, 3])
def test_a_call_uncrosses_on_the_tick(rules):
    mk = market(rules)
    mk.d.ok(SetPriceRules(session="S", instrument="U", tick=10))
    mk.d.ok(StartCall(session="S", instrument="U"))
    mk.order("b1", 1, "buy", 10, 200)
    mk.order("b1", 2, "buy", 10, 100)
    mk.order("b2", 1, "sell", 10, 90)
    mk.order("b2", 2, "sell", 10, 150)
    uncrossed = of(mk.d.ok(Uncross(session="S", instrument="U")), CallUncrossed)[0]
    assert uncrossed.price == (101 if rules == 2 else 110)
    assert uncrossed.volume == 10


def brute_equilibrium(bids, asks, reference, tick, top):
    """Try every price on the tick, and the orders' own (placed before the tick was set)."""
    best = None
    high = max([p for p, _ in bids + asks] + [reference]) + 2 * tick
    prices = sorted(set(range(tick, min(high, top), tick)) | {p for p, _ in bids + asks})
    for p in prices:
        demand = sum(q for price, q in bids if price >= p)
        supply = sum(q for price, q in asks if price <= p)
        volume = min(demand, supply)
        if not volume:
            continue
        rank = (-volume, abs(demand - supply), abs(p - reference) if reference else 0, p)
        best = rank if best is None or rank < best else best
    return (0, 0, 0) if best is None else (best[3], -best[0], best[1])


def test_the_equilibrium_on_a_tick_is_the_best_of_every_price_on_it():
    seed = random.randrange(10**9)
    rng = random.Random(seed)
    for _ in range(600):
        tick = rng.choice((1, 2, 5, 10, 25))
        book = Book()
        bids, asks = [], []
        for n in range(rng.randint(1, 12)):
            side = rng.choice((BUY, SELL))
            price = rng.randint(1, 300)          # off the tick too: rested before it was set
            qty = rng.randint(1, 20)
            book.add(n, side, price, qty, owner=n)
            (bids if side == BUY else asks).append((price, qty))
        reference = rng.choice((0, rng.randint(1, 320)))
        assert book.equilibrium(reference, tick, ANY_PRICE) == \
            brute_equilibrium(bids, asks, reference, tick, ANY_PRICE), \
            f"seed {seed}: tick {tick}, bids {bids}, asks {asks}, reference {reference}"


@pytest.mark.parametrize("rules", [2, 3])
def test_an_order_cancelled_by_self_trade_prevention_entering_a_call_is_remembered(rules):
    mk = market(rules)
    mk.order("b2", 9, "sell", 5, 100)
    mk.order("b1", 1, "buy", 5, 100)                      # order 1 fills in full
    mk.d.ok(StartCall(session="S", instrument="U"))
    mk.order("b1", 2, "sell", 5, 100)
    mk.order("b1", 1, "buy", 5, 105)                      # cancelled on entry (self_trade)
    assert rejected(mk.cancel("b1", 1)) == ("order_filled" if rules == 2 else "order_cancelled")


# ---------------------------------------------------------------------------
# lots
# ---------------------------------------------------------------------------

OP = dict(actor="op", role="operator")


def auctions(rules: int, check: bool = True):
    from tests.unit.auctionkit import Market as Auctions
    m = Auctions(check=check)
    m.d.rules = rules
    return m


@pytest.mark.parametrize("rules", [2, 3])
def test_a_lot_sold_at_its_ask_before_opening_then_relisted_opens_at_its_new_time(rules):
    from exchange.commands import BuyAtAsk, DeclareDefault, RelistLot, SetSettlementRules
    from exchange.events import LotAwarded, LotOpened
    from tests.unit.auctionkit import DAY, HOUR, T0, USD, one
    m = auctions(rules)
    seller = m.seller()
    alice = m.bidder("Alice")
    m.d.ok(SetSettlementRules(session="S1", payment_term=HOUR, reaward_window=HOUR,
                              publicity_period=HOUR), **OP)
    m.lot("L1", seller=seller, ask=5_000 * USD, opens_at=T0 + 10 * DAY, closes_at=T0 + 11 * DAY)
    assert one(m.send(BuyAtAsk(serial="L1", paddle=alice), alice, ts=T0 + HOUR),
               LotAwarded).how == "ask"
    m.tick(T0 + 3 * HOUR)                                      # overdue
    m.d.ok(DeclareDefault(settlement=1, next="relist"), **OP)
    m.d.ok(RelistLot(serial="L1", opens_at=T0 + 20 * DAY, closes_at=T0 + 21 * DAY), **OP)
    opened = of(m.tick(T0 + 10 * DAY), LotOpened)              # the old opening time
    assert len(opened) == (1 if rules == 2 else 0)
    if rules == 3:
        assert m.state.lots["L1"].status == "scheduled"
        assert of(m.tick(T0 + 20 * DAY), LotOpened)


@pytest.mark.parametrize("rules", [2, 3])
def test_a_late_dutch_clock_publishes_its_current_price_once(rules):
    from exchange.events import DutchPriceChanged
    from tests.unit.auctionkit import HOUR, T0
    m = auctions(rules, check=False)
    seller = m.seller()
    m.bidder("A")
    m.lot("D1", seller=seller, mechanism="dutch", starting_bid=1, dutch_start=20_001,
          dutch_step=1, dutch_interval=1)                      # 1 cent a nanosecond
    opens = m.state.lots["D1"].opens_at
    steps = of(m.tick(max(opens, T0 + HOUR) + 5_000), DutchPriceChanged)
    lot = m.state.lots["D1"]
    due = m.d.ts - lot.opens_at
    assert lot.clock == 20_001 - due
    assert len(steps) == (due if rules == 2 else 1)
    assert steps[-1].price == lot.clock
    steps = of(m.tick(m.d.ts + 10**9), DutchPriceChanged)    # to the floor, in one step
    assert [(s.price, s.at_floor) for s in steps][-1] == (1, True)
    assert rules == 2 or len(steps) == 1


@pytest.mark.parametrize("rules", [2, 3])
def test_a_rescheduled_lot_without_a_hard_end_may_close_later(rules):
    from exchange.commands import ScheduleLot
    from exchange.events import LotScheduled
    from tests.unit.auctionkit import DAY, HOUR, MINUTE, T0, one
    m = auctions(rules)
    seller = m.seller()
    m.lot("L1", seller=seller, opens_at=T0 + 2 * DAY, closes_at=T0 + 3 * DAY)
    events = m.d.send(ScheduleLot(serial="L1", opens_at=T0 + 4 * DAY, closes_at=T0 + 5 * DAY),
                      **OP)
    if rules == 2:
        assert rejected(events) == "bad_field"
        return
    assert one(events, LotScheduled).terms.hard_end == T0 + 5 * DAY
    # a soft close keeps its room to extend: the hard end moves with the close
    m.lot("L2", seller=seller, opens_at=T0 + 2 * DAY, closes_at=T0 + 3 * DAY,
          soft_window=10 * MINUTE, soft_extend=5 * MINUTE, hard_end=T0 + 3 * DAY + HOUR)
    terms = one(m.d.ok(ScheduleLot(serial="L2", closes_at=T0 + 3 * DAY - HOUR), **OP),
                LotScheduled).terms
    assert (terms.closes_at, terms.hard_end) == (T0 + 3 * DAY - HOUR, T0 + 3 * DAY)


@pytest.mark.parametrize("rules", [2, 3])
def test_a_lot_may_not_take_an_agreement_transfers_serial(rules):
    from exchange.commands import CreateLot
    from tests.unit.test_settlement import SELLER_BROKER, agreement_sale
    sale = agreement_sale()
    m = sale.m
    m.d.rules = rules
    events = m.d.send(CreateLot(serial="AT-1", session="S1", seller=sale.seller,
                                terms=m.terms()), actor=SELLER_BROKER, role="broker")
    assert rejected(events) == (None if rules == 2 else "lot_exists")


@pytest.mark.parametrize("rules", [2, 3])
def test_a_bidder_whose_approval_is_withdrawn_loses_its_standing_bids(rules):
    from exchange.events import BidVoided
    from tests.unit.auctionkit import HOUR, T0, USD
    m = auctions(rules)
    seller = m.seller()
    alice, bob = m.bidder("Alice"), m.bidder("Bob")
    m.lot("E1", seller=seller)                                # English, opens at T0 + 1 h
    m.lot("S1", seller=seller, mechanism="sealed_first")
    m.tick(T0 + HOUR)
    m.bid("E1", bob, 1_500 * USD)
    m.bid("E1", alice, 3_000 * USD)                           # leads at 1,600
    m.bid("S1", alice, 2_000 * USD)
    events = m.d.ok(ReviewCredit(party=m.parties[alice], approved=False), **OP)
    voided = [(v.serial, v.paddle, v.reason) for v in of(events, BidVoided)]
    lot = m.state.lots["E1"]
    if rules == 2:
        assert voided == [] and lot.leader == alice
    else:
        assert voided == [("E1", alice, "approval_withdrawn"), ("S1", alice, "approval_withdrawn")]
        assert (lot.leader, lot.price) == (bob, 1_000 * USD)     # alone: the starting bid


@pytest.mark.parametrize("rules", [2, 3])
def test_a_tick_raised_over_a_crossed_call_still_uncrosses_it(rules):
    mk = market(rules)
    mk.d.engine.check_invariants = True
    mk.d.ok(StartCall(session="S", instrument="U"))
    mk.order("b1", 1, "buy", 5, 150)
    mk.order("b2", 1, "sell", 5, 120)
    mk.d.ok(SetPriceRules(session="S", instrument="U", tick=100))   # neither is on it now
    trades = of(mk.d.ok(Uncross(session="S", instrument="U")), TradeExecuted)
    assert [(t.qty, t.price) for t in trades] == [(5, 120)]
    assert not mk.state.books["U"].book.crossed()


@pytest.mark.parametrize("rules", [2, 3])
def test_a_dutch_clock_late_past_its_close_shows_no_price_after_it(rules):
    from exchange.events import DutchPriceChanged, LotPassed
    from tests.unit.auctionkit import DAY, HOUR, T0, USD
    m = auctions(rules)
    seller = m.seller()
    m.bidder("A")
    m.lot("L1", seller=seller, mechanism="dutch", starting_bid=1_000 * USD,
          reserve=50_500 * USD, dutch_start=100_000 * USD, dutch_step=1_000 * USD,
          dutch_interval=HOUR)                               # opens T0 + 1 h, closes T0 + 1 d
    m.tick(T0 + HOUR)
    events = m.tick(T0 + 3 * DAY)                            # the exchange was down meanwhile
    prices = [(e.price, e.at_floor) for e in of(events, DutchPriceChanged)]
    assert prices[-1] == (78_000 * USD, False)              # the last step before the close
    assert len(prices) == (22 if rules == 2 else 1)
    assert of(events, LotPassed)


@pytest.mark.parametrize("rules", [2, 3])
def test_a_rescheduled_lots_moved_hard_end_stays_within_its_session(rules):
    from exchange.commands import ScheduleLot
    from exchange.events import LotScheduled
    from tests.unit.auctionkit import DAY, HOUR, MINUTE, T0, one
    from tests.unit.auctionkit import Market as Auctions
    m = Auctions(ends_at=T0 + 3 * DAY + HOUR)
    m.d.rules = rules
    seller = m.seller()
    m.lot("L2", seller=seller, opens_at=T0 + 2 * DAY, closes_at=T0 + 3 * DAY,
          soft_window=10 * MINUTE, soft_extend=5 * MINUTE, hard_end=T0 + 3 * DAY + HOUR)
    terms = one(m.d.ok(ScheduleLot(serial="L2", closes_at=T0 + 3 * DAY + 30 * MINUTE), **OP),
                LotScheduled).terms
    assert terms.hard_end == T0 + 3 * DAY + HOUR            # moved, then held at the end


def test_a_lot_sold_at_its_ask_under_rules_2_and_relisted_under_rules_3_opens_on_time():
    from exchange.commands import BuyAtAsk, DeclareDefault, RelistLot, SetSettlementRules
    from exchange.events import LotOpened
    from tests.unit.auctionkit import DAY, HOUR, T0, USD
    m = auctions(2)
    seller = m.seller()
    alice = m.bidder("Alice")
    m.d.ok(SetSettlementRules(session="S1", payment_term=HOUR, reaward_window=HOUR,
                              publicity_period=HOUR), **OP)
    m.lot("L1", seller=seller, ask=5_000 * USD, opens_at=T0 + 10 * DAY, closes_at=T0 + 11 * DAY)
    m.send(BuyAtAsk(serial="L1", paddle=alice), alice, ts=T0 + HOUR)
    m.tick(T0 + 3 * HOUR)
    m.d.ok(DeclareDefault(settlement=1, next="relist"), **OP)
    m.d.rules = 3                                            # lotex upgraded meanwhile
    m.d.ok(RelistLot(serial="L1", opens_at=T0 + 20 * DAY, closes_at=T0 + 21 * DAY), **OP)
    assert not of(m.tick(T0 + 10 * DAY), LotOpened)
    assert of(m.tick(T0 + 20 * DAY), LotOpened)


@pytest.mark.parametrize("rules", [2, 3])
def test_a_reaward_offer_ends_when_the_offerees_approval_is_withdrawn(rules):
    from exchange.commands import DeclareDefault
    from exchange.events import ReawardEnded, ReawardOffered
    from tests.unit.test_settlement_default import english, overdue
    m, sale, a, b, c, d = english()
    m.d.rules = rules
    overdue(sale)
    offer = of(m.d.ok(DeclareDefault(settlement=sale.sid, reason="unpaid"), **OP),
               ReawardOffered)[0]
    assert offer.paddle == b
    events = m.d.ok(ReviewCredit(party=m.parties[b], approved=False), **OP)
    ended = [(e.paddle, e.reason) for e in of(events, ReawardEnded)]
    offered = [e.paddle for e in of(events, ReawardOffered)]
    if rules == 2:
        assert (ended, offered) == ([], [])
    else:
        assert (ended, offered) == ([(b, "approval_withdrawn")], [c])
