"""Settlement: the whole escrow flow for every kind of sale, amounts, due
dates, credit following settlement, certificates and confidentiality."""

from __future__ import annotations

from typing import Any

import pytest

from exchange import credit
from exchange.commands import (AnswerReaward, BuyAtAsk, ConfirmReceipt, CreateInstrument, IssuePaddle, Patent,
                               PlaceBid, PlaceOrder, RecordAgreementTransfer, RecordDelivery,
                               RecordNegotiatedSale, RecordPayment, ReleaseFunds,
                               SetSettlementRules)
from exchange.events import (OPERATORS, AgreementTransferRecorded, CertificateIssued,
                             CertificateRecorded, CommandRejected, DeliveryRecorded,
                             FundsReleased, LotSettled, PaymentRecorded,
                             ReceiptConfirmed, SettlementCompleted, SettlementOpened,
                             SettlementOverdue)
from exchange.settlement import DEFAULT_RULES
from tests.unit.auctionkit import DAY, HOUR, MINUTE, T0, USD, Market, of, one

OP = dict(actor="op", role="operator")
SELLER_BROKER = "seller-broker"
PATENTS = (Patent(number="US7000001", title="Inkjet nozzle array", family_id="F1"),)


class Sale:
    """A market with one sale that opened settlement ``sid``."""

    def __init__(self, m: Market, opened: SettlementOpened, buyer_broker: str,
                 seller_broker: str, buyer: int, seller: int) -> None:
        self.m = m
        self.opened = opened
        self.sid = opened.settlement
        self.buyer_broker = buyer_broker
        self.seller_broker = seller_broker
        self.buyer = buyer
        self.seller = seller

    @property
    def s(self) -> Any:
        return self.m.state.settlements[self.sid]

    def op(self, cmd: Any) -> list:
        return self.m.d.ok(cmd, **OP)

    def pay(self, amount: int | None = None) -> list:
        return self.op(RecordPayment(settlement=self.sid,
                                     amount=self.s.total - self.s.paid if amount is None else amount,
                                     reference="WIRE-1"))

    def deliver(self) -> list:
        return self.m.d.ok(RecordDelivery(settlement=self.sid, reference="ASSIGN-DOC-1"),
                           actor=self.seller_broker, role="broker")

    def confirm(self) -> list:
        return self.m.d.ok(ConfirmReceipt(settlement=self.sid), actor=self.buyer_broker,
                           role="broker")

    def release(self) -> list:
        return self.op(ReleaseFunds(settlement=self.sid))

    def refused(self, cmd: Any, actor: str = "op", role: str = "operator") -> str:
        """Send ``cmd``; assert it is refused and changes nothing; return the code."""
        return self.m.unchanged(cmd, actor=actor, role=role).code


def market() -> tuple[Market, int, int, int, int]:
    m = Market()
    seller = m.seller()
    a, b, c = m.bidder("Alice"), m.bidder("Bob"), m.bidder("Carol")
    return m, seller, a, b, c


FEES = dict(buyer_premium_bp=1_000, seller_commission_bp=1_500)


def english_award() -> Sale:
    m, seller, a, b, c = market()
    m.lot("L1", seller=seller, reserve=1_500 * USD, **FEES)
    m.tick(T0 + HOUR)
    m.bid("L1", c, 1_500 * USD)
    m.bid("L1", b, 2_000 * USD)
    m.bid("L1", a, 3_000 * USD)
    events = m.tick(T0 + DAY)
    return Sale(m, one(events, SettlementOpened), m.brokers[a], SELLER_BROKER, m.parties[a], seller)


def sealed_award(mechanism: str = "sealed_second") -> Sale:
    m, seller, a, b, c = market()
    m.lot("L1", seller=seller, mechanism=mechanism, **FEES)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 3_000 * USD)
    m.bid("L1", b, 2_500 * USD)
    m.bid("L1", c, 1_200 * USD)
    events = m.tick(T0 + DAY)
    return Sale(m, one(events, SettlementOpened), m.brokers[a], SELLER_BROKER, m.parties[a], seller)


