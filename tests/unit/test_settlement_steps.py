"""Every escrow step out of order, from the wrong role or the wrong party is
refused with its reason and changes nothing; the dispute paths."""

from __future__ import annotations

import pytest

from exchange.commands import (ConfirmReceipt, DeclareDefault, RaiseDispute, RecordDelivery,
                               RecordPayment, ReleaseFunds, ResolveDispute)
from exchange.events import (OPERATORS, CertificateIssued, DisputeRaised, DisputeResolved,
                             FundsRefunded, FundsReleased, LotSettled, SettlementCancelled,
                             SettlementCompleted)
from tests.unit.auctionkit import DAY
from tests.unit.test_settlement import Sale, english_award, exposure

STRANGER = "broker-Bob"   # a broker of another bidder in the same auction


def pay(sid: int, amount: int = 1) -> RecordPayment:
    return RecordPayment(settlement=sid, amount=amount, reference="W")


def deliver(sid: int) -> RecordDelivery:
    return RecordDelivery(settlement=sid, reference="DOC")


def steps(sale: Sale) -> dict:
    """Each command with the actor that may send it."""
    sid = sale.sid
    return {
        "pay": (pay(sid), "op", "operator"),
        "deliver": (deliver(sid), sale.seller_broker, "broker"),
        "confirm": (ConfirmReceipt(settlement=sid), sale.buyer_broker, "broker"),
        "dispute": (RaiseDispute(settlement=sid, reason="documents incomplete"),
                    sale.buyer_broker, "broker"),
        "release": (ReleaseFunds(settlement=sid), "op", "operator"),
        "resolve": (ResolveDispute(settlement=sid, outcome="release", reason="ok"), "op", "operator"),
        "default": (DeclareDefault(settlement=sid), "op", "operator"),
    }


# status -> step -> the reason code when the right sender sends it (None: allowed)
ORDER = {
    "awaiting_payment": {"deliver": "not_paid", "confirm": "not_delivered", "dispute": "not_paid",
                         "release": "not_paid", "resolve": "no_dispute", "default": "not_overdue"},
    "paid": {"pay": "already_paid", "confirm": "not_delivered", "release": "not_delivered",
             "resolve": "no_dispute", "default": "already_paid"},
    "delivered": {"pay": "already_paid", "deliver": "already_delivered",
                  "release": "not_received", "resolve": "no_dispute", "default": "already_paid"},
    "received": {"pay": "already_paid", "deliver": "already_delivered",
                 "confirm": "already_received", "dispute": "already_received",
                 "resolve": "no_dispute", "default": "already_paid"},
    "disputed": {"pay": "in_dispute", "deliver": "in_dispute", "confirm": "in_dispute",
                 "dispute": "in_dispute", "release": "in_dispute", "default": "already_paid"},
    "completed": {step: "settlement_closed" for step in
                  ("pay", "deliver", "confirm", "dispute", "release", "resolve", "default")},
}


def reach(status: str) -> Sale:
    sale = english_award()
    if status == "awaiting_payment":
        return sale
    sale.pay()
    if status == "disputed":
        sale.m.d.ok(RaiseDispute(settlement=sale.sid, reason="late"), actor=sale.buyer_broker,
                    role="broker")
        return sale
    if status == "paid":
        return sale
    sale.deliver()
    if status == "delivered":
        return sale
    sale.confirm()
    if status == "received":
        return sale
    sale.release()
    return sale


@pytest.mark.parametrize("status", list(ORDER))
def test_every_out_of_order_step_is_refused_with_its_reason(status):
    sale = reach(status)
    assert sale.s.status == status
    for step, code in ORDER[status].items():
        cmd, actor, role = steps(sale)[step]
        assert sale.refused(cmd, actor, role) == code, (status, step)


WRONG = {  # step -> [(actor, role, code)]; an operator acts only for a party the operators hold
    "pay": [("broker-Alice", "broker", "not_permitted"), ("seller-broker", "broker", "not_permitted")],
    "deliver": [("op", "operator", "not_the_seller"), ("broker-Alice", "broker", "not_the_seller"),
                (STRANGER, "broker", "unknown_settlement"), ("viewer", "viewer", "not_permitted"),
                ("clock", "system", "not_permitted")],
    "confirm": [("op", "operator", "not_the_buyer"), ("seller-broker", "broker", "not_the_buyer"),
                (STRANGER, "broker", "unknown_settlement")],
    "dispute": [("seller-broker", "broker", "not_the_buyer"), (STRANGER, "broker", "unknown_settlement"),
                ("op", "operator", "not_the_buyer")],
    "release": [("seller-broker", "broker", "not_permitted"), ("broker-Alice", "broker", "not_permitted")],
    "resolve": [("broker-Alice", "broker", "not_permitted")],
    "default": [("seller-broker", "broker", "not_permitted"), ("clock", "system", "not_permitted")],
}


@pytest.mark.parametrize("step", list(WRONG))
def test_every_step_from_the_wrong_role_or_party_is_refused(step):
    # in the status where the step is allowed for the right sender
    status = {"pay": "awaiting_payment", "deliver": "paid", "confirm": "delivered",
              "dispute": "delivered", "release": "received", "resolve": "disputed",
              "default": "awaiting_payment"}[step]
    sale = reach(status)
    if step == "default":
        sale.m.tick(sale.opened.due_at)
    cmd, right_actor, _ = steps(sale)[step]
    for actor, role, code in WRONG[step]:
        assert sale.refused(cmd, actor, role) == code, (step, actor)
    sale.m.d.ok(cmd, actor=right_actor, role="operator" if right_actor == "op" else "broker")


