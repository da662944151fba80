"""The catalogue and lot lifecycle: vetting, scheduling, Ask, negotiation after a
pass, relisting, withdrawal, book lots, settlement hooks, fees and increments."""

import pytest

from exchange import fees, increments, lots
from exchange.commands import (CloseSession, CreateSession, AcceptCounter, AnswerOffer, BuyAtAsk, CreateLot, LowerReserve,
                               MakeOffer, PlaceBid, RecordNegotiatedSale, RelistLot, ScheduleLot,
                               VetLot, WithdrawBid, WithdrawLot, WithdrawOffer)
from exchange.errors import Reject
from exchange.events import (CommandRejected, LotAwarded, LotClosed, LotCreated, LotOpened,
                             LotPassed, LotRelisted, LotScheduled, LotSettled, LotVetted,
                             LotWithdrawn, NegotiationEnded, OfferAnswered, OfferMade,
                             OfferWithdrawn, ReserveLowered, OPERATORS)
from tests.unit.auctionkit import DAY, HOUR, T0, USD, Market, of, one

OP = dict(actor="op", role="operator")


def market():
    m = Market()
    seller = m.seller()
    a, b, c = m.bidder("Alice"), m.bidder("Bob"), m.bidder("Carol")
    return m, seller, a, b, c


# --------------------------------------------------------------------------- lifecycle

def test_draft_vet_schedule_open_and_the_catalogue_entry():
    m, seller, a, *_ = market()
    ev = m.lot("L1", seller=seller, reserve=5_000 * USD, schedule=False)
    created = one(ev, LotCreated)
    assert created.to == ("seller-broker", OPERATORS) and created.reserve == 5_000 * USD
    assert m.state.lots["L1"].status == "draft"
    assert m.unchanged(ScheduleLot(serial="L1"), **OP).code == "bad_status"
    vetted = one(m.d.ok(VetLot(serial="L1", score=87, approved=True, note="strong family")),
                 LotVetted)
    assert vetted.to == ("seller-broker", OPERATORS) and vetted.score == 87
    ev = m.d.ok(ScheduleLot(serial="L1", closes_at=T0 + 2 * DAY))
    scheduled = one(ev, LotScheduled)
    assert scheduled.to == () and scheduled.terms.closes_at == T0 + 2 * DAY
    assert scheduled.terms.hard_end == T0 + 2 * DAY
    assert scheduled.terms.patents[0].family_id == "F1"
    assert "reserve" not in type(scheduled).__struct_fields__
    lot = m.state.lots["L1"]
    assert (lot.serial, lot.session, lot.seller, lot.currency, lot.mechanism, lot.status) == (
        "L1", "S1", seller, "USD", "english", "scheduled")
    assert m.refused("L1", a, 1_000 * USD).code == "lot_not_open"
    assert one(m.tick(T0 + HOUR), LotOpened).closes_at == T0 + 2 * DAY
    assert m.state.lots["L1"].status == "open"
    assert "L1" in m.state.sessions["S1"].lots


def test_a_rejected_lot_never_opens():
    m, seller, a, *_ = market()
    m.lot("L1", seller=seller, schedule=False)
    m.d.ok(VetLot(serial="L1", score=12, approved=False))
    assert m.unchanged(ScheduleLot(serial="L1"), **OP).code == "lot_rejected"
    assert m.unchanged(VetLot(serial="L1", score=99, approved=True), **OP).code == "bad_status"
    m.tick(T0 + 2 * HOUR)
    assert m.state.lots["L1"].status == "rejected"
    assert m.refused("L1", a, 1_000 * USD).code == "unknown_lot"   # never published


def test_schedule_in_the_past_opens_at_once():
    m, seller, a, *_ = market()
    m.tick(T0 + 2 * HOUR)
    ev = m.lot("L1", seller=seller)                   # opens_at T0+1h is already past
    assert one(ev, LotOpened).to == ()
    m.bid("L1", a, 1_000 * USD)