def ask_sale() -> Sale:
    m, seller, a, b, _ = market()
    m.lot("L1", seller=seller, ask=5_000 * USD, **FEES)
    events = m.send(BuyAtAsk(serial="L1", paddle=b), b)
    return Sale(m, one(events, SettlementOpened), m.brokers[b], SELLER_BROKER, m.parties[b], seller)


def dutch_sale() -> Sale:
    m, seller, a, _, _ = market()
    m.lot("L1", seller=seller, mechanism="dutch", dutch_start=5_000 * USD,
          dutch_step=500 * USD, dutch_interval=HOUR, **FEES)
    m.tick(T0 + 3 * HOUR)                             # two steps: 4,000
    events = m.bid("L1", a, 4_000 * USD)
    return Sale(m, one(events, SettlementOpened), m.brokers[a], SELLER_BROKER, m.parties[a], seller)


def negotiated_sale() -> Sale:
    m, seller, a, b, _ = market()
    m.lot("L1", seller=seller, reserve=5_000 * USD, negotiation_window=DAY, **FEES)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_000 * USD)
    m.tick(T0 + DAY)                                  # passed: reserve not met
    events = m.d.ok(RecordNegotiatedSale(serial="L1", paddle=b, amount=4_000 * USD), **OP)
    return Sale(m, one(events, SettlementOpened), m.brokers[b], SELLER_BROKER, m.parties[b], seller)


def reverse_award() -> Sale:
    m = Market()
    owner = m.seller("Seeker", broker="seeker-broker", limit=10**9)
    solver = m.bidder("Solver")
    m.bidder("Other")
    m.lot("T1", seller=owner, broker="seeker-broker", mechanism="reverse",
          starting_bid=10_000 * USD, **FEES)
    m.tick(T0 + HOUR)
    m.bid("T1", solver, 7_000 * USD)
    events = m.tick(T0 + DAY)
    return Sale(m, one(events, SettlementOpened), "seeker-broker", m.brokers[solver], owner,
                m.parties[solver])


def book_sale() -> Sale:
    m, seller, a, b, _ = market()
    m.d.ok(IssuePaddle(session="S1", party=seller))
    sell_paddle = m.state.sessions["S1"].by_party[seller]
    m.lot("L1", seller=seller, mechanism="bid_ask", starting_bid=0, **FEES)
    m.d.ok(CreateInstrument(session="S1", instrument="P1", kind="patent", lot="L1"))
    m.tick(T0 + HOUR)
    m.d.ok(PlaceOrder(session="S1", instrument="P1", paddle=a, order=1, side="buy", qty=1,
                      price=3_000 * USD), actor=m.brokers[a], role="broker")
    events = m.d.ok(PlaceOrder(session="S1", instrument="P1", paddle=sell_paddle, order=1,
                               side="sell", qty=1, price=2_900 * USD),
                    actor=SELLER_BROKER, role="broker")
    return Sale(m, one(events, SettlementOpened), m.brokers[a], SELLER_BROKER, m.parties[a], seller)


def agreement_sale(state_institution: bool = False) -> Sale:
    m, seller, a, _, _ = market()
    events = m.d.ok(RecordAgreementTransfer(
        session="S1", serial="AT-1", title="Battery chemistry", patents=PATENTS, seller=seller,
        buyer=m.parties[a], price=8_000 * USD, state_institution=state_institution, **FEES), **OP)
    return Sale(m, one(events, SettlementOpened), m.brokers[a], SELLER_BROKER, m.parties[a], seller)


KINDS = {
    "auction": english_award, "sealed": sealed_award, "ask": ask_sale, "dutch": dutch_sale,
    "negotiated": negotiated_sale, "reverse": reverse_award, "book": book_sale,
    "agreement": agreement_sale,
}
EXPECTED = {  # kind -> (how, price)
    "auction": ("auction", 2_100 * USD), "sealed": ("auction", 2_500 * USD),
    "ask": ("ask", 5_000 * USD), "dutch": ("auction", 4_000 * USD),
    "negotiated": ("negotiated", 4_000 * USD), "reverse": ("auction", 7_000 * USD),
    "book": ("book", 3_000 * USD), "agreement": ("agreement", 8_000 * USD),
}


def exposure(m: Market, party: int) -> int:
    found = m.state.exposure.get(("S1", party))
    return 0 if found is None else found.total


