"""Default and re-award: overdue buyers, frozen credit, the runner-up's offer
in English and sealed auctions, declines, expiry, exhaustion and relisting."""

from __future__ import annotations

import pytest

from exchange.commands import (AnswerOffer, AnswerReaward, BuyAtAsk, ChooseOffer, CreateInstrument,
                               DeclareDefault, ExtendDueDate, IssueUnits, LiftFreeze, MakeOffer,
                               PlaceBid, PlaceOrder,
                               RecordAgreementTransfer,
                               RecordNegotiatedSale, RelistLot,
                               SetSettlementRules, WithdrawLot)
from exchange.events import (OPERATORS, BuyerDefaulted, CommandRejected, CreditChanged,
                             FreezeLifted, FundsRefunded, LotAwarded, LotPassed, OrderCancelled,
                             PartyFrozen, ReawardEnded,
                             ReawardExhausted, ReawardOffered, SettlementCancelled,
                             SettlementOpened)
from tests.unit.auctionkit import DAY, HOUR, T0, USD, Market, of, one
from tests.unit.test_settlement import (FEES, OP, SELLER_BROKER, Sale, agreement_sale, book_sale,
                                        exposure, reverse_award)


def english(reserve: int = 0, log: bool = False,
            **fields) -> tuple[Market, Sale, int, int, int, int]:
    """English lot L1: D 1,200 < C 1,500 < B 2,000 < A 3,000; A wins at 2,100."""
    m = Market(log=log)
    seller = m.seller()
    a, b, c, d = (m.bidder(name) for name in ("Alice", "Bob", "Carol", "Dave"))
    m.lot("L1", seller=seller, reserve=reserve, **FEES, **fields)
    m.tick(T0 + HOUR)
    for paddle, amount in ((d, 1_200), (c, 1_500), (b, 2_000), (a, 3_000)):
        m.bid("L1", paddle, amount * USD)
    opened = one(m.tick(T0 + DAY), SettlementOpened)
    sale = Sale(m, opened, m.brokers[a], SELLER_BROKER, m.parties[a], seller)
    return m, sale, a, b, c, d


def overdue(sale: Sale) -> None:
    sale.m.tick(sale.opened.due_at)
    assert sale.s.overdue


def answer(m: Market, paddle: int, accept: bool, serial: str = "L1") -> list:
    return m.send(AnswerReaward(serial=serial, paddle=paddle, accept=accept), paddle)


def test_english_default_then_reaward_to_the_next_highest_at_its_last_price():
    m, sale, a, b, c, d = english()
    sale.pay(500 * USD)                               # a part payment, later refunded
    assert sale.refused(DeclareDefault(settlement=sale.sid)) == "not_overdue"
    overdue(sale)
    events = m.d.ok(DeclareDefault(settlement=sale.sid, reason="unpaid"), **OP)
    defaulted = one(events, BuyerDefaulted)
    assert (defaulted.paddle, defaulted.next, defaulted.reason) == (a, "reaward", "unpaid")
    assert one(events, FundsRefunded).amount == 500 * USD
    cancelled = one(events, SettlementCancelled)
    assert (cancelled.reason, cancelled.refunded) == ("default", 500 * USD)
    frozen = one(events, PartyFrozen)
    assert frozen.party == sale.buyer and frozen.to == (m.brokers[a], OPERATORS)
    assert m.state.parties[sale.buyer].frozen
    assert exposure(m, sale.buyer) == 0               # the defaulter's commitment is released
    offer = one(events, ReawardOffered)
    assert (offer.paddle, offer.price) == (b, 2_000 * USD)   # B's last bid (its maximum)
    assert offer.to == (m.brokers[b], SELLER_BROKER, OPERATORS)
    assert offer.expires_at == m.d.ts + 2 * DAY
    assert m.state.lots["L1"].status == "passed"
    # the public saw the lot sold: it hears it passed again, and nothing of why or whom
    public = [event for event in events if not event.to]
    assert public == [LotPassed(serial="L1", session="S1", mechanism="english",
                                reason="sale_cancelled", bids=4, negotiation_ends=0)]

    events = answer(m, b, accept=True)
    award = one(events, LotAwarded)
    assert (award.how, award.paddle, award.hammer, award.to) == ("reaward", b, 2_000 * USD, ())
    again = one(events, SettlementOpened)
    assert (again.how, again.price, again.buyer_paddle) == ("reaward", 2_000 * USD, b)
    assert again.settlement == sale.sid + 1
    assert exposure(m, m.parties[b]) == 2_200 * USD
    resale = Sale(m, again, m.brokers[b], SELLER_BROKER, m.parties[b], sale.seller)
    resale.pay()
    resale.deliver()
    resale.confirm()
    resale.release()
    assert m.state.lots["L1"].status == "settled" and exposure(m, m.parties[b]) == 0


