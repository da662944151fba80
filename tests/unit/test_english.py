"""English auction with proxy bids: worked examples checkable by hand."""

import pytest

from exchange.commands import PlaceBid, ScheduleLot, SetDisplayRate, VetLot
from exchange.events import (BidAccepted, BidConfirmed, LotAwarded, LotClosed, LotExtended,
                             LotOpened, LotPassed, LotPassedDetail, LotSold, OPERATORS)
from tests.unit.auctionkit import DAY, HOUR, MINUTE, T0, USD, Market, of, one


def english():
    m = Market()
    seller = m.seller()
    a, b, c = m.bidder("Alice"), m.bidder("Bob"), m.bidder("Carol")
    return m, seller, a, b, c


def test_ebay_proxy_rule_step_by_step():
    # eBay auction 1638893549 (Cartier wristwatch), opening bid $99, 2003 increments.
    m, seller, a, b, c = english()
    m.lot("L1", seller=seller, starting_bid=9_900, increments="ebay2003")
    m.tick(T0 + HOUR)
    ev = m.bid("L1", a, 17_500)                       # lone bidder stands at the opening bid
    assert one(ev, BidAccepted).price == 9_900 and one(ev, BidAccepted).leader == a
    ev = m.bid("L1", b, 10_000)                       # 99 + 1.00 = 100 is the least bid
    assert one(ev, BidAccepted).price == 10_250       # 100 + 2.50, A still leads
    assert one(ev, BidAccepted).leader == a
    assert one(ev, BidConfirmed).leading is False
    ev = m.bid("L1", c, 12_000)
    assert one(ev, BidAccepted).price == 12_250
    ev = m.bid("L1", c, 15_000)
    assert one(ev, BidAccepted).price == 15_250
    ev = m.bid("L1", c, 18_000)                       # C overtakes: 175 + 2.50, capped at 180
    assert (one(ev, BidAccepted).price, one(ev, BidAccepted).leader) == (17_750, c)
    ev = m.tick(T0 + DAY)
    award = one(ev, LotAwarded)
    assert (award.paddle, award.hammer, award.tie_break, award.how) == (c, 17_750, "none", "auction")


def test_cap_at_leaders_maximum():
    m, seller, a, b, _ = english()
    m.lot("L1", seller=seller)                        # $1,000 start, flat $100 steps
    m.tick(T0 + HOUR)
    m.bid("L1", a, 1_250 * USD)
    ev = m.bid("L1", b, 1_200 * USD)                  # 1,200 + 100 = 1,300 > 1,250: capped
    assert one(ev, BidAccepted).price == 1_250 * USD and one(ev, BidAccepted).leader == a


def test_equal_maxima_go_to_the_earlier_bid():
    m, seller, a, b, _ = english()
    m.lot("L1", seller=seller)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_000 * USD)
    ev = m.bid("L1", b, 2_000 * USD)                  # same maximum, later: A leads at 2,000
    assert one(ev, BidAccepted).leader == a and one(ev, BidAccepted).price == 2_000 * USD
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert (award.paddle, award.hammer, award.tie_break) == (a, 2_000 * USD, "earliest")


def test_minimum_bids_and_own_maximum():
    m, seller, a, b, _ = english()
    m.lot("L1", seller=seller)
    m.tick(T0 + HOUR)
    assert m.refused("L1", a, 999 * USD).code == "below_minimum"
    m.bid("L1", a, 1_500 * USD)                       # stands at 1,000
    assert m.refused("L1", b, 1_099 * USD).code == "below_increment"
    m.bid("L1", b, 1_100 * USD)                       # price 1,200
    assert m.refused("L1", b, 1_299 * USD).code == "below_increment"
    assert m.refused("L1", a, 1_500 * USD).code == "not_above_own_max"
    ev = m.bid("L1", a, 1_800 * USD)                  # raising one's own maximum: price unchanged
    assert one(ev, BidAccepted).price == 1_200 * USD
    assert one(ev, BidConfirmed).to == ("broker-Alice", OPERATORS)
    assert one(ev, BidConfirmed).amount == 1_800 * USD


