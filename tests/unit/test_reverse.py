"""Reverse tender: a buyer asks, sellers offer sealed prices, the lowest acceptable wins."""

from exchange.commands import ChooseOffer, ScheduleLot, VetLot, WithdrawBid
from exchange.events import (CommandRejected, LotAwarded, LotClosed, LotPassed, LotSold,
                             SealedBidCounted, SealedBidsRevealed)
from tests.unit.auctionkit import DAY, HOUR, T0, USD, Market, of, one


def tender(reserve=40_000 * USD, choice="lowest", owner_limit=10**12, schedule=True):
    m = Market()
    owner = m.party("Seeker Corp", "seeker-broker", limit=owner_limit)
    solvers = [m.bidder(name) for name in ("Lab A", "Lab B", "Lab C")]
    m.lot("T1", seller=owner, broker="seeker-broker", mechanism="reverse",
          starting_bid=50_000 * USD, reserve=reserve, reverse_choice=choice,
          choice_window=DAY if choice == "buyer" else 0, buyer_premium_bp=500,
          seller_commission_bp=1_000, schedule=schedule)
    if schedule:
        m.tick(T0 + HOUR)
    return m, owner, solvers


def test_lowest_acceptable_offer_wins_at_its_own_price():
    m, owner, (a, b, c) = tender()
    assert m.refused("T1", a, 60_000 * USD).code == "above_budget"
    m.bid("T1", a, 45_000 * USD)                      # above the secret ceiling of 40,000
    m.bid("T1", b, 38_000 * USD)
    ev = m.bid("T1", c, 41_000 * USD)
    assert one(ev, SealedBidCounted).bids == 3
    m.bid("T1", c, 36_000 * USD)                      # C replaces its offer
    ev = m.tick(T0 + DAY)
    assert [bid.amount for bid in one(ev, SealedBidsRevealed).bids] == [
        36_000 * USD, 38_000 * USD, 45_000 * USD]
    award = one(ev, LotAwarded)
    assert (award.paddle, award.hammer, award.premium, award.total) == (
        c, 36_000 * USD, 1_800 * USD, 37_800 * USD)
    assert (award.commission, award.net) == (3_600 * USD, 32_400 * USD)
    sold = one(ev, LotSold)
    assert (sold.buyer, sold.seller) == (owner, m.parties[c])
    found = m.state.exposure[("S1", owner)]
    assert found.total == 37_800 * USD


def test_owner_holds_its_ceiling_while_the_tender_runs():
    m, owner, (a, _, _) = tender()
    assert m.state.exposure[("S1", owner)].total == 42_000 * USD   # 40,000 + 5 %
    assert m.exposure(a) == 0                          # offering to sell commits nothing
    ev = m.tick(T0 + DAY)
    assert one(ev, LotPassed).reason == "no_bids"
    assert m.state.exposure[("S1", owner)].total == 0


def test_no_acceptable_offer_passes():
    m, owner, (a, b, _) = tender()
    m.bid("T1", a, 45_000 * USD)
    m.bid("T1", b, 41_000 * USD)
    ev = m.tick(T0 + DAY)
    assert one(ev, LotPassed).reason == "no_acceptable_offer"


def test_equal_lowest_offers_go_to_the_earlier():
    m, owner, (a, b, _) = tender()
    m.bid("T1", b, 30_000 * USD)
    m.bid("T1", a, 30_000 * USD)
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert (award.paddle, award.tie_break) == (b, "earliest")