def test_a_frozen_party_cannot_bid_until_the_freeze_is_lifted():
    m, sale, a, *_ = english()
    overdue(sale)
    m.d.ok(DeclareDefault(settlement=sale.sid, next="relist"), **OP)
    m.lot("L2", seller=sale.seller, opens_at=m.d.ts, closes_at=m.d.ts + DAY)
    refused = one(m.send(PlaceBid(serial="L2", paddle=a, amount=2_000 * USD), a), CommandRejected)
    assert refused.code == "party_frozen"
    assert m.unchanged(LiftFreeze(party=sale.buyer), actor=m.brokers[a]).code == "not_permitted"
    lifted = one(m.d.ok(LiftFreeze(party=sale.buyer, reason="paid the penalty"), **OP), FreezeLifted)
    assert lifted.to == (m.brokers[a], OPERATORS)
    m.bid("L2", a, 2_000 * USD)
    assert m.unchanged(LiftFreeze(party=sale.buyer), actor="op", role="operator").code == "not_frozen"


@pytest.mark.parametrize("choice", ["lowest", "buyer"])
def test_a_frozen_party_neither_sells_through_a_tender_nor_buys_through_its_own(choice):
    m, sale, a, b, c, d = english()
    fields = dict(mechanism="reverse", starting_bid=500 * USD, reverse_choice=choice,
                  choice_window=DAY if choice == "buyer" else 0,
                  opens_at=m.d.ts, closes_at=sale.opened.due_at - HOUR)
    later = {**fields, "closes_at": sale.opened.due_at + DAY}
    m.lot("T1", seller=sale.buyer, broker=m.brokers[a], **later)       # Alice buys through T1
    m.lot("T2", seller=m.parties[d], broker=m.brokers[d], **fields)   # Dave buys; Alice offers
    m.bid("T1", b, 400 * USD)
    m.bid("T2", a, 300 * USD)
    m.bid("T2", c, 350 * USD)
    m.tick(fields["closes_at"])
    if choice == "lowest":                     # T2 sold to Dave from Alice before the freeze
        m.lot("T3", seller=m.parties[d], broker=m.brokers[d], **later)
        m.bid("T3", a, 300 * USD)
        m.bid("T3", c, 350 * USD)
    else:
        assert m.state.lots["T2"].status == "choosing"
    tender = "T3" if choice == "lowest" else "T2"
    overdue(sale)
    events = m.d.ok(DeclareDefault(settlement=sale.sid, next="relist"), **OP)
    assert m.state.lots["T1"].status == "withdrawn"            # Alice may buy nothing now
    assert ("lot", "T1") not in m.state.exposure[("S1", sale.buyer)].items
    voided = [e for e in events if type(e).__name__ == "BidVoided" and e.serial == tender]
    assert [(v.paddle, v.to) for v in voided] == [(a, (m.brokers[a], OPERATORS))]
    if choice == "buyer":
        refused = m.send(ChooseOffer(serial="T2", paddle=a), d)
        assert one(refused, CommandRejected).code == "no_live_bid"
    m.tick(m.d.ts + 3 * DAY)
    awarded = [s for s in m.state.settlements.values() if s.serial == tender]
    assert all(s.seller != sale.buyer for s in awarded)
    if choice == "lowest":
        assert [s.seller for s in awarded] == [m.parties[c]]         # the next offer wins