def test_reserve_not_met_passes_and_only_the_seller_sees_amounts():
    m, seller, a, _, _ = english()
    m.lot("L1", seller=seller, reserve=2_000 * USD)
    m.tick(T0 + HOUR)
    ev = m.bid("L1", a, 1_500 * USD)
    assert one(ev, BidAccepted).reserve_met is False
    ev = m.tick(T0 + DAY)
    assert one(ev, LotClosed).outcome == "passed"
    passed = one(ev, LotPassed)
    assert passed.to == () and passed.reason == "reserve_not_met"
    detail = one(ev, LotPassedDetail)
    assert detail.to == ("seller-broker", OPERATORS)
    assert (detail.highest_bid, detail.highest_paddle, detail.reserve) == (1_000 * USD, a, 2_000 * USD)
    assert not of(ev, LotAwarded)
    assert m.exposure(a) == 0


def test_reserve_met_sells_at_the_reserve_which_stays_secret_until_the_close():
    m, seller, a, b, _ = english()
    m.lot("L1", seller=seller, reserve=2_000 * USD)
    m.tick(T0 + HOUR)
    ev = m.bid("L1", a, 2_500 * USD)
    accepted = one(ev, BidAccepted)
    assert accepted.reserve_met is True and accepted.price == 1_000 * USD
    ev = m.bid("L1", b, 1_300 * USD)
    assert one(ev, BidAccepted).price == 1_400 * USD
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert (award.paddle, award.hammer) == (a, 2_000 * USD)   # max(1,400, reserve 2,000)


def test_no_bids_passes():
    m, seller, *_ = english()
    m.lot("L1", seller=seller, negotiation_window=DAY)
    m.tick(T0 + HOUR)
    passed = one(m.tick(T0 + DAY), LotPassed)
    assert (passed.reason, passed.bids, passed.negotiation_ends) == ("no_bids", 0, T0 + 2 * DAY)


def test_soft_close_extends_up_to_the_hard_end():
    m, seller, a, b, _ = english()
    close = T0 + DAY
    m.lot("L1", seller=seller, soft_window=10 * MINUTE, soft_extend=10 * MINUTE,
          hard_end=close + 25 * MINUTE)
    m.tick(T0 + HOUR)
    ev = m.bid("L1", a, 1_000 * USD, ts=close - 20 * MINUTE)   # outside the window
    assert not of(ev, LotExtended) and one(ev, BidAccepted).closes_at == close
    ev = m.bid("L1", b, 1_100 * USD, ts=close - 5 * MINUTE)    # inside: +10 min
    assert one(ev, LotExtended).closes_at == close + 10 * MINUTE
    ev = m.bid("L1", b, 1_300 * USD, ts=close + 9 * MINUTE)    # inside again: +10 min
    assert one(ev, LotExtended).closes_at == close + 20 * MINUTE
    ev = m.bid("L1", a, 1_500 * USD, ts=close + 19 * MINUTE)   # capped at the hard end
    assert one(ev, LotExtended).closes_at == close + 25 * MINUTE
    ev = m.bid("L1", b, 1_700 * USD, ts=close + 24 * MINUTE)   # at the hard end: no more
    assert not of(ev, LotExtended)
    # the original close passed without closing the lot
    assert m.state.lots["L1"].status == "open"
    rejection = m.refused("L1", a, 2_000 * USD, ts=close + 25 * MINUTE)
    assert rejection.code == "lot_closed"
    viewer = m.d.send(PlaceBid(serial="L1", paddle=a, amount=1), actor="x", role="viewer")
    assert viewer[-1].code == "not_permitted"
    lot = m.state.lots["L1"]
    assert lot.status == "sold" and lot.sale.paddle == b and lot.sale.hammer == 1_600 * USD


def test_a_soft_close_without_a_hard_end_after_the_close_is_refused_at_scheduling():
    m, seller, *_ = english()
    m.lot("L1", seller=seller, soft_window=10 * MINUTE, soft_extend=10 * MINUTE, schedule=False)
    m.d.ok(VetLot(serial="L1", score=80, approved=True))
    refusal = m.d.refused(ScheduleLot(serial="L1"))
    assert refusal.code == "bad_field" and "no hard_end after its close" in refusal.text
    assert m.state.lots["L1"].status == "vetted"
    m.d.ok(ScheduleLot(serial="L1", hard_end=T0 + DAY + HOUR))   # the schedule may give it
    assert m.state.lots["L1"].hard_end == T0 + DAY + HOUR