def test_a_scheduled_lot_not_yet_open_is_rescheduled_or_opened_now():
    m, seller, a, *_ = market()
    m.lot("L1", seller=seller)                          # opens T0+1h, closes T0+1d
    ev = m.d.ok(ScheduleLot(serial="L1", opens_at=T0 + 3 * HOUR), **OP)
    assert one(ev, LotScheduled).terms.opens_at == T0 + 3 * HOUR
    assert not of(m.tick(T0 + 2 * HOUR), LotOpened)     # the first opening no longer holds
    assert one(m.tick(T0 + 3 * HOUR), LotOpened).opens_at == T0 + 3 * HOUR
    assert m.unchanged(ScheduleLot(serial="L1", opens_at=T0 + 5 * HOUR), **OP).code == \
        "bad_status"                                    # open: too late to reschedule
    m.lot("L2", seller=seller, opens_at=T0 + 9 * HOUR)
    opened = m.d.ok(ScheduleLot(serial="L2", opens_at=m.d.ts), **OP)   # open it now
    assert one(opened, LotOpened).opens_at == m.d.ts
    assert not of(m.tick(T0 + 9 * HOUR), LotOpened)     # and once only
    m.bid("L2", a, 1_000 * USD)


def test_schedule_must_fall_within_the_session_dates():
    m = Market(session="S0")
    m.d.ok(CreateSession(session="S2", name="One day", starts_at=T0, ends_at=T0 + DAY))
    seller = m.party("Seller", "seller-broker", 0)
    m.d.ok(CreateLot(serial="L1", session="S2", seller=seller,
                     terms=m.terms(closes_at=T0 + 2 * DAY)), **OP)
    m.d.ok(VetLot(serial="L1", score=80, approved=True))
    assert m.unchanged(ScheduleLot(serial="L1"), **OP).code == "outside_session"
    m.d.ok(ScheduleLot(serial="L1", closes_at=T0 + DAY - HOUR))
    assert m.state.lots["L1"].status == "scheduled"


def test_no_bids_once_the_session_is_closed():
    m, seller, a, *_ = market()
    m.lot("L1", seller=seller)
    m.tick(T0 + 2 * HOUR)
    m.bid("L1", a, 1_000 * USD)
    m.d.ok(CloseSession(session="S1"))
    assert m.refused("L1", a, 2_000 * USD).code == "session_closed"
    m.tick(T0 + DAY)
    assert m.state.lots["L1"].status == "sold"   # the lot still closes to its leader


def test_create_lot_refusals_change_nothing():
    m, seller, *_ = market()
    m.lot("L1", seller=seller)
    good = CreateLot(serial="L2", session="S1", seller=seller, terms=m.terms())
    assert m.unchanged(CreateLot(serial="L1", session="S1", seller=seller, terms=m.terms()),
                       actor="seller-broker").code == "lot_exists"
    assert m.unchanged(good, actor="another-broker").code == "not_your_party"
    assert m.unchanged(CreateLot(serial="L2", session="S9", seller=seller, terms=m.terms()),
                       actor="seller-broker").code == "unknown_session"
    assert m.unchanged(CreateLot(serial="L2", session="S1", seller=seller,
                                 terms=m.terms(mechanism="auction")),
                       actor="seller-broker").code == "bad_field"
    assert m.unchanged(CreateLot(serial="L2", session="S1", seller=seller, terms=m.terms(),
                                 reserve=-1), actor="seller-broker").code == "negative"
    assert m.unchanged(good, actor="v", role="viewer").code == "not_permitted"
    m.d.ok(good, actor="seller-broker", role="broker")


@pytest.mark.parametrize("make", [
    lambda a: PlaceBid(serial="L1", paddle=a, amount=0),
    lambda a: PlaceBid(serial="L1", paddle=a, amount=10**15 + 1),
    lambda a: PlaceBid(serial="L1", paddle=a, amount=1_000 * USD, currency="CNY"),
    lambda a: PlaceBid(serial="L1", paddle=a + 50, amount=1_000 * USD),
    lambda a: PlaceBid(serial="ZZ", paddle=a, amount=1_000 * USD),
    lambda a: PlaceBid(serial="L1", paddle=a, amount=1_050 * USD),
    lambda a: WithdrawBid(serial="L1", paddle=a),
    lambda a: BuyAtAsk(serial="L1", paddle=a),
    lambda a: MakeOffer(serial="L1", paddle=a, amount=100),
    lambda a: RelistLot(serial="L1", opens_at=T0, closes_at=T0 + DAY),
])
def test_refused_bids_change_nothing(make):
    m, seller, a, b, _ = market()
    m.lot("L1", seller=seller)
    m.tick(T0 + HOUR)
    m.bid("L1", b, 1_000 * USD)
    rejection = m.unchanged(make(a), actor="broker-Alice")
    assert rejection.code and rejection.text and rejection.to == ("broker-Alice",)