def test_declines_and_silence_pass_the_offer_down_the_list_until_none_is_left():
    m, sale, a, b, c, d = english()
    m.d.ok(SetSettlementRules(session="S1", lot="L1", payment_term=DAY, reaward_window=HOUR,
                              publicity_period=DAY), **OP)
    overdue(sale)
    m.d.ok(DeclareDefault(settlement=sale.sid), **OP)
    assert m.unchanged(AnswerReaward(serial="L1", paddle=c, accept=True),
                       actor=m.brokers[c]).code == "no_reaward_offer"
    assert m.unchanged(AnswerReaward(serial="L1", paddle=b, accept=True),
                       actor=m.brokers[c]).code == "not_your_paddle"
    events = answer(m, b, accept=False)
    assert one(events, ReawardEnded).reason == "declined"
    offer = one(events, ReawardOffered)
    assert (offer.paddle, offer.price) == (c, 1_500 * USD)
    assert offer.expires_at == m.d.ts + HOUR          # the lot's own window
    events = m.tick(offer.expires_at)                 # C stays silent
    assert one(events, ReawardEnded).reason == "expired"
    offer = one(events, ReawardOffered)
    assert (offer.paddle, offer.price) == (d, 1_200 * USD)
    events = answer(m, d, accept=False)
    one(events, ReawardExhausted)
    assert not m.state.extra["settlement"].offers
    assert m.state.lots["L1"].status == "passed"
    # the operator relists the lot
    events = m.d.ok(RelistLot(serial="L1", opens_at=m.d.ts, closes_at=m.d.ts + DAY), **OP)
    assert m.state.lots["L1"].status == "open"
    assert "L1" not in m.state.extra["settlement"].passed_over


def test_runners_up_below_the_reserve_or_frozen_are_skipped():
    m, sale, a, b, c, d = english(reserve=1_400 * USD)
    # B defaults elsewhere first: its party is frozen
    m.lot("L2", seller=sale.seller, ask=1_000 * USD, opens_at=m.d.ts, closes_at=m.d.ts + DAY)
    other = one(m.send(BuyAtAsk(serial="L2", paddle=b), b), SettlementOpened)
    m.tick(other.due_at)
    m.d.ok(DeclareDefault(settlement=other.settlement, next="relist"), **OP)
    m.tick(sale.opened.due_at)
    events = m.d.ok(DeclareDefault(settlement=sale.sid), **OP)
    assert one(events, ReawardOffered).paddle == c    # B frozen, D (1,200) below the reserve
    events = answer(m, c, accept=False)
    one(events, ReawardExhausted)


def test_reaward_accept_checks_the_runner_ups_credit():
    m = Market()
    seller = m.seller()
    a = m.bidder("Alice")
    b = m.bidder("Bob", limit=2_500 * USD)
    m.lot("L1", seller=seller, **FEES)
    m.lot("L2", seller=seller, ask=1_000 * USD, opens_at=T0 + DAY, closes_at=T0 + 3 * DAY)
    m.tick(T0 + HOUR)
    m.bid("L1", b, 2_000 * USD)
    m.bid("L1", a, 3_000 * USD)
    opened = one(m.tick(T0 + DAY), SettlementOpened)
    one(m.send(BuyAtAsk(serial="L2", paddle=b), b), SettlementOpened)   # B commits 1,000
    m.tick(opened.due_at)
    m.d.ok(DeclareDefault(settlement=opened.settlement), **OP)
    refused = m.unchanged(AnswerReaward(serial="L1", paddle=b, accept=True), actor=m.brokers[b])
    assert refused.code == "over_credit_limit"        # 2,200 due + 1,000 > 2,500
    assert m.state.extra["settlement"].offers["L1"].paddle == b   # the offer stands


