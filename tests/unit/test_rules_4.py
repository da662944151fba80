"""The changes of the engine's rules 4 (`exchange.commands.RULES`): each
applies to envelopes made under rules 4, and an envelope of rules 3 (a
journal written before) still replays as it did."""

from __future__ import annotations

import pytest

from exchange import status
from exchange.commands import (CreateInstrument, DeclareDefault, RaiseDispute, RecordPayment,
                               RelistLot, ResolveDispute)
from tests.unit.auctionkit import DAY, T0, of, one
from tests.unit.test_market import rejected

OP = dict(actor="op", role="operator")


def book_sale(rules: int):
    from tests.unit.test_settlement import book_sale as sale_on_the_book
    sale = sale_on_the_book()
    sale.m.d.rules = rules
    sale.m.d.engine.check_invariants = True
    return sale


def units(m, serial: str) -> dict[str, dict[int, int]]:
    return {i.id: dict(i.holdings) for i in m.state.books.values() if i.lot == serial}


# ---------------------------------------------------------------------------
# the book
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("rules", [3, 4])
def test_a_book_sale_cancelled_by_default_gives_the_patent_back(rules):
    sale = book_sale(rules)
    m = sale.m
    assert units(m, "L1") == {"P1": {sale.buyer: 1}}
    m.tick(T0 + 9 * DAY)                                     # overdue
    m.d.ok(DeclareDefault(settlement=sale.sid, next="relist"), **OP)
    held = status.broker_status(m.state, sale.buyer_broker).holdings
    if rules == 3:
        assert units(m, "L1") == {"P1": {sale.buyer: 1}} and len(held) == 1
    else:
        assert units(m, "L1") == {"P1": {sale.seller: 1}} and held == []
    m.d.ok(RelistLot(serial="L1", opens_at=T0 + 10 * DAY, closes_at=T0 + 12 * DAY), **OP)
    m.d.ok(CreateInstrument(session="S1", instrument="P2", kind="patent", lot="L1"), **OP)
    if rules == 3:                                           # two units of one patent
        assert units(m, "L1") == {"P1": {sale.buyer: 1}, "P2": {sale.seller: 1}}
    else:                                                    # the new book holds the one
        assert units(m, "L1") == {"P1": {}, "P2": {sale.seller: 1}}
        assert m.state.books["P1"].issued == 0


@pytest.mark.parametrize("rules", [3, 4])
def test_a_book_sale_refunded_in_a_dispute_gives_the_patent_back(rules):
    sale = book_sale(rules)
    m = sale.m
    m.d.ok(RecordPayment(settlement=sale.sid, amount=sale.opened.total), **OP)
    m.d.ok(RaiseDispute(settlement=sale.sid, reason="not the patent"),
           actor=sale.buyer_broker, role="broker")
    m.d.ok(ResolveDispute(settlement=sale.sid, outcome="refund", reason="upheld"), **OP)
    assert m.state.lots["L1"].status == "passed"
    owner = sale.buyer if rules == 3 else sale.seller
    assert units(m, "L1") == {"P1": {owner: 1}}


# ---------------------------------------------------------------------------
# settlement of parties the operators hold
# ---------------------------------------------------------------------------

def house_transfer(rules: int, *, seller_broker: str = "", buyer_broker: str = ""):
    """An agreement transfer between parties an operator registered: for
    itself (no broker named) unless a broker is given."""
    from exchange.commands import RecordAgreementTransfer, RegisterParty, ReviewCredit
    from tests.unit.auctionkit import USD, Market
    m = Market()
    m.d.rules = rules

    def party(name: str, broker: str) -> int:
        found = m.d.ok(RegisterParty(name=name, broker=broker), **OP)[0].party
        m.d.ok(ReviewCredit(party=found, approved=True, credit_limit=10**12,
                            agreement_version="v"), **OP)
        return found

    seller, buyer = party("Seller Inc", seller_broker), party("Buyer Ltd", buyer_broker)
    sid = m.d.ok(RecordAgreementTransfer(session="S1", serial="AT1", title="t", seller=seller,
                                         buyer=buyer, price=1_000 * USD), **OP)[-1].settlement
    m.d.ok(RecordPayment(settlement=sid, amount=1_000 * USD), **OP)
    return m, sid


@pytest.mark.parametrize("rules", [3, 4])
def test_an_operator_takes_the_steps_of_parties_the_operators_hold(rules):
    from exchange.commands import ConfirmReceipt, RecordDelivery, ReleaseFunds
    m, sid = house_transfer(rules)
    delivered = m.d.send(RecordDelivery(settlement=sid, reference="doc"), actor="op2",
                         role="operator")                  # any operator, not only the one
    if rules == 3:
        assert rejected(delivered) == "not_permitted"     # stuck with the money in escrow
        assert m.state.settlements[sid].status == "paid"
        return
    assert rejected(delivered) is None
    m.d.ok(ConfirmReceipt(settlement=sid), **OP)
    m.d.ok(ReleaseFunds(settlement=sid), **OP)
    assert m.state.settlements[sid].status == "completed"