# --------------------------------------------------------------------------- Ask

def test_sale_at_the_ask_before_the_auction():
    m, seller, a, b, _ = market()
    m.lot("L1", seller=seller, ask=8_000 * USD, buyer_premium_bp=1_000,
          seller_commission_bp=1_500)
    ev = m.send(BuyAtAsk(serial="L1", paddle=a), a)
    assert one(ev, LotClosed).outcome == "sold"
    award = one(ev, LotAwarded)
    assert (award.how, award.hammer, award.total, award.net) == (
        "ask", 8_000 * USD, 8_800 * USD, 6_800 * USD)
    assert m.state.lots["L1"].status == "sold"
    assert not of(m.tick(T0 + HOUR), LotOpened)       # a sold lot never opens
    assert one(m.send(BuyAtAsk(serial="L1", paddle=b), b), CommandRejected).code == "lot_closed"


def test_no_ask_no_buy():
    m, seller, a, *_ = market()
    m.lot("L1", seller=seller)
    assert one(m.send(BuyAtAsk(serial="L1", paddle=a), a), CommandRejected).code == "no_ask"


# --------------------------------------------------------------------------- negotiation

def passed_lot(m, seller, a, window=2 * DAY, reserve=5_000 * USD):
    m.lot("L1", seller=seller, reserve=reserve, negotiation_window=window,
          buyer_premium_bp=1_000)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 3_000 * USD)
    ev = m.tick(T0 + DAY)
    assert one(ev, LotPassed).negotiation_ends == T0 + DAY + window
    return ev


def test_negotiation_offer_counter_accept():
    m, seller, a, b, _ = market()
    passed_lot(m, seller, a)
    ev = m.send(MakeOffer(serial="L1", paddle=a, amount=4_000 * USD), a)
    made = one(ev, OfferMade)
    assert made.to == ("broker-Alice", "seller-broker", OPERATORS)
    assert m.exposure(a) == 4_400 * USD
    answer = AnswerOffer(serial="L1", paddle=a, action="counter", amount=4_500 * USD)
    assert m.unchanged(answer, actor="broker-Alice").code == "not_your_party"
    assert m.unchanged(AcceptCounter(serial="L1", paddle=a), actor="broker-Alice").code == \
        "no_counter"
    ev = m.d.ok(answer, actor="seller-broker", role="broker")
    assert one(ev, OfferAnswered).amount == 4_500 * USD
    ev = m.send(AcceptCounter(serial="L1", paddle=a), a)
    award = one(ev, LotAwarded)
    assert (award.how, award.paddle, award.hammer, award.total) == (
        "negotiated", a, 4_500 * USD, 4_950 * USD)
    assert m.exposure(a) == 4_950 * USD
    assert m.state.lots["L1"].status == "sold"


def test_offer_at_or_above_the_reserve_sells_at_once():
    m, seller, a, b, _ = market()
    passed_lot(m, seller, a)
    award = one(m.send(MakeOffer(serial="L1", paddle=b, amount=5_000 * USD), b), LotAwarded)
    assert (award.paddle, award.hammer, award.how) == (b, 5_000 * USD, "negotiated")


def test_lowering_the_reserve_sells_to_the_best_offer_above_it():
    m, seller, a, b, c = market()
    passed_lot(m, seller, a)
    m.send(MakeOffer(serial="L1", paddle=b, amount=3_500 * USD), b)
    m.send(MakeOffer(serial="L1", paddle=c, amount=4_200 * USD), c)
    assert m.unchanged(LowerReserve(serial="L1", reserve=6_000 * USD),
                       actor="seller-broker").code == "not_lower"
    ev = m.d.ok(LowerReserve(serial="L1", reserve=4_000 * USD), actor="seller-broker",
                role="broker")
    assert one(ev, ReserveLowered).to == ("seller-broker", OPERATORS)
    award = one(ev, LotAwarded)
    assert (award.paddle, award.hammer) == (c, 4_200 * USD)
    assert m.exposure(b) == 0 and m.exposure(c) == 4_620 * USD
    gone = one(ev, OfferWithdrawn)                     # b's broker hears its offer is done
    assert (gone.paddle, gone.reason, gone.to) == (b, "superseded",
                                                   ("broker-Bob", "seller-broker", OPERATORS))