@pytest.mark.parametrize("mechanism", ["sealed_first", "sealed_second"])
def test_sealed_default_then_reaward_to_the_next_revealed_bid(mechanism):
    m = Market()
    seller = m.seller()
    a, b, c = m.bidder("Alice"), m.bidder("Bob"), m.bidder("Carol")
    m.lot("L1", seller=seller, mechanism=mechanism, **FEES)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 3_000 * USD)
    m.bid("L1", b, 2_500 * USD)
    m.bid("L1", c, 1_200 * USD)
    opened = one(m.tick(T0 + DAY), SettlementOpened)
    assert opened.price == (3_000 if mechanism == "sealed_first" else 2_500) * USD
    m.tick(opened.due_at)
    events = m.d.ok(DeclareDefault(settlement=opened.settlement), **OP)
    offer = one(events, ReawardOffered)
    assert (offer.paddle, offer.price) == (b, 2_500 * USD)   # B's own sealed bid
    events = answer(m, b, accept=True)
    assert one(events, LotAwarded).hammer == 2_500 * USD
    assert one(events, SettlementOpened).total == 2_750 * USD


def test_a_reawarded_buyer_may_default_too_and_the_offer_moves_on():
    m, sale, a, b, c, d = english()
    overdue(sale)
    m.d.ok(DeclareDefault(settlement=sale.sid), **OP)
    again = one(answer(m, b, accept=True), SettlementOpened)
    m.tick(again.due_at)
    events = m.d.ok(DeclareDefault(settlement=again.settlement), **OP)
    assert one(events, ReawardOffered).paddle == c   # neither A nor B again


def test_an_offer_is_superseded_by_a_relisting_a_negotiated_sale_or_a_withdrawal():
    for make in ("relist", "negotiated", "withdraw"):
        m, sale, a, b, c, d = english()
        overdue(sale)
        m.d.ok(DeclareDefault(settlement=sale.sid), **OP)
        if make == "relist":
            events = m.d.ok(RelistLot(serial="L1", opens_at=m.d.ts, closes_at=m.d.ts + DAY), **OP)
        elif make == "negotiated":
            events = m.d.ok(RecordNegotiatedSale(serial="L1", paddle=d, amount=2_500 * USD), **OP)
            assert one(events, SettlementOpened).how == "negotiated"
        else:
            events = m.d.ok(WithdrawLot(serial="L1", reason="seller withdrew"), **OP)
        ended = one(events, ReawardEnded)
        assert (ended.paddle, ended.reason) == (b, "superseded"), make
        assert one(answer(m, b, accept=True), CommandRejected).code == "no_reaward_offer"


def test_default_refusals():
    m, sale, a, b, c, d = english()
    assert sale.refused(DeclareDefault(settlement=99)) == "unknown_settlement"
    assert sale.refused(DeclareDefault(settlement=sale.sid), actor=m.brokers[b],
                        role="broker") == "not_permitted"
    assert sale.refused(DeclareDefault(settlement=sale.sid)) == "not_overdue"
    sale.pay()
    m.tick(sale.opened.due_at)
    assert sale.refused(DeclareDefault(settlement=sale.sid)) == "already_paid"
    for make in (reverse_award, book_sale, agreement_sale):
        other = make()
        other.m.tick(other.opened.due_at)
        assert other.refused(DeclareDefault(settlement=other.sid)) == "not_reawardable", make
        events = other.m.d.ok(DeclareDefault(settlement=other.sid, next="relist"), **OP)
        one(events, SettlementCancelled)
        assert not of(events, ReawardOffered)
        if make is not agreement_sale:
            assert other.m.state.lots[other.opened.serial].status == "passed"
            assert exposure(other.m, other.buyer) == 0