@pytest.mark.parametrize("kind", list(KINDS))
def test_whole_flow_for_every_kind_of_sale(kind):
    sale = KINDS[kind]()
    m, opened = sale.m, sale.opened
    how, price = EXPECTED[kind]
    premium, commission = price // 10, price * 15 // 100
    assert (opened.how, opened.price, opened.premium, opened.total) == \
        (how, price, premium, price + premium)
    assert (opened.commission, opened.net, opened.currency) == (commission, price - commission, "USD")
    assert opened.due_at == opened.opened_at + DEFAULT_RULES.payment_term
    assert opened.to == (sale.buyer_broker, sale.seller_broker, OPERATORS)
    lot_sale = kind != "agreement"
    if lot_sale:                                      # the buyer's total due stays committed
        assert credit.committed(m.state, "S1", sale.buyer, ("lot", opened.serial)) == opened.total

    first = opened.total // 3
    ev = sale.pay(first)
    assert one(ev, PaymentRecorded).outstanding == opened.total - first
    assert sale.s.status == "awaiting_payment"
    ev = sale.pay()
    assert (one(ev, PaymentRecorded).paid, one(ev, PaymentRecorded).outstanding) == (opened.total, 0)
    assert sale.s.status == "paid"
    assert one(sale.deliver(), DeliveryRecorded).reference == "ASSIGN-DOC-1"
    one(sale.confirm(), ReceiptConfirmed)
    ev = sale.release()
    released = one(ev, FundsReleased)
    assert (released.to_seller, released.to_venue, released.refunded) == \
        (opened.net, premium + commission, 0)
    assert one(ev, SettlementCompleted).settlement == sale.sid
    public = one(ev, CertificateIssued)
    private = one(ev, CertificateRecorded)
    # a non-public agreement transfer's certificate stays with its parties (rules 5)
    assert public.to == (opened.to if kind == "agreement" else ()) and private.to == (OPERATORS,)
    assert public.kind == private.kind == "transaction"
    assert public.seq == private.seq == m.d.seq       # the journal seq it is recorded at
    assert (public.price, public.total, public.net, public.how) == \
        (price, opened.total, opened.net, how)
    assert (private.buyer, private.seller) == (sale.buyer, sale.seller)
    assert private.buyer_name == m.state.parties[sale.buyer].name
    assert public.sold_at <= public.paid_at <= public.delivered_at <= public.received_at \
        <= public.completed_at == public.issued_at
    if lot_sale:
        assert one(ev, LotSettled).serial == opened.serial
        assert m.state.lots[opened.serial].status == "settled"
        assert credit.committed(m.state, "S1", sale.buyer, ("lot", opened.serial)) == 0
    assert sale.s.status == "completed" and sale.s.escrow == 0


def test_every_step_announces_only_to_the_parties_brokers_and_operators():
    sale = english_award()
    m = sale.m
    m.d.log = []
    sale.pay()
    sale.deliver()
    sale.confirm()
    sale.release()
    events = [event for _, batch in m.d.log for event in batch]
    allowed = {sale.buyer_broker, sale.seller_broker, OPERATORS}
    for event in events:
        if event.to == ():
            assert type(event).__name__ in ("CertificateIssued", "LotSettled"), event
            assert not hasattr(event, "buyer") and not hasattr(event, "seller"), event
            assert not any(field.endswith("_name") for field in event.__struct_fields__), event
        else:
            assert set(event.to) <= allowed, event
    assert one(events, CertificateRecorded).to == (OPERATORS,)


def test_the_sale_event_and_the_settlement_agree():
    sale = sealed_award("sealed_first")
    sold = sale.m.state.lots["L1"].sale
    assert (sale.opened.price, sale.opened.sale_seq, sale.opened.buyer_paddle) == \
        (sold.hammer, sold.seq, sold.paddle)
    assert sale.s.buyer == sold.buyer and sale.s.seller == sold.seller
    assert sale.s.patents == sale.m.state.lots["L1"].terms.patents