def test_no_lot_is_scheduled_or_relisted_in_a_closed_session():
    from exchange.commands import CloseSession, RelistLot
    m, seller, *_ = english()
    m.lot("L1", seller=seller, schedule=False)
    m.d.ok(VetLot(serial="L1", score=80, approved=True))
    m.lot("L2", seller=seller, negotiation_window=0)
    m.tick(T0 + DAY)                                             # L2 passes: no bids
    m.d.ok(CloseSession(session=m.session))
    assert m.d.refused(ScheduleLot(serial="L1")).code == "session_closed"
    relist = RelistLot(serial="L2", opens_at=T0 + DAY + HOUR, closes_at=T0 + 2 * DAY)
    assert m.d.refused(relist).code == "session_closed"
    assert m.state.lots["L1"].status == "vetted"


def test_a_lot_scheduled_when_its_session_closes_is_withdrawn_and_never_opens():
    from exchange.commands import CloseSession
    from exchange.events import LotOpened, LotWithdrawn
    m, seller, *_ = english()
    m.lot("L1", seller=seller, schedule=False)
    m.d.ok(VetLot(serial="L1", score=80, approved=True))
    m.d.ok(ScheduleLot(serial="L1", opens_at=T0 + 2 * HOUR, closes_at=T0 + DAY))
    withdrawn = one(m.d.ok(CloseSession(session=m.session)), LotWithdrawn)
    assert (withdrawn.serial, withdrawn.reason, withdrawn.to) == ("L1", "session closed", ())
    assert not of(m.tick(T0 + 3 * HOUR), LotOpened)
    assert m.state.lots["L1"].status == "withdrawn"


def test_a_lot_closing_when_its_session_ends_is_awarded_before_the_session_closes():
    from exchange.events import LotWithdrawn, SessionClosed
    m = Market(ends_at=T0 + DAY)
    seller = m.seller()
    a = m.bidder("Alice")
    m.lot("L1", seller=seller, closes_at=T0 + DAY)              # closes as the session ends
    m.lot("L2", seller=seller, schedule=False)
    m.d.ok(VetLot(serial="L2", score=80, approved=True))
    m.d.ok(ScheduleLot(serial="L2", opens_at=T0 + 2 * HOUR, closes_at=T0 + DAY - HOUR))
    m.tick(T0 + HOUR)
    m.bid("L1", a, 1_000 * USD)
    events = m.tick(T0 + DAY + MINUTE)          # the first command after the end
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("LotAwarded") < kinds.index("SessionClosed"), kinds
    assert one(events, LotAwarded).paddle == a and one(events, SessionClosed).session == "S1"
    assert not of(events, LotWithdrawn)                   # L2 opened and passed on its own
    assert m.state.lots["L1"].status == "sold" and m.state.lots["L2"].status == "passed"
    assert m.refused("L1", a, 2_000 * USD).code == "session_closed"


def test_bids_before_open_after_close_and_bad_input():
    m, seller, a, b, _ = english()
    s_paddle = m.bidder("SellerAsBidder", broker="seller-broker")
    m.lot("L1", seller=m.parties[s_paddle])
    assert m.refused("L1", a, 1_000 * USD).code == "lot_not_open"
    m.tick(T0 + HOUR)
    assert m.refused("L1", s_paddle, 1_000 * USD).code == "own_lot"
    assert m.refused("L1", a, 0).code == "non_positive"
    assert m.refused("L1", a, -5).code == "non_positive"
    assert m.refused("L1", a, 10**16).code == "out_of_range"
    assert m.refused("NOPE", a, 1_000 * USD).code == "unknown_lot"
    r = m.d.send(PlaceBid(serial="L1", paddle=999, amount=1_000 * USD), actor="broker-Alice",
                 role="broker")
    assert r[-1].code == "not_your_paddle"        # to a broker: as another broker's paddle
    r = m.d.send(PlaceBid(serial="L1", paddle=a, amount=1_000 * USD), actor="broker-Bob",
                 role="broker")
    assert r[-1].code == "not_your_paddle"
    r = m.send(PlaceBid(serial="L1", paddle=a, amount=1_000 * USD, currency="EUR"), a)
    assert r[-1].code == "wrong_currency"
    m.tick(T0 + DAY)
    assert m.refused("L1", b, 5_000 * USD).code == "lot_closed"