def test_extend_the_due_date():
    m, sale, *_ = english()
    due = sale.opened.due_at
    assert sale.refused(ExtendDueDate(settlement=sale.sid, due_at=due)) == "not_later"
    assert sale.refused(ExtendDueDate(settlement=sale.sid, due_at=-1)) == "out_of_range"
    m.tick(due + DAY)
    assert sale.s.overdue
    assert sale.refused(ExtendDueDate(settlement=sale.sid, due_at=due + HOUR)) == "not_later"
    m.d.ok(ExtendDueDate(settlement=sale.sid, due_at=due + 3 * DAY), **OP)
    assert not sale.s.overdue
    assert sale.refused(DeclareDefault(settlement=sale.sid)) == "not_overdue"
    m.tick(due + 3 * DAY)
    assert sale.s.overdue
    sale.pay()
    assert sale.refused(ExtendDueDate(settlement=sale.sid, due_at=due + 9 * DAY)) == "already_paid"


def test_a_frozen_party_may_sell_by_agreement_but_not_buy():
    m, sale, a, b, *_ = english()
    overdue(sale)
    m.d.ok(DeclareDefault(settlement=sale.sid, next="relist"), **OP)
    frozen, other = sale.buyer, m.parties[b]
    base = dict(session="S1", title="Transfer", price=1_000 * USD)
    refused = m.unchanged(RecordAgreementTransfer(serial="AT-1", seller=other, buyer=frozen, **base),
                          actor="op", role="operator")
    assert refused.code == "party_frozen"
    m.d.ok(RecordAgreementTransfer(serial="AT-2", seller=frozen, buyer=other, **base), **OP)


def test_a_defaulter_s_resting_orders_are_cancelled_in_every_book():
    m, sale, a, b, c, d = english()
    m.d.ok(CreateInstrument(session="S1", instrument="U"), **OP)
    for paddle in (a, c):
        m.d.ok(IssueUnits(session="S1", instrument="U", paddle=paddle, qty=100), **OP)

    def order(paddle: int, oid: int, side: str, price: int) -> PlaceOrder:
        return PlaceOrder(session="S1", instrument="U", paddle=paddle, order=oid, side=side,
                          qty=5, price=price * USD)
    for paddle, oid, side, price in ((a, 1, "buy", 10), (a, 2, "sell", 20), (b, 1, "buy", 9)):
        assert not of(m.send(order(paddle, oid, side, price), paddle), CommandRejected)
    assert exposure(m, sale.buyer) > 2_100 * USD       # the lot and the resting buy
    overdue(sale)
    events = m.d.ok(DeclareDefault(settlement=sale.sid), **OP)
    kinds = [type(e) for e in events]
    cancelled = of(events, OrderCancelled)
    assert kinds.index(PartyFrozen) < kinds.index(OrderCancelled)
    assert [(e.paddle, e.order, e.qty, e.reason) for e in cancelled] == \
        [(a, 1, 5, "party_frozen"), (a, 2, 5, "party_frozen")]
    assert list(m.state.books["U"].book.orders) == [(b, 1)]   # others' orders stay
    assert exposure(m, sale.buyer) == 0
    sold = m.send(order(c, 1, "sell", 10), c)                  # nothing of A's is hit
    assert not of(sold, CommandRejected) and list(m.state.books["U"].book.orders) == \
        [(b, 1), (c, 1)]