def test_decline_and_withdraw_release_credit_and_the_window_expires():
    m, seller, a, b, _ = market()
    passed_lot(m, seller, a)
    m.send(MakeOffer(serial="L1", paddle=a, amount=4_000 * USD), a)
    m.send(MakeOffer(serial="L1", paddle=b, amount=3_000 * USD), b)
    ev = m.d.ok(AnswerOffer(serial="L1", paddle=a, action="decline"), actor="seller-broker",
                role="broker")
    assert one(ev, OfferWithdrawn).reason == "declined" and m.exposure(a) == 0
    m.send(MakeOffer(serial="L1", paddle=a, amount=3_200 * USD), a)
    ev = m.send(WithdrawOffer(serial="L1", paddle=a), a)
    assert one(ev, OfferWithdrawn).reason == "withdrawn" and m.exposure(a) == 0
    ev = m.tick(T0 + 3 * DAY)
    assert one(ev, OfferWithdrawn).reason == "expired" and one(ev, NegotiationEnded).to == ()
    assert m.exposure(b) == 0
    r = m.send(MakeOffer(serial="L1", paddle=a, amount=4_000 * USD), a)
    assert one(r, CommandRejected).code == "not_in_negotiation"
    # the operator may still record a sale agreed off the floor
    award = one(m.d.ok(RecordNegotiatedSale(serial="L1", paddle=b, amount=3_900 * USD)),
                LotAwarded)
    assert (award.how, award.paddle, award.hammer) == ("negotiated", b, 3_900 * USD)


def test_relist_a_passed_lot_with_a_lower_reserve():
    m, seller, a, b, _ = market()
    passed_lot(m, seller, a)
    m.send(MakeOffer(serial="L1", paddle=b, amount=3_000 * USD), b)
    ev = m.d.ok(RelistLot(serial="L1", opens_at=T0 + 3 * DAY, closes_at=T0 + 4 * DAY,
                          reserve=2_000 * USD))
    assert one(ev, OfferWithdrawn).reason == "superseded" and m.exposure(b) == 0
    assert one(ev, LotRelisted).opens_at == T0 + 3 * DAY
    assert one(ev, LotScheduled).terms.opens_at == T0 + 3 * DAY
    lot = m.state.lots["L1"]
    assert (lot.status, lot.bids, lot.leader, lot.reserve) == ("scheduled", 0, 0, 2_000 * USD)
    m.tick(T0 + 3 * DAY)
    m.bid("L1", b, 2_500 * USD)
    award = one(m.tick(T0 + 4 * DAY), LotAwarded)
    assert (award.paddle, award.hammer) == (b, 2_000 * USD)


# --------------------------------------------------------------------------- withdrawal

def test_withdrawal_rules():
    m, seller, a, *_ = market()
    m.lot("D1", seller=seller, schedule=False)
    ev = m.d.ok(WithdrawLot(serial="D1", reason="changed mind"), actor="seller-broker",
                role="broker")
    assert one(ev, LotWithdrawn).to == ("seller-broker", OPERATORS)   # drafts were never public
    m.lot("L1", seller=seller)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 1_500 * USD)
    assert m.unchanged(WithdrawLot(serial="L1"), actor="seller-broker").code == "not_permitted"
    ev = m.d.ok(WithdrawLot(serial="L1", reason="title dispute"))
    assert one(ev, LotWithdrawn).to == () and m.exposure(a) == 0
    assert m.refused("L1", a, 2_000 * USD).code == "lot_closed"
    assert m.unchanged(WithdrawLot(serial="L1"), **OP).code == "bad_status"
    assert not of(m.tick(T0 + DAY), LotAwarded)


# --------------------------------------------------------------------------- book lots