def test_the_settlement_opens_in_the_same_envelope_right_after_the_sale():
    sale = english_award()
    m = sale.m
    m.lot("L2", seller=sale.seller, ask=2_000 * USD, opens_at=T0 + 2 * DAY, closes_at=T0 + 3 * DAY)
    paddle = next(p for p, party in m.parties.items() if party != sale.buyer)
    events = m.send(BuyAtAsk(serial="L2", paddle=paddle), paddle)
    kinds = [type(event).__name__ for event in events]
    assert kinds.index("SettlementOpened") == kinds.index("LotSold") + 1


def test_due_date_from_session_and_lot_rules():
    m, seller, a, b, _ = market()
    m.d.ok(SetSettlementRules(session="S1", payment_term=3 * DAY, reaward_window=DAY,
                              publicity_period=10 * DAY), **OP)
    m.lot("L1", seller=seller, ask=2_000 * USD)
    m.lot("L2", seller=seller, ask=2_000 * USD)
    m.d.ok(SetSettlementRules(session="S1", lot="L2", payment_term=DAY, reaward_window=HOUR,
                              publicity_period=DAY), **OP)
    first = one(m.send(BuyAtAsk(serial="L1", paddle=a), a), SettlementOpened)
    second = one(m.send(BuyAtAsk(serial="L2", paddle=b), b), SettlementOpened)
    assert first.due_at - first.opened_at == 3 * DAY
    assert second.due_at - second.opened_at == DAY
    for bad, code in ((dict(payment_term=0), "non_positive"),
                      (dict(reaward_window=-1), "non_positive"),
                      (dict(publicity_period=10**18), "out_of_range"),
                      (dict(lot="nope"), "unknown_lot"), (dict(session="S9"), "unknown_session")):
        fields = dict(session="S1", payment_term=DAY, reaward_window=DAY, publicity_period=DAY)
        fields.update(bad)
        assert m.unchanged(SetSettlementRules(**fields), actor="op", role="operator").code == code
    assert m.unchanged(SetSettlementRules(session="S1", payment_term=DAY, reaward_window=DAY,
                                          publicity_period=DAY),
                       actor="broker-Alice").code == "not_permitted"


def test_overdue_is_announced_at_the_due_date_and_never_once_paid():
    sale = english_award()
    m = sale.m
    assert not of(m.tick(sale.opened.due_at - 1), SettlementOverdue)
    overdue = one(m.tick(sale.opened.due_at), SettlementOverdue)
    assert (overdue.settlement, overdue.outstanding) == (sale.sid, sale.opened.total)
    assert overdue.to == (sale.buyer_broker, sale.seller_broker, OPERATORS)
    sale.pay()                                        # a late payment is still taken
    assert not sale.s.overdue and sale.s.status == "paid"

    paid = ask_sale()
    paid.pay()
    assert not of(paid.m.tick(paid.opened.due_at + DAY), SettlementOverdue)


def test_agreement_transfer_is_a_sale_recorded_by_an_operator():
    sale = agreement_sale()
    m = sale.m
    s = sale.s
    assert (s.how, s.serial, s.title, s.patents, s.holds_credit) == \
        ("agreement", "AT-1", "Battery chemistry", PATENTS, False)
    assert exposure(m, sale.buyer) == 0               # no credit is committed off the floor
    seller, buyer = sale.seller, sale.buyer
    m.lot("L9", seller=seller, schedule=False)
    base = dict(session="S1", serial="AT-2", title="Battery", seller=seller, buyer=buyer,
                price=1_000 * USD)
    for change, actor, code in (
            (dict(), "broker-Alice", "not_permitted"),
            (dict(serial="AT-1"), "op", "lot_exists"),
            (dict(serial="L9"), "op", "lot_exists"),
            (dict(serial=" "), "op", "bad_field"),
            (dict(title=""), "op", "bad_field"),
            (dict(buyer=seller), "op", "same_party"),
            (dict(buyer=999_999), "op", "unknown_party"),
            (dict(price=0), "op", "non_positive"),
            (dict(currency="usd"), "op", "bad_field"),
            (dict(buyer_premium_bp=10_001), "op", "out_of_range"),
            (dict(session="S9"), "op", "unknown_session"),
            (dict(patents=(Patent(number="", title="x"),)), "op", "bad_field")):
        fields = dict(base)
        fields.update(change)
        role = "operator" if actor == "op" else "broker"
        assert m.unchanged(RecordAgreementTransfer(**fields), actor=actor, role=role).code == code