def test_a_defaulter_s_standing_bids_are_voided_and_the_english_price_recomputed():
    from exchange.events import (BidVoided, SealedBidCounted, SealedBidsRevealed)
    m, sale, a, b, c, d = english(log=True)
    now = m.d.ts
    later = dict(opens_at=now + HOUR, closes_at=now + 60 * DAY)
    m.lot("L2", seller=sale.seller, **later)                           # English, no fees
    m.lot("L3", seller=sale.seller, mechanism="sealed_first", **later)
    m.lot("L4", seller=sale.seller, **later)                           # A alone
    m.tick(now + 2 * HOUR)
    for paddle, amount in ((b, 2_000), (c, 1_500), (a, 3_000)):
        m.bid("L2", paddle, amount * USD)
    assert (m.state.lots["L2"].leader, m.state.lots["L2"].price) == (a, 2_100 * USD)
    m.bid("L3", a, 5_000 * USD)
    m.bid("L3", d, 4_000 * USD)
    m.bid("L4", a, 1_000 * USD)
    overdue(sale)
    events = m.d.ok(DeclareDefault(settlement=sale.sid), **OP)
    voided = of(events, BidVoided)
    english_voids = [e for e in voided if e.serial in ("L2", "L4")]
    assert [(e.serial, e.paddle, e.leader, e.price, e.reserve_met, e.to) for e in english_voids] \
        == [("L2", a, b, 1_600 * USD, True, ()), ("L4", a, 0, 0, False, ())]
    sealed_void = one([e for e in voided if e.serial == "L3"], BidVoided)
    assert sealed_void.to == (m.brokers[a], OPERATORS) and sealed_void.price == 0
    assert [e.bids for e in of(events, SealedBidCounted)] == [1]
    assert exposure(m, sale.buyer) == 0                   # every hold of A released
    assert exposure(m, m.parties[b]) == 2_000 * USD       # B leads L2 again, at its maximum
    lot2 = m.state.lots["L2"]
    assert (lot2.leader, lot2.second_max, lot2.price) == (b, 1_500 * USD, 1_600 * USD)
    assert not m.state.lots["L4"].leader and not m.state.lots["L4"].maxes
    # what the feed's board shows: every public event so far, in order
    from gateway.board import Board
    board = Board(session="S1")
    board.apply(e for _, events in m.d.log for e in events if not e.to)
    assert (board.lots["L2"].leader, board.lots["L2"].price) == (b, 1_600 * USD)
    assert (board.lots["L4"].leader, board.lots["L4"].price) == (0, 1_000 * USD)  # starting bid
    assert board.lots["L3"].bids == 1
    # A cannot bid again; the lots close without it
    assert m.refused("L2", a, 5_000 * USD).code == "party_frozen"
    closing = m.tick(now + 60 * DAY)
    awards = {e.serial: (e.paddle, e.hammer) for e in of(closing, LotAwarded)}
    assert awards == {"L2": (b, 1_600 * USD), "L3": (d, 4_000 * USD)}
    revealed = one([e for e in closing if isinstance(e, SealedBidsRevealed)], SealedBidsRevealed)
    assert [bid.paddle for bid in revealed.bids] == [d]


def test_the_replay_catalogue_follows_a_voided_english_bid():
    """Take an English lot's new price and leader from a public BidVoided, as the board does."""
    from exchange.codec import Entry
    from replay.access import Viewer
    from replay.catalogue import Catalogue
    m, sale, a, b, c, d = english(log=True)
    now = m.d.ts
    later = dict(opens_at=now + HOUR, closes_at=now + 60 * DAY)
    m.lot("L2", seller=sale.seller, **later)
    m.lot("L3", seller=sale.seller, mechanism="sealed_first", **later)
    m.lot("L4", seller=sale.seller, **later)                           # A alone
    m.tick(now + 2 * HOUR)
    for paddle, amount in ((b, 2_000), (c, 1_500), (a, 3_000)):
        m.bid("L2", paddle, amount * USD)
    m.bid("L3", a, 5_000 * USD)
    m.bid("L4", a, 1_000 * USD)
    overdue(sale)
    m.d.ok(DeclareDefault(settlement=sale.sid), **OP)
    for viewer in (Viewer(), Viewer(operator=True, user="op")):
        cat = Catalogue(viewer).fold_all((None, Entry(env, events)) for env, events in m.d.log)
        lots = cat.lots
        assert (lots["L2"].leader, lots["L2"].price) == (b, 1_600 * USD), viewer
        assert (lots["L4"].leader, lots["L4"].price) == (0, 1_000 * USD), viewer  # starting bid
        assert (lots["L3"].leader, lots["L3"].bids) == (0, 0), viewer