def test_bid_ask_lot_holds_catalogue_and_lifecycle_only():
    m, seller, a, *_ = market()
    m.lot("B1", seller=seller, mechanism="bid_ask")
    m.tick(T0 + HOUR)
    lot = m.state.lots["B1"]
    assert (lot.mechanism, lot.status) == ("bid_ask", "open")
    assert m.refused("B1", a, 1_000 * USD).code == "wrong_mechanism"
    sale = lots.award_to_bidder(m.state, _ctx(m), lot, paddle=a, party=m.parties[a],
                                hammer=1_200 * USD, how="book")
    assert sale.how == "book" and lot.status == "sold"


def test_a_bid_ask_lot_unsold_at_its_close_closes_then_passes():
    m, seller, *_ = market()
    m.lot("B1", seller=seller, mechanism="bid_ask")
    m.tick(T0 + HOUR)
    ev = m.tick(T0 + DAY)
    public = [type(e).__name__ for e in ev if e.to == () and type(e) in (LotClosed, LotPassed)]
    assert public == ["LotClosed", "LotPassed"]
    assert (one(ev, LotClosed).outcome, one(ev, LotPassed).reason) == ("passed", "expired")


def _ctx(m):
    from exchange.commands import Envelope, Tick
    from exchange.engine import Ctx
    return Ctx(Envelope(seq=m.d.seq + 1, ts=m.d.ts, actor="sys", role="system", cmd=Tick(), client_id=""), [])


# --------------------------------------------------------------------------- settlement hooks

def test_settle_default_and_reaward_to_the_runner_up():
    m, seller, a, b, c = market()
    m.lot("L1", seller=seller, buyer_premium_bp=1_000)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_000 * USD)
    m.bid("L1", c, 1_400 * USD)
    m.bid("L1", b, 1_700 * USD)
    m.tick(T0 + DAY)
    state = m.state
    # The hooks are called by hand here, behind settlement's back (whose own
    # invariant would object), so the lots invariant is checked directly.
    m.d.engine.check_invariants = False
    ranked = lots.runners_up(state, "L1")
    assert [(bid.paddle, bid.amount) for bid in ranked] == [(b, 1_700 * USD), (c, 1_400 * USD)]
    ctx = _ctx(m)
    lots.unsell(state, ctx, "L1")
    assert state.lots["L1"].status == "passed" and m.exposure(a) == 0
    lots._lots_check(state)                           # invariants hold after a default
    sale = lots.reaward(state, ctx, "L1", b, m.parties[b], 1_700 * USD)
    assert (sale.paddle, sale.hammer, sale.how) == (b, 1_700 * USD, "reaward")
    assert m.exposure(b) == 1_870 * USD
    lots.mark_settled(state, ctx, "L1")
    assert state.lots["L1"].status == "settled" and m.exposure(b) == 0
    assert one(ctx.out, LotSettled).serial == "L1"
    with pytest.raises(Reject):
        lots.mark_settled(state, ctx, "L1")
    lots._lots_check(state)                           # and after the settlement


# --------------------------------------------------------------------------- fees and increments

def test_fee_rounding_is_half_up_to_the_minor_unit():
    assert fees.fee(1_005, 1_000) == 101             # 100.5 -> 101
    assert fees.fee(1_004, 1_000) == 100             # 100.4 -> 100
    assert fees.fee(333, 1_500) == 50                # 49.95 -> 50
    f = fees.compute(1_005, 1_000, 1_500)
    assert (f.premium, f.total, f.commission, f.net) == (101, 1_106, 151, 854)
    assert f.total - f.net == f.premium + f.commission


def test_increment_tables():
    ebay = increments.Ladder(increments.resolve("ebay2003"))
    assert [ebay.at(p) for p in (1, 99, 100, 499, 500, 2_499, 2_500, 9_999, 10_000, 24_999,
                                 25_000, 50_000, 100_000, 250_000, 500_000, 10**9)] == [
        5, 5, 25, 25, 50, 50, 100, 100, 250, 250, 500, 1_000, 2_500, 5_000, 10_000, 10_000]
    assert increments.Ladder(increments.resolve("otba")).at(123_456_789) == 3_000_000
    with pytest.raises(Reject):
        increments.resolve("custom", ((0, 10), (0, 20)))
    with pytest.raises(Reject):
        increments.resolve("custom", ((0, 0),))
    import pickle
    assert pickle.loads(pickle.dumps(ebay)).at(30_000) == 500