def test_buyer_chooses_among_acceptable_offers():
    m, owner, (a, b, c) = tender(choice="buyer")
    m.bid("T1", a, 39_000 * USD)
    m.bid("T1", b, 30_000 * USD)
    m.bid("T1", c, 45_000 * USD)
    m.send(WithdrawBid(serial="T1", paddle=b), b)
    ev = m.tick(T0 + DAY)
    closed = one(ev, LotClosed)
    assert (closed.outcome, closed.decision_by) == ("choosing", T0 + 2 * DAY)
    assert not of(ev, LotAwarded)
    assert m.refused("T1", b, 20_000 * USD).code == "lot_closed"
    r = m.d.send(ChooseOffer(serial="T1", paddle=a), actor="broker-Lab A", role="broker")
    assert one(r, CommandRejected).code == "not_your_party"
    r = m.d.send(ChooseOffer(serial="T1", paddle=c), actor="seeker-broker", role="broker")
    assert one(r, CommandRejected).code == "not_acceptable"
    r = m.d.send(ChooseOffer(serial="T1", paddle=b), actor="seeker-broker", role="broker")
    assert one(r, CommandRejected).code == "no_live_bid"
    ev = m.d.send(ChooseOffer(serial="T1", paddle=a), actor="seeker-broker", role="broker")
    award = one(ev, LotAwarded)
    assert (award.paddle, award.hammer) == (a, 39_000 * USD)


def test_no_choice_within_the_window_passes():
    m, owner, (a, _, _) = tender(choice="buyer")
    m.bid("T1", a, 39_000 * USD)
    m.tick(T0 + DAY)
    ev = m.tick(T0 + 2 * DAY)
    assert one(ev, LotPassed).reason == "no_choice"
    assert m.state.exposure[("S1", owner)].total == 0


def test_a_tender_open_when_its_session_closes_is_still_chosen_until_its_decision_time():
    """The buyer's choice is the tender's own award among the offers made
    before its close, not a negotiation: a tender open when the session
    closes ends at its own close, as every open lot does, and its buyer may
    choose until `decision_by` (then it passes "no_choice"), session closed
    or not. Refusing it would leave such a tender no way to be awarded."""
    from exchange.commands import CloseSession
    m, owner, (a, b, _) = tender(choice="buyer")
    m.bid("T1", a, 39_000 * USD)
    m.bid("T1", b, 35_000 * USD)
    m.d.ok(CloseSession(session="S1"))                # the tender is open: it runs on
    assert m.state.lots["T1"].status == "open"
    assert m.refused("T1", b, 30_000 * USD).code == "session_closed"   # no new offers
    closed = one(m.tick(T0 + DAY), LotClosed)
    assert (closed.outcome, closed.decision_by) == ("choosing", T0 + 2 * DAY)
    ev = m.d.send(ChooseOffer(serial="T1", paddle=a), actor="seeker-broker", role="broker",
                  ts=T0 + 2 * DAY - 1)               # the last nanosecond of the window
    award = one(ev, LotAwarded)
    assert (award.paddle, award.hammer, award.how) == (a, 39_000 * USD, "auction")
    assert m.state.exposure[("S1", owner)].total == 39_000 * USD * 105 // 100


def test_a_tender_choosing_in_a_closed_session_passes_at_its_decision_time():
    from exchange.commands import CloseSession
    m, owner, (a, _, _) = tender(choice="buyer")
    m.bid("T1", a, 39_000 * USD)
    m.tick(T0 + DAY)                                  # choosing
    m.d.ok(CloseSession(session="S1"))
    assert m.state.lots["T1"].status == "choosing"    # not stranded: its timer runs
    ev = m.d.send(ChooseOffer(serial="T1", paddle=a), actor="seeker-broker", role="broker",
                  ts=T0 + 2 * DAY)                    # too late: the window ended first
    assert one(ev, LotPassed).reason == "no_choice"
    assert one(ev, CommandRejected).code == "bad_status"
    assert m.state.exposure[("S1", owner)].total == 0


def test_scheduling_needs_the_buyer_approved_and_within_credit():
    m, owner, _ = tender(owner_limit=10_000 * USD, schedule=False)
    m.d.ok(VetLot(serial="T1", score=1, approved=True))
    assert m.unchanged(ScheduleLot(serial="T1"), actor="op", role="operator").code == \
        "over_credit_limit"