def test_ask_met_by_a_bid_sells_at_once():
    m, seller, a, b, _ = english()
    m.lot("L1", seller=seller, ask=5_000 * USD, buyer_premium_bp=1_000)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_000 * USD)
    assert m.exposure(a) == 2_200 * USD
    ev = m.bid("L1", b, 6_000 * USD)
    assert one(ev, LotClosed).outcome == "sold"
    award = one(ev, LotAwarded)
    assert (award.how, award.paddle, award.hammer, award.total) == ("ask", b, 5_000 * USD,
                                                                    5_500 * USD)
    assert m.exposure(a) == 0 and m.exposure(b) == 5_500 * USD
    assert m.refused("L1", a, 7_000 * USD).code == "lot_closed"
    assert not of(m.tick(T0 + DAY), LotAwarded)      # the close timer finds it sold


def test_a_bid_of_exactly_the_ask_buys_even_below_the_next_increment():
    m, seller, a, b, _ = english()
    m.lot("L1", seller=seller, starting_bid=10, ask=5_000, increments="custom",
          custom_increments=((0, 100),))
    m.tick(T0 + HOUR)
    m.bid("L1", a, 4_900)
    m.bid("L1", b, 4_990)
    assert m.state.lots["L1"].price == 4_990               # b leads; the next least bid 5,090
    award = one(m.bid("L1", a, 5_000), LotAwarded)       # ... but the Ask is 5,000: a buys
    assert (award.how, award.paddle, award.hammer) == ("ask", a, 5_000)


def test_award_carries_fees_display_amounts_and_a_private_sale():
    m, seller, a, b, _ = english()
    m.d.ok(SetDisplayRate(base="USD", quote="CNY", num=66402, den=10000))
    m.lot("L1", seller=seller, buyer_premium_bp=1_000, seller_commission_bp=1_500,
          display_currency="CNY", starting_bid=30_000 * USD,
          increments="otba")
    m.tick(T0 + HOUR)
    ev = m.bid("L1", a, 100_000 * USD)
    accepted = one(ev, BidAccepted)
    assert (accepted.display_currency, accepted.display_price) == ("CNY", 19_920_600)
    m.bid("L1", b, 60_000 * USD)                      # price 60,000 + 30,000 = 90,000
    ev = m.tick(T0 + DAY)
    award = one(ev, LotAwarded)
    assert award.to == ()
    assert (award.hammer, award.premium, award.total) == (9_000_000, 900_000, 9_900_000)
    assert (award.commission, award.net) == (1_350_000, 7_650_000)
    assert (award.display_currency, award.display_hammer) == ("CNY", 59_761_800)
    sold = one(ev, LotSold)
    assert sold.to == (OPERATORS,)
    assert (sold.buyer, sold.seller, sold.paddle) == (m.parties[a], seller, a)
    assert m.exposure(a) == 9_900_000


def test_lot_opens_by_timer_and_public_events_name_no_party():
    m, seller, a, b, _ = english()
    m.lot("L1", seller=seller, reserve=1_500 * USD)
    ev = m.tick(T0 + HOUR)
    opened = one(ev, LotOpened)
    assert opened.to == () and opened.price == 1_000 * USD
    events = ev + m.bid("L1", a, 3_000 * USD) + m.bid("L1", b, 2_000 * USD) + m.tick(T0 + DAY)
    for event in events:
        if event.to == ():
            fields = set(type(event).__struct_fields__)
            assert not fields & {"party", "buyer", "seller", "reserve", "name"}, event
            assert getattr(event, "amount", None) is None, event


@pytest.mark.parametrize("field,value,code", [
    ("starting_bid", 0, "non_positive"),
    ("currency", "usd", "bad_field"),
    ("increments", "nope", "bad_field"),
    ("custom_increments", ((5, 100),), "bad_field"),
    ("soft_window", MINUTE, "bad_field"),
    ("buyer_premium_bp", 10_001, "out_of_range"),
    ("ask", 500 * USD, "bad_field"),
])
def test_bad_terms_are_refused(field, value, code):
    m, seller, *_ = english()
    from exchange.commands import CreateLot
    cmd = CreateLot(serial="L1", session="S1", seller=seller, terms=m.terms(**{field: value}))
    assert m.unchanged(cmd, actor="seller-broker").code == code
