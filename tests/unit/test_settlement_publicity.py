"""Publicity of state-institution transfers at an agreed price: the public
notice, objections, the no-objection certificate, and release held until
the period is over."""

from __future__ import annotations

from exchange.commands import (DeclareDefault, MarkStateTransfer, RecordObjection, ReleaseFunds,
                               ResolveObjection, SetSettlementRules)
from exchange.events import (OPERATORS, CertificateIssued, CertificateRecorded, FundsRefunded,
                             ObjectionRecorded, ObjectionResolved, PublicityEnded,
                             PublicityStarted, SettlementCancelled)
from exchange.settlement import DEFAULT_RULES
from tests.unit.auctionkit import DAY, HOUR, one
from tests.unit.test_settlement import (OP, PATENTS, Sale, agreement_sale, english_award,
                                        exposure, negotiated_sale)


def start(sale: Sale) -> PublicityStarted:
    return one(sale.op(MarkStateTransfer(settlement=sale.sid)), PublicityStarted)


def settle_up_to_release(sale: Sale) -> None:
    sale.pay()
    sale.deliver()
    sale.confirm()


def test_a_state_institution_transfer_is_published_with_paddles_only():
    sale = agreement_sale(state_institution=True)
    s = sale.s
    assert s.publicity == "running"
    assert s.publicity_ends == s.sold_at + DEFAULT_RULES.publicity_period
    m = sale.m
    settle_up_to_release(sale)
    assert not m.tick(s.publicity_ends - 1)
    assert sale.refused(ReleaseFunds(settlement=sale.sid)) == "in_publicity"
    events = m.tick(s.publicity_ends)
    ended = one(events, PublicityEnded)
    assert (ended.outcome, ended.objections, ended.to) == ("no_objection", 0, ())
    public = one(events, CertificateIssued)
    assert (public.kind, public.to, public.patents, public.price) == \
        ("no_objection", (), PATENTS, 8_000 * 100)
    assert one(events, CertificateRecorded).to == (OPERATORS,)
    assert s.publicity == "cleared"
    events = sale.release()
    assert one(events, CertificateIssued).kind == "transaction"


def test_the_publicity_notice_is_public_and_names_no_party():
    sale = negotiated_sale()
    notice = start(sale)
    assert notice.to == ()
    assert (notice.settlement, notice.price, notice.buyer_paddle) == \
        (sale.sid, sale.opened.price, sale.opened.buyer_paddle)
    fields = set(notice.__struct_fields__)
    assert not fields & {"buyer", "seller", "buyer_name", "seller_name"}
    assert sale.refused(MarkStateTransfer(settlement=sale.sid)) == "already_published"


def test_objections_hold_release_until_an_operator_dismisses_them():
    sale = negotiated_sale()
    m = sale.m
    m.d.ok(SetSettlementRules(session="S1", lot="L1", payment_term=DAY, reaward_window=DAY,
                              publicity_period=5 * DAY), **OP)
    notice = start(sale)
    assert notice.ends_at == m.d.ts + 5 * DAY         # the lot's rules at the time of marking
    assert sale.refused(ResolveObjection(settlement=sale.sid, action="dismiss",
                                         reason="x")) == "in_publicity"
    assert sale.refused(RecordObjection(settlement=sale.sid, objector="", reason="x")) == \
        "reason_required"
    recorded = one(sale.op(RecordObjection(settlement=sale.sid, objector="Institute staff",
                                           reason="price below valuation")), ObjectionRecorded)
    assert recorded.to == (sale.buyer_broker, sale.seller_broker, OPERATORS)
    assert recorded.objections == 1
    settle_up_to_release(sale)
    ended = one(m.tick(notice.ends_at), PublicityEnded)
    assert (ended.outcome, ended.objections) == ("objected", 1)
    assert sale.s.publicity == "objected"
    assert sale.refused(RecordObjection(settlement=sale.sid, objector="a", reason="b")) == \
        "not_in_publicity"
    assert sale.refused(ReleaseFunds(settlement=sale.sid)) == "in_publicity"
    assert sale.refused(ResolveObjection(settlement=sale.sid, action="dismiss", reason="")) == \
        "reason_required"
    one(sale.op(ResolveObjection(settlement=sale.sid, action="dismiss",
                                 reason="valuation report on file")), ObjectionResolved)
    events = sale.release()
    assert one(events, CertificateIssued).kind == "transaction"
    assert sale.refused(ResolveObjection(settlement=sale.sid, action="dismiss", reason="x")) == \
        "settlement_closed"


def test_an_upheld_objection_cancels_the_sale_and_refunds_the_buyer():
    sale = agreement_sale(state_institution=True)
    sale.pay()
    sale.op(RecordObjection(settlement=sale.sid, objector="Ministry", reason="no approval"))
    sale.m.tick(sale.s.publicity_ends + HOUR)
    events = sale.op(ResolveObjection(settlement=sale.sid, action="uphold", reason="no approval"))
    assert one(events, FundsRefunded).amount == sale.opened.total
    assert one(events, SettlementCancelled).reason == "objection"
    assert sale.s.status == "cancelled" and not sale.m.state.parties[sale.buyer].frozen


def test_a_cancelled_transfer_withdraws_its_notice_publicly():
    sale = negotiated_sale()
    notice = start(sale)
    sale.m.tick(sale.opened.due_at)
    events = sale.op(DeclareDefault(settlement=sale.sid, next="relist"))
    ended = one(events, PublicityEnded)
    assert (ended.outcome, ended.to) == ("withdrawn", ())
    assert not [e for e in sale.m.tick(notice.ends_at) if isinstance(e, PublicityEnded)]
    assert exposure(sale.m, sale.buyer) == 0


def test_only_sales_at_an_agreed_price_are_published():
    sale = english_award()
    assert sale.refused(MarkStateTransfer(settlement=sale.sid)) == "not_publicizable"
    assert sale.refused(MarkStateTransfer(settlement=sale.sid), actor="broker-Alice",
                        role="broker") == "not_permitted"
    assert sale.refused(RecordObjection(settlement=sale.sid, objector="a", reason="b")) == \
        "not_in_publicity"
    assert sale.refused(ResolveObjection(settlement=sale.sid, action="uphold", reason="b")) == \
        "no_objections"