def test_a_runner_up_that_cannot_back_its_maximum_any_more_lapses_with_the_defaulter():
    """Only an English lot's leader holds credit: a runner-up may have spent
    its room elsewhere since it was outbid. When the defaulter's leading bid
    is voided, such a runner-up's maximum lapses too ("over_credit_limit")
    and the next bidder leads: no party's commitments exceed its limit."""
    from exchange.commands import ReviewCredit
    from exchange.events import BidVoided
    m, sale, a, b, c, d = english()
    now = m.d.ts
    later = dict(opens_at=now + HOUR, closes_at=now + 60 * DAY)
    m.lot("L2", seller=sale.seller, **later)
    m.lot("L5", seller=sale.seller, **later)
    m.tick(now + 2 * HOUR)
    m.d.ok(ReviewCredit(party=m.parties[b], approved=True, credit_limit=2_500 * USD,
                        currency="USD", agreement_version="BRA-2026"))
    for paddle, amount in ((b, 2_000), (c, 1_500), (a, 3_000)):
        m.bid("L2", paddle, amount * USD)
    m.bid("L5", b, 1_000 * USD)               # B leads L5: 1,000 of its 2,500 held there
    overdue(sale)
    events = m.d.ok(DeclareDefault(settlement=sale.sid), **OP)
    lot2 = m.state.lots["L2"]
    assert (lot2.leader, lot2.leader_max, lot2.second_max) == (c, 1_500 * USD, 0)
    assert b not in lot2.maxes
    voided = [(e.paddle, e.reason, e.leader, e.price) for e in of(events, BidVoided)
              if e.serial == "L2"]
    assert voided == [(a, "party_frozen", c, lot2.price), (b, "over_credit_limit", c, lot2.price)]
    assert exposure(m, m.parties[b]) == 1_000 * USD      # L5 only
    assert exposure(m, m.parties[c]) == 1_500 * USD      # C now leads L2 at its maximum
    for (_, party), found in m.state.exposure.items():
        assert found.total <= m.state.parties[party].credit_limit


def test_a_defaulter_s_offers_on_passed_lots_are_withdrawn():
    from exchange.events import OfferWithdrawn
    m, sale, a, b, c, d = english()
    now = m.d.ts
    m.lot("L5", seller=sale.seller, reserve=9_000 * USD, negotiation_window=11 * DAY,
          opens_at=now + HOUR, closes_at=now + 2 * HOUR)
    m.tick(now + HOUR)
    m.bid("L5", a, 1_000 * USD)
    m.tick(now + 2 * HOUR)                                # passed: reserve not met
    assert not of(m.send(MakeOffer(serial="L5", paddle=a, amount=4_000 * USD), a),
                  CommandRejected)
    overdue(sale)
    events = m.d.ok(DeclareDefault(settlement=sale.sid), **OP)
    withdrawn = one(events, OfferWithdrawn)
    assert (withdrawn.serial, withdrawn.paddle, withdrawn.reason) == ("L5", a, "party_frozen")
    assert exposure(m, sale.buyer) == 0
    accept = AnswerOffer(serial="L5", paddle=a, action="accept")
    assert m.d.refused(accept, actor=SELLER_BROKER, role="broker").code == "no_offer"