def test_unknown_settlement_and_bad_inputs():
    sale = english_award()
    for cmd, actor, role in ((pay(77), "op", "operator"), (deliver(77), "seller-broker", "broker"),
                             (ConfirmReceipt(settlement=77), "broker-Alice", "broker"),
                             (ReleaseFunds(settlement=77), "op", "operator")):
        assert sale.refused(cmd, actor, role) == "unknown_settlement"
    assert sale.refused(pay(sale.sid, 0)) == "non_positive"
    assert sale.refused(pay(sale.sid, sale.opened.total + 1)) == "overpayment"
    sale.pay(sale.opened.total - 5)
    assert sale.refused(pay(sale.sid, 6)) == "overpayment"
    sale.pay(5)
    assert sale.refused(RecordDelivery(settlement=sale.sid, reference=" "), "seller-broker",
                        "broker") == "bad_field"
    sale.deliver()
    assert sale.refused(RaiseDispute(settlement=sale.sid, reason=""), "broker-Alice",
                        "broker") == "reason_required"


# --------------------------------------------------------------------------- disputes

def disputed(before_delivery: bool = False) -> Sale:
    sale = english_award()
    sale.pay()
    if not before_delivery:
        sale.deliver()
    events = sale.m.d.ok(RaiseDispute(settlement=sale.sid, reason="claims missing"),
                         actor=sale.buyer_broker, role="broker")
    raised = events[0]
    assert isinstance(raised, DisputeRaised) and raised.to == (sale.buyer_broker,
                                                                sale.seller_broker, OPERATORS)
    return sale


def resolve(sale: Sale, outcome: str, amount: int = 0, reason: str = "panel decision") -> list:
    return sale.op(ResolveDispute(settlement=sale.sid, outcome=outcome, amount=amount,
                                  reason=reason))


def test_dispute_resolved_by_release():
    sale = disputed()
    assert sale.refused(ResolveDispute(settlement=sale.sid, outcome="release",
                                       reason=" ")) == "reason_required"
    assert sale.refused(ResolveDispute(settlement=sale.sid, outcome="release", amount=5,
                                       reason="x")) == "bad_field"
    events = resolve(sale, "release")
    assert events[0] == DisputeResolved(to=events[0].to, settlement=sale.sid, outcome="release",
                                        amount=0, reason="panel decision")
    released = next(e for e in events if isinstance(e, FundsReleased))
    assert (released.to_seller, released.refunded) == (sale.opened.net, 0)
    assert any(isinstance(e, CertificateIssued) for e in events)
    assert sale.m.state.lots["L1"].status == "settled"


def test_dispute_resolved_by_full_refund_cancels_the_sale():
    sale = disputed(before_delivery=True)             # the seller never delivered
    events = resolve(sale, "refund", reason="no delivery")
    assert next(e for e in events if isinstance(e, DisputeResolved)).amount == sale.opened.total
    assert next(e for e in events if isinstance(e, FundsRefunded)).amount == sale.opened.total
    cancelled = next(e for e in events if isinstance(e, SettlementCancelled))
    assert (cancelled.reason, cancelled.refunded) == ("refund", sale.opened.total)
    assert not any(isinstance(e, (CertificateIssued, LotSettled)) for e in events)
    s = sale.s
    assert (s.status, s.escrow, s.refunded, s.to_seller, s.to_venue) == \
        ("cancelled", 0, sale.opened.total, 0, 0)
    assert sale.m.state.lots["L1"].status == "passed"
    assert exposure(sale.m, sale.buyer) == 0
    assert not sale.m.state.parties[sale.buyer].frozen   # a refund is not a default


def test_dispute_resolved_by_partial_refund_out_of_the_sellers_net():
    sale = disputed()
    net = sale.opened.net
    assert sale.refused(ResolveDispute(settlement=sale.sid, outcome="partial_refund", amount=0,
                                       reason="x")) == "bad_refund"
    assert sale.refused(ResolveDispute(settlement=sale.sid, outcome="partial_refund",
                                       amount=net + 1, reason="x")) == "bad_refund"
    events = resolve(sale, "partial_refund", amount=300 * 100, reason="one patent lapsed")
    released = next(e for e in events if isinstance(e, FundsReleased))
    assert (released.to_seller, released.to_venue, released.refunded) == \
        (net - 30_000, sale.opened.premium + sale.opened.commission, 30_000)
    assert next(e for e in events if isinstance(e, SettlementCompleted))
    certificate = next(e for e in events if isinstance(e, CertificateIssued))
    assert certificate.refunded == 30_000
    assert sale.s.to_seller + sale.s.to_venue + sale.s.refunded == sale.s.paid == sale.opened.total


def test_release_waits_while_the_dispute_is_open_even_after_the_due_date():
    sale = disputed()
    sale.m.tick(sale.opened.due_at + DAY)
    assert not sale.s.overdue                         # paid in full: never overdue
    assert sale.refused(ReleaseFunds(settlement=sale.sid)) == "in_dispute"
    assert sale.refused(DeclareDefault(settlement=sale.sid)) == "already_paid"
