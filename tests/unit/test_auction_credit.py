"""Credit limits across the lots of a session: proxy maxima, sealed bids, won
lots and offers all count against one limit, with the buyer's premium."""

from exchange.commands import BuyAtAsk, MakeOffer, WithdrawBid
from exchange.events import CommandRejected, CreditChanged, LotAwarded
from tests.unit.auctionkit import DAY, HOUR, T0, USD, Market, of, one


def two_lots(limit, mechanism_b="english"):
    m = Market()
    seller = m.seller()
    a = m.bidder("Alice", limit=limit)
    b = m.bidder("Bob")
    m.lot("A", seller=seller, buyer_premium_bp=1_000)
    m.lot("B", seller=seller, buyer_premium_bp=1_000, mechanism=mechanism_b)
    m.tick(T0 + HOUR)
    return m, a, b


def test_credit_limit_hit_across_two_lots():
    # Limit 5,500. Lot A: a maximum of 3,000 commits 3,300 with the 10 % premium.
    m, a, b = two_lots(5_500 * USD)
    ev = m.bid("A", a, 3_000 * USD)
    changed = one(ev, CreditChanged)
    assert changed.to == ("broker-Alice", "@operators") and changed.exposure == 3_300 * USD
    # Lot B: 2,500 would commit 2,750; 3,300 + 2,750 = 6,050 > 5,500.
    assert m.refused("B", a, 2_500 * USD).code == "over_credit_limit"
    assert m.exposure(a) == 3_300 * USD
    # 2,000 commits 2,200; 3,300 + 2,200 = 5,500 exactly: accepted.
    m.bid("B", a, 2_000 * USD)
    assert m.exposure(a) == 5_500 * USD
    # Outbid on A: its commitment is released and A has room again on B.
    m.bid("A", b, 3_100 * USD)
    assert m.exposure(a) == 2_200 * USD
    m.bid("B", a, 4_500 * USD)                        # leader raises its own maximum: 4,950
    assert m.exposure(a) == 4_950 * USD


def test_won_lot_stays_committed_at_the_total_due():
    m, a, b = two_lots(5_500 * USD)
    m.bid("A", a, 3_000 * USD)                        # alone: will win at 1,000
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert (award.paddle, award.hammer, award.total) == (a, 1_000 * USD, 1_100 * USD)
    assert m.exposure(a) == 1_100 * USD               # no longer the 3,300 of the maximum
    m.lot("C", seller=m.state.lots["A"].seller,
          buyer_premium_bp=1_000, opens_at=T0 + 2 * DAY, closes_at=T0 + 3 * DAY)
    m.tick(T0 + 2 * DAY)
    assert m.refused("C", a, 4_100 * USD).code == "over_credit_limit"  # 1,100 + 4,510
    m.bid("C", a, 4_000 * USD)                        # 1,100 + 4,400 = 5,500
    assert m.refused("A", a, 5_000 * USD).code == "lot_closed"


def test_sealed_bids_count_and_withdrawal_releases():
    m, a, b = two_lots(5_500 * USD, mechanism_b="sealed_first")
    m.bid("A", a, 3_000 * USD)                        # 3,300
    assert m.refused("B", a, 2_100 * USD).code == "over_credit_limit"   # 2,310 > 2,200
    m.bid("B", a, 2_000 * USD)                        # 2,200
    assert m.exposure(a) == 5_500 * USD
    m.send(WithdrawBid(serial="B", paddle=a), a)
    assert m.exposure(a) == 3_300 * USD


def test_ask_purchase_and_offers_are_checked():
    m = Market()
    seller = m.seller()
    a = m.bidder("Alice", limit=5_000 * USD)
    m.lot("A", seller=seller, ask=5_000 * USD, buyer_premium_bp=1_000)
    rejected = one(m.send(BuyAtAsk(serial="A", paddle=a), a), CommandRejected)
    assert rejected.code == "over_credit_limit"       # 5,500 > 5,000
    m.lot("P", seller=seller, reserve=9_000 * USD, negotiation_window=DAY,
          buyer_premium_bp=1_000)
    m.tick(T0 + HOUR)
    m.bid("P", a, 1_000 * USD)
    m.tick(T0 + DAY)
    r = m.send(MakeOffer(serial="P", paddle=a, amount=4_600 * USD), a)
    assert one(r, CommandRejected).code == "over_credit_limit"
    m.send(MakeOffer(serial="P", paddle=a, amount=4_500 * USD), a)
    assert m.exposure(a) == 4_950 * USD


def test_credit_in_another_currency_is_refused():
    m = Market()
    seller = m.seller()
    a = m.bidder("Alice", currency="EUR")
    m.lot("A", seller=seller)
    m.tick(T0 + HOUR)
    assert m.refused("A", a, 1_000 * USD).code == "wrong_currency"
    assert not of(m.tick(T0 + DAY), LotAwarded)
