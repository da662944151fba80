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
    sale.m.d.engine.check_invariants = rules >= 4     # rules 3 left two units of one patent
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