@pytest.mark.parametrize("rules", [3, 4])
def test_an_operator_raises_a_dispute_for_a_buyer_the_operators_hold(rules):
    m, sid = house_transfer(rules)
    events = m.d.send(RaiseDispute(settlement=sid, reason="wrong patent"), **OP)
    assert rejected(events) == ("not_permitted" if rules == 3 else None)


@pytest.mark.parametrize("rules", [3, 4])
def test_an_operator_takes_no_step_of_a_brokers_client(rules):
    from exchange.commands import RecordDelivery
    m, sid = house_transfer(rules, seller_broker="b1", buyer_broker="b2")
    assert rejected(m.d.send(RecordDelivery(settlement=sid, reference="doc"), **OP)) == \
        ("not_permitted" if rules == 3 else "not_the_seller")
    m.d.ok(RecordDelivery(settlement=sid, reference="doc"), actor="b1", role="broker")
    assert rejected(m.d.send(RaiseDispute(settlement=sid, reason="no"), **OP)) == \
        ("not_permitted" if rules == 3 else "not_the_buyer")


def test_a_party_an_operator_registered_for_itself_under_rules_3_is_its_own_under_rules_4():
    from exchange.commands import RecordDelivery
    m, sid = house_transfer(3)
    m.d.rules = 4                                          # lotex upgraded meanwhile
    assert rejected(m.d.send(RecordDelivery(settlement=sid, reference="doc"), actor="op2",
                             role="operator")) == "not_the_seller"
    m.d.ok(RecordDelivery(settlement=sid, reference="doc"), **OP)   # its broker's user id


# ---------------------------------------------------------------------------
# pricing panels
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("rules", [3, 4])
def test_a_panel_ends_when_its_lot_sells_at_the_ask_before_opening(rules):
    from exchange import pricing
    from exchange.commands import (BuyAtAsk, DrawPanel, PublishPriceRange, RecordValuation,
                                   RegisterExpert)
    from exchange.events import PanelDiscarded
    from tests.unit.auctionkit import USD, Market
    m = Market(check=True)
    m.d.rules = rules
    seller, a = m.seller(), m.bidder("A")
    for i in range(3):
        m.d.ok(RegisterExpert(name=f"E{i}"), **OP)
    m.lot("L1", seller=seller, ask=5_000 * USD)          # opens at T0 + 1 h
    m.d.ok(DrawPanel(serial="L1", size=3), **OP)
    events = m.send(BuyAtAsk(serial="L1", paddle=a), a)
    assert m.state.lots["L1"].status == "sold"
    panel = pricing.pool(m.state).panels["L1"]
    discarded = [e.reason for e in of(events, PanelDiscarded)]
    assert (panel.open, discarded) == ((True, []) if rules == 3 else (False, ["the lot sold"]))
    m.tick(T0 + 9 * DAY)
    m.d.ok(DeclareDefault(settlement=1, next="relist"), **OP)
    for expert in panel.experts:                         # the panel drawn before the sale
        valued = m.d.send(RecordValuation(serial="L1", expert=expert, low=100, high=200), **OP)
        assert rejected(valued) == (None if rules == 3 else "no_panel")
    assert rejected(m.d.send(PublishPriceRange(serial="L1"), **OP)) == \
        (None if rules == 3 else "no_panel")


def test_a_panel_drawn_after_a_pass_ends_when_the_lot_is_sold_by_negotiation():
    from exchange import pricing
    from exchange.commands import DrawPanel, RecordNegotiatedSale, RegisterExpert
    from exchange.events import PanelDiscarded
    from tests.unit.auctionkit import HOUR, USD, Market
    m = Market()
    seller, a = m.seller(), m.bidder("A")
    for i in range(3):
        m.d.ok(RegisterExpert(name=f"E{i}"), **OP)
    m.lot("L1", seller=seller, reserve=9_000 * USD, negotiation_window=HOUR)
    m.tick(T0 + DAY)                                     # passed: no bids
    assert m.state.lots["L1"].status == "passed"
    m.d.ok(DrawPanel(serial="L1", size=3), **OP)
    events = m.d.ok(RecordNegotiatedSale(serial="L1", paddle=a, amount=8_000 * USD), **OP)
    assert one(events, PanelDiscarded).reason == "the lot sold"
    assert not pricing.pool(m.state).panels["L1"].open


# ---------------------------------------------------------------------------
# soft close terms
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("rules", [3, 4])
@pytest.mark.parametrize("mechanism", ["sealed_first", "sealed_second", "reverse", "dutch",
                                       "bid_ask", "english"])
