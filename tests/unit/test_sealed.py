"""Sealed first-price and Vickrey auctions: worked examples."""

import pytest

from exchange.commands import WithdrawBid
from exchange.events import (BidConfirmed, BidWithdrawn, CommandRejected, LotAwarded, LotClosed,
                             LotPassed, LotPassedDetail, RevealedBid, SealedBidCounted,
                             SealedBidsRevealed)
from tests.unit.auctionkit import DAY, HOUR, T0, USD, Market, of, one


def sealed(mechanism, **fields):
    m = Market()
    seller = m.seller()
    paddles = [m.bidder(name) for name in ("Alice", "Bob", "Carol")]
    m.lot("L1", seller=seller, mechanism=mechanism, **fields)
    m.tick(T0 + HOUR)
    return m, paddles


def test_first_price_winner_pays_its_bid():
    m, (a, b, c) = sealed("sealed_first")
    m.bid("L1", a, 1_500 * USD)
    m.bid("L1", b, 2_000 * USD)
    m.bid("L1", c, 1_800 * USD)
    ev = m.tick(T0 + DAY)
    assert [type(e).__name__ for e in ev if e.to == ()][:2] == ["LotClosed", "SealedBidsRevealed"]
    assert one(ev, SealedBidsRevealed).bids == (RevealedBid(paddle=b, amount=2_000 * USD),
                                                RevealedBid(paddle=c, amount=1_800 * USD),
                                                RevealedBid(paddle=a, amount=1_500 * USD))
    award = one(ev, LotAwarded)
    assert (award.paddle, award.hammer, award.tie_break) == (b, 2_000 * USD, "none")


def test_vickrey_winner_pays_the_second_highest_bid():
    m, (a, b, c) = sealed("sealed_second")
    m.bid("L1", a, 1_500 * USD)
    m.bid("L1", b, 2_000 * USD)
    m.bid("L1", c, 1_800 * USD)
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert (award.paddle, award.hammer) == (b, 1_800 * USD)


@pytest.mark.parametrize("reserve,price", [(0, 1_000 * USD), (1_200 * USD, 1_200 * USD)])
def test_vickrey_with_one_bidder_pays_the_reserve_or_the_starting_bid(reserve, price):
    m = Market()
    seller = m.seller()
    a = m.bidder("Alice")
    m.lot("L1", seller=seller, mechanism="sealed_second", reserve=reserve,
          starting_bid=1_000 * USD)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 1_500 * USD)
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert (award.paddle, award.hammer, award.tie_break) == (a, price, "none")


def test_vickrey_second_bid_below_reserve_pays_the_reserve():
    m = Market()
    seller = m.seller()
    a, b = m.bidder("Alice"), m.bidder("Bob")
    m.lot("L1", seller=seller, mechanism="sealed_second", reserve=1_700 * USD)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_000 * USD)
    m.bid("L1", b, 1_100 * USD)
    assert one(m.tick(T0 + DAY), LotAwarded).hammer == 1_700 * USD


@pytest.mark.parametrize("mechanism", ["sealed_first", "sealed_second"])
def test_tie_goes_to_the_earlier_live_bid(mechanism):
    m, (a, b, c) = sealed(mechanism)
    m.bid("L1", b, 2_000 * USD)
    m.bid("L1", a, 2_000 * USD)
    m.bid("L1", c, 1_900 * USD)
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert (award.paddle, award.hammer, award.tie_break) == (b, 2_000 * USD, "earliest")


def test_replacing_a_bid_loses_its_time_priority():
    m, (a, b, _) = sealed("sealed_first")
    m.bid("L1", a, 2_000 * USD)
    m.bid("L1", b, 2_000 * USD)
    m.bid("L1", a, 2_000 * USD)                       # same amount, placed again: now later
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert (award.paddle, award.tie_break) == (b, "earliest")


def test_lottery_tie_break_is_deterministic():
    winners = set()
    for _ in range(2):
        m, (a, b, c) = sealed("sealed_first", tie_break="lottery")
        for paddle in (a, b, c):
            m.bid("L1", paddle, 2_000 * USD)
        award = one(m.tick(T0 + DAY), LotAwarded)
        assert award.tie_break == "lottery"
        winners.add(award.paddle)
    assert len(winners) == 1