def test_a_reaward_offer_to_a_party_that_defaults_elsewhere_moves_on():
    m = Market()
    seller = m.seller()
    a, b, c, d = (m.bidder(name) for name in ("Alice", "Bob", "Carol", "Dave"))
    m.lot("L1", seller=seller, **FEES)
    m.lot("L6", seller=seller, **FEES)
    m.tick(T0 + HOUR)
    for paddle, amount in ((d, 1_200), (c, 1_500), (b, 2_000), (a, 3_000)):
        m.bid("L1", paddle, amount * USD)
    for paddle, amount in ((d, 1_100), (b, 2_500)):
        m.bid("L6", paddle, amount * USD)
    opened = {e.serial: e for e in of(m.tick(T0 + DAY), SettlementOpened)}
    m.tick(opened["L1"].due_at)
    events = m.d.ok(DeclareDefault(settlement=opened["L1"].settlement), **OP)
    assert one(events, ReawardOffered).paddle == b            # L1 offered to Bob
    events = m.d.ok(DeclareDefault(settlement=opened["L6"].settlement), **OP)   # Bob defaults
    ended = one(events, ReawardEnded)
    assert (ended.serial, ended.paddle, ended.reason) == ("L1", b, "party_frozen")
    offers = {e.serial: (e.paddle, e.price) for e in of(events, ReawardOffered)}
    assert offers == {"L6": (d, 1_100 * USD), "L1": (c, 1_500 * USD)}


def test_a_cancelled_sale_leaves_the_public_results_and_the_store_passed(tmp_path):
    from exchange.codec import Entry
    from recorder.store import CURATORS
    from replay.catalogue import Catalogue
    m, sale, *_ = english(log=True)
    overdue(sale)
    m.d.ok(DeclareDefault(settlement=sale.sid, next="relist"), **OP)
    catalogue = Catalogue().fold_all((None, Entry(env, events)) for env, events in m.d.log)
    assert catalogue.lots["L1"].outcome == "passed" and catalogue.lots["L1"].award is None
    (passed,) = [e for _, events in m.d.log for e in events
                 if isinstance(e, LotPassed) and e.reason == "sale_cancelled"]
    ops = CURATORS["LotPassed"](1, 0, 0, passed)
    assert "winner_paddle" in ops[-1][1] and ops[-1][2][:5] == ("passed", "passed", 0, 0, 0)


def test_the_board_follows_a_sale_its_display_price_its_cancellation_and_its_settlement():
    from exchange.commands import SetDisplayRate
    from gateway.board import Board
    m, sale, a, b, *_ = english(log=True, display_currency="CNY")
    board = Board(session="S1")
    m.d.ok(SetDisplayRate(base="USD", quote="CNY", num=2, den=1))
    overdue(sale)
    m.d.ok(DeclareDefault(settlement=sale.sid), **OP)
    board.apply(e for _, events in m.d.log for e in events if not e.to)
    row = board.lots["L1"]
    assert (row.status, row.leader, row.result) == ("passed", 0, "sale cancelled")
    events = answer(m, b, accept=True)                  # re-awarded to B at its 2,000
    award = one(events, LotAwarded)
    board.apply(e for e in events if not e.to)
    assert (row.status, row.price, row.display_price) == ("sold", 2_000 * USD,
                                                          award.display_hammer)
    assert award.display_hammer == 4_000 * USD        # the hammer's, not a bid's
    resale = Sale(m, one(events, SettlementOpened), m.brokers[b], SELLER_BROKER,
                  m.parties[b], sale.seller)
    for step in (resale.pay, resale.deliver, resale.confirm, resale.release):
        board.apply(e for e in step() if not e.to)
    assert row.status == "settled"


def test_a_reaward_goes_on_after_the_session_closes():
    """A default usually comes after the session's close (payment is due days
    after the sale): a re-award settles a sale the session made, at a bid made
    in it, so it is offered and accepted after the close, unlike a negotiated
    sale, a new one (`session_closed`)."""
    from exchange.commands import CloseSession
    m, sale, a, b, c, d = english()
    m.d.ok(CloseSession(session="S1"), **OP)
    overdue(sale)
    offer = one(m.d.ok(DeclareDefault(settlement=sale.sid, reason="unpaid"), **OP), ReawardOffered)
    assert offer.paddle == b
    assert one(answer(m, b, True), LotAwarded).how == "reaward"
    assert m.state.lots["L1"].status == "sold"