def test_only_an_english_lot_has_a_soft_close(rules, mechanism):
    from exchange.commands import CreateLot
    from tests.unit.auctionkit import HOUR, MINUTE, USD, Market
    m = Market()
    m.d.rules = rules
    seller = m.seller(limit=10**12)
    extra = dict(dutch_start=9_000 * USD, dutch_step=100 * USD, dutch_interval=MINUTE) \
        if mechanism == "dutch" else {}
    terms = m.terms(mechanism=mechanism, soft_window=10 * MINUTE, soft_extend=5 * MINUTE,
                    hard_end=T0 + DAY + HOUR, starting_bid=0 if mechanism == "bid_ask" else 1_000 * USD,
                    **extra)
    events = m.d.send(CreateLot(serial="L1", session="S1", seller=seller, terms=terms),
                      actor="seller-broker", role="broker")
    if rules == 3 or mechanism == "english":
        assert rejected(events) is None
    else:
        assert rejected(events) == "bad_field"
        assert "no soft close" in events[-1].text
        assert "L1" not in m.state.lots


# ---------------------------------------------------------------------------
# a sealed lot sold at its Ask; negotiation after the session closes
# ---------------------------------------------------------------------------

def sealed_ask_sale(rules: int, buy_at_ask: bool):
    from exchange.commands import BuyAtAsk, SetSettlementRules
    from tests.unit.auctionkit import HOUR, USD, Market
    m = Market()
    m.d.rules = rules
    seller, a, b, c = m.seller(), m.bidder("A"), m.bidder("B"), m.bidder("C")
    m.d.ok(SetSettlementRules(session="S1", payment_term=HOUR, reaward_window=HOUR,
                              publicity_period=HOUR), **OP)
    m.lot("L1", seller=seller, mechanism="sealed_first", ask=5_000 * USD)
    m.tick(T0 + HOUR)
    m.bid("L1", b, 3_333 * USD)
    m.bid("L1", c, 2_222 * USD)
    if buy_at_ask:
        events = m.send(BuyAtAsk(serial="L1", paddle=a), a)
    else:
        events = m.bid("L1", a, 6_000 * USD)               # at or above the Ask: buys at it
    return m, events, a, b, c


@pytest.mark.parametrize("rules", [3, 4])
@pytest.mark.parametrize("buy_at_ask", [False, True])
def test_a_sealed_lot_sold_at_its_ask_reveals_its_bids_as_at_a_close(rules, buy_at_ask):
    from exchange.events import LotAwarded, LotClosed, ReawardOffered, SealedBidsRevealed
    from tests.unit.auctionkit import HOUR, USD
    m, events, a, b, c = sealed_ask_sale(rules, buy_at_ask)
    assert one(events, LotAwarded).how == "ask" and one(events, LotClosed).outcome == "sold"
    revealed = [[(bid.paddle, bid.amount) for bid in e.bids] for e in of(events, SealedBidsRevealed)]
    if rules == 3:
        assert revealed == []
    else:
        bids = [(b, 3_333 * USD), (c, 2_222 * USD)]
        assert revealed == [bids if buy_at_ask else [(a, 6_000 * USD)] + bids]
        names = [type(e).__name__ for e in events]
        assert names.index("LotClosed") < names.index("SealedBidsRevealed") \
            < names.index("LotAwarded")                  # as at a close
    m.tick(T0 + 3 * HOUR)                                # overdue
    offered = one(m.d.ok(DeclareDefault(settlement=1, next="reaward"), **OP), ReawardOffered)
    assert (offered.paddle, offered.price) == (b, 3_333 * USD)   # revealed since rules 4


@pytest.mark.parametrize("rules", [3, 4])
def test_the_seller_no_longer_negotiates_once_the_session_is_closed(rules):
    from exchange.commands import AnswerOffer, CloseSession, LowerReserve, MakeOffer
    from tests.unit.auctionkit import USD, Market
    m = Market()
    m.d.rules = rules
    seller, a = m.seller(), m.bidder("A")
    m.lot("L1", seller=seller, reserve=9_000 * USD, negotiation_window=DAY)
    m.tick(T0 + DAY)                                     # passed: no bids
    m.send(MakeOffer(serial="L1", paddle=a, amount=3_000 * USD), a)
    m.d.ok(CloseSession(session="S1"), **OP)
    seller_side = dict(actor="seller-broker", role="broker")
    lowered = m.d.send(LowerReserve(serial="L1", reserve=8_000 * USD), **seller_side)
    accepted = m.d.send(AnswerOffer(serial="L1", paddle=a, action="accept"), **seller_side)
    if rules == 3:
        assert (rejected(lowered), rejected(accepted)) == (None, None)
        assert m.state.lots["L1"].status == "sold"       # a new sale in a closed session
    else:
        assert (rejected(lowered), rejected(accepted)) == ("session_closed", "session_closed")
        assert m.state.lots["L1"].status == "passed"