def test_public_events_carry_only_a_count_until_the_close():
    m, (a, b, _) = sealed("sealed_second", buyer_premium_bp=1_000)
    ev = m.bid("L1", a, 1_500 * USD)
    assert one(ev, SealedBidCounted).bids == 1 and one(ev, SealedBidCounted).to == ()
    confirmed = one(ev, BidConfirmed)
    assert confirmed.to == ("broker-Alice", "@operators") and confirmed.amount == 1_500 * USD
    ev += m.bid("L1", b, 1_700 * USD) + m.bid("L1", a, 1_300 * USD)   # A replaces its bid
    assert of(ev, SealedBidCounted)[-1].bids == 2
    for event in ev:
        if event.to == ():
            assert isinstance(event, SealedBidCounted), event
    assert m.exposure(a) == 1_430 * USD              # 1,300 + 10 % premium
    ev = m.send(WithdrawBid(serial="L1", paddle=a), a)
    assert one(ev, BidWithdrawn).to == ("broker-Alice", "@operators")
    assert one(ev, SealedBidCounted).bids == 1
    assert m.exposure(a) == 0
    assert one(m.send(WithdrawBid(serial="L1", paddle=a), a), CommandRejected).code == "no_live_bid"
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert (award.paddle, award.hammer) == (b, 1_000 * USD)  # alone after A withdrew
    assert one(m.send(WithdrawBid(serial="L1", paddle=b), b), CommandRejected).code == "lot_closed"


def test_reserve_not_met_passes_with_private_detail():
    m = Market()
    seller = m.seller()
    a = m.bidder("Alice")
    m.lot("L1", seller=seller, mechanism="sealed_first", reserve=3_000 * USD)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_500 * USD)
    ev = m.tick(T0 + DAY)
    assert one(ev, LotClosed).outcome == "passed"
    assert one(ev, LotPassed).reason == "reserve_not_met"
    detail = one(ev, LotPassedDetail)
    assert (detail.highest_bid, detail.reserve, detail.to[0]) == (2_500 * USD, 3_000 * USD,
                                                                  "seller-broker")
    assert m.exposure(a) == 0


def test_sealed_bid_at_the_ask_buys_at_once_and_below_start_is_refused():
    m, (a, b, _) = sealed("sealed_second", ask=4_000 * USD)
    assert m.refused("L1", a, 999 * USD).code == "below_minimum"
    m.bid("L1", a, 1_500 * USD)
    ev = m.bid("L1", b, 4_500 * USD)
    award = one(ev, LotAwarded)
    assert (award.how, award.paddle, award.hammer) == ("ask", b, 4_000 * USD)
    assert m.exposure(a) == 0 and m.exposure(b) == 4_000 * USD


@pytest.mark.parametrize("reserve, outcome", [(0, "sold"), (9_000 * USD, "passed")])
def test_public_counts_at_the_close_are_the_live_bids_not_the_revisions(reserve, outcome):
    m, (a, b, c) = sealed("sealed_first", reserve=reserve)
    m.bid("L1", a, 1_500 * USD)
    m.bid("L1", a, 1_600 * USD)          # revised twice: still one bid of Alice's
    m.bid("L1", a, 1_700 * USD)
    m.bid("L1", b, 2_000 * USD)
    ev = m.tick(T0 + DAY)
    closed = one(ev, LotClosed)
    assert (closed.outcome, closed.bids) == (outcome, 2)
    assert len(one(ev, SealedBidsRevealed).bids) == 2
    if outcome == "passed":
        assert one(ev, LotPassed).bids == 2


def test_a_revised_sealed_bid_tells_the_public_nothing():
    m, (a, b, _) = sealed("sealed_first")
    counts = [one(m.bid("L1", a, 1_500 * USD), SealedBidCounted).bids,
              one(m.bid("L1", b, 1_600 * USD), SealedBidCounted).bids]
    revised = m.bid("L1", a, 1_700 * USD)
    assert counts == [1, 2] and not of(revised, SealedBidCounted)
    assert not [e for e in revised if e.to == ()]
    assert one(revised, BidConfirmed).amount == 1_700 * USD        # its owner hears it
