"""A refusal tells a broker nothing it may not know (found by an audit over
real sockets): another broker's unpublished lot, party, paddle or settlement
is refused exactly as one that does not exist, and no text names a party id
the broker was not given."""

from __future__ import annotations

import pytest

from exchange.commands import (BuyAtAsk, CreateLot, LowerReserve, MakeOffer, PlaceBid,
                               WithdrawBid, WithdrawLot)
from exchange.events import CommandRejected
from tests.unit.auctionkit import HOUR, T0, USD, Market, one


def refusal(m: Market, cmd, broker: str) -> tuple[str, str]:
    rejected = one(m.d.send(cmd, actor=broker, role="broker"), CommandRejected)
    return rejected.code, rejected.text.replace(repr(getattr(cmd, "serial", "")), "'S'")


@pytest.mark.parametrize("make", [
    lambda serial, paddle: PlaceBid(serial=serial, paddle=paddle, amount=2_000 * USD),
    lambda serial, paddle: PlaceBid(serial=serial, paddle=paddle, amount=1, currency="JPY"),
    lambda serial, paddle: BuyAtAsk(serial=serial, paddle=paddle),
    lambda serial, paddle: WithdrawBid(serial=serial, paddle=paddle),
    lambda serial, paddle: MakeOffer(serial=serial, paddle=paddle, amount=1_000 * USD),
    lambda serial, paddle: WithdrawLot(serial=serial),
    lambda serial, paddle: LowerReserve(serial=serial, reserve=1),
])
def test_another_brokers_unpublished_lot_is_as_unknown_as_none(make):
    m = Market()
    seller = m.seller()
    bob = m.bidder("Bob")
    m.lot("DRAFT", seller=seller, schedule=False)                # never published
    assert refusal(m, make("DRAFT", bob), "broker-Bob") == \
        refusal(m, make("NOPE", bob), "broker-Bob") == ("unknown_lot", "no lot 'S'")
    # its own seller's broker still finds it (whatever else it then says)
    events = m.d.send(make("DRAFT", bob), actor="seller-broker", role="broker")
    assert not [e for e in events if isinstance(e, CommandRejected) and e.code == "unknown_lot"]


def test_no_refusal_names_the_party_behind_a_lot():
    m = Market()
    seller = m.seller()
    m.bidder("Bob")
    m.lot("L1", seller=seller)
    m.tick(T0 + HOUR)
    code, text = refusal(m, WithdrawLot(serial="L1"), "broker-Bob")
    assert code == "not_your_party" and str(seller) not in text
    # a party another broker's or none at all: the same answer
    theirs = refusal(m, CreateLot(serial="X1", session="S1", seller=seller,
                                  terms=m.terms()), "broker-Bob")
    nobody = refusal(m, CreateLot(serial="X1", session="S1", seller=999_999,
                                  terms=m.terms()), "broker-Bob")
    assert theirs == nobody == ("not_your_party", "that party is not a client of 'broker-Bob'")


def test_who_holds_a_reaward_offer_is_not_told_to_others():
    from exchange.commands import AnswerReaward, DeclareDefault
    from tests.unit.test_settlement import OP
    from tests.unit.test_settlement_default import english, overdue
    m, sale, a, b, c, d = english()
    overdue(sale)
    m.d.ok(DeclareDefault(settlement=sale.sid), **OP)          # the offer goes to b
    carol = m.brokers[c]
    holder = refusal(m, AnswerReaward(serial="L1", paddle=b, accept=False), carol)
    other = refusal(m, AnswerReaward(serial="L1", paddle=d, accept=False), carol)
    assert holder[0] == other[0] == "not_your_paddle"
    assert m.state.settlements and b in [o.paddle for o in
                                          m.state.extra["settlement"].offers.values()]


def test_a_book_command_on_another_brokers_paddle_or_none_gets_one_answer():
    from exchange.commands import (CancelOrder, ConsumeUnits, CreateInstrument, MassCancel,
                                   ModifyOrder, PlaceOrder)
    m = Market()
    m.bidder("Bob")
    carol = m.bidder("Carol")
    m.d.ok(CreateInstrument(session="S1", instrument="U"))
    for make in (lambda p: CancelOrder(session="S1", instrument="U", paddle=p, order=1),
                 lambda p: ConsumeUnits(session="S1", instrument="U", paddle=p, qty=1),
                 lambda p: MassCancel(session="S1", paddle=p),
                 lambda p: ModifyOrder(session="S1", instrument="U", paddle=p, order=1,
                                       price=1, qty=1),
                 lambda p: PlaceOrder(session="S1", instrument="U", paddle=p, order=1,
                                      side="buy", qty=1, price=1)):
        theirs = refusal(m, make(carol), "broker-Bob")
        nobody = refusal(m, make(999), "broker-Bob")
        assert theirs[0] == nobody[0] == "not_your_paddle", type(make(1)).__name__
        assert theirs[1].replace(str(carol), "P") == nobody[1].replace("999", "P")


def test_an_unpublished_lot_is_named_on_no_public_event():
    from exchange.commands import CreateInstrument, ScheduleLot, SetSettlementRules, VetLot
    m = Market()
    seller = m.seller()
    m.lot("DRAFT", seller=seller, schedule=False, mechanism="bid_ask", ask=0)
    refused = m.d.refused(CreateInstrument(session="S1", instrument="P1", kind="patent",
                                           lot="DRAFT"))
    assert refused.code == "bad_status" and "not published" in refused.text
    rules = m.d.ok(SetSettlementRules(session="S1", lot="DRAFT", payment_term=HOUR,
                                      reaward_window=HOUR, publicity_period=HOUR))
    assert rules and all(e.to for e in rules)                   # the seller's broker's only
    m.d.ok(VetLot(serial="DRAFT", score=80, approved=True))
    m.d.ok(ScheduleLot(serial="DRAFT"))
    assert m.d.ok(CreateInstrument(session="S1", instrument="P1", kind="patent", lot="DRAFT"))
    rules = m.d.ok(SetSettlementRules(session="S1", lot="DRAFT", payment_term=HOUR,
                                      reaward_window=HOUR, publicity_period=HOUR))
    assert [e.to for e in rules] == [()]                        # published now: public