def test_agreement_transfer_events_keep_identities_private():
    m, seller, a, _, _ = market()
    events = m.d.ok(RecordAgreementTransfer(session="S1", serial="AT-1", title="Battery",
                                            seller=seller, buyer=m.parties[a], price=USD), **OP)
    recorded = one(events, AgreementTransferRecorded)
    assert recorded.to == (m.brokers[a], SELLER_BROKER, OPERATORS)
    assert recorded.buyer_paddle == a and recorded.seller_paddle == 0
    assert all(event.to for event in events)


def test_credit_is_released_when_a_settlement_completes_and_frees_room_to_bid():
    m = Market()
    seller = m.seller()
    a = m.bidder("Alice", limit=3_500 * USD)
    m.lot("L1", seller=seller, ask=3_000 * USD)
    m.lot("L2", seller=seller, ask=3_000 * USD)
    sale = Sale(m, one(m.send(BuyAtAsk(serial="L1", paddle=a), a), SettlementOpened),
                m.brokers[a], SELLER_BROKER, m.parties[a], seller)
    assert exposure(m, sale.buyer) == 3_000 * USD
    rejected = one(m.send(BuyAtAsk(serial="L2", paddle=a), a), CommandRejected)
    assert rejected.code == "over_credit_limit"       # the won lot still counts
    sale.pay()
    sale.deliver()
    sale.confirm()
    sale.release()
    assert exposure(m, sale.buyer) == 0
    one(m.send(BuyAtAsk(serial="L2", paddle=a), a), SettlementOpened)


def test_sold_lot_event_names_the_parties_that_settle():
    sale = book_sale()
    s = sale.s
    assert s.instrument == "P1" and s.how == "book"
    assert s.seller_paddle == sale.m.state.sessions["S1"].by_party[sale.seller]


def test_settlement_ids_count_up_and_each_sale_has_one():
    m, seller, a, b, c = market()
    for serial in ("L1", "L2", "L3"):
        m.lot(serial, seller=seller, ask=1_000 * USD)
    ids = [one(m.send(BuyAtAsk(serial=serial, paddle=paddle), paddle), SettlementOpened).settlement
           for serial, paddle in (("L1", a), ("L2", b), ("L3", c))]
    assert ids == [1, 2, 3]
    assert [s.serial for s in m.state.settlements.values()] == ["L1", "L2", "L3"]
    assert m.state.extra["settlement"].by_lot == {"L1": 1, "L2": 2, "L3": 3}


def test_bids_placed_after_the_sale_are_refused_and_open_nothing():
    sale = english_award()
    m = sale.m
    paddle = next(p for p in m.brokers)
    events = m.send(PlaceBid(serial="L1", paddle=paddle, amount=9_000 * USD), paddle)
    assert one(events, CommandRejected).code == "lot_closed"
    assert not of(events, SettlementOpened)
    assert len(m.state.settlements) == 1


def test_times_are_taken_from_the_envelopes():
    sale = english_award()
    m = sale.m
    m.d.ts += 5 * MINUTE
    sale.pay()
    assert sale.s.paid_at == m.d.ts
    m.d.ts += HOUR
    sale.deliver()
    assert sale.s.delivered_at == m.d.ts


def test_refusals_before_any_settlement_change_nothing():
    m, seller, a, _, _ = market()
    m.lot("L1", seller=seller)
    assert "settlement" not in m.state.extra
    for cmd, actor, role, code in (
            (AnswerReaward(serial="L1", paddle=a, accept=True), m.brokers[a], "broker",
             "no_reaward_offer"),
            (RecordAgreementTransfer(session="S1", serial="AT-1", title="T", seller=seller,
                                     buyer=seller, price=USD), "op", "operator", "same_party"),
            (RecordPayment(settlement=1, amount=1), "op", "operator", "unknown_settlement"),
            (SetSettlementRules(session="S1", payment_term=0, reaward_window=1,
                                publicity_period=1), "op", "operator", "non_positive")):
        assert m.unchanged(cmd, actor=actor, role=role).code == code
    assert "settlement" not in m.state.extra
