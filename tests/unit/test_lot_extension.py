"""The operator's extension of an open lot's close, and saleroom notices."""

from __future__ import annotations

from types import SimpleNamespace

from exchange.commands import CreateInstrument, ExtendLot, PostNotice
from exchange.events import (BidAccepted, LotAwarded, LotClosed, LotExtended, NoticePosted,
                             SealedBidsRevealed)
from replay import whatif
from tests.unit.auctionkit import DAY, HOUR, MINUTE, T0, USD, Market, of, one

CLOSE = T0 + DAY


def english(**fields):
    m = Market()
    seller = m.seller()
    a, b = m.bidder("Alice"), m.bidder("Bob")
    m.lot("L1", seller=seller, **fields)
    m.tick(T0 + HOUR)
    return m, a, b


def test_an_extension_moves_close_and_hard_end_and_publishes_its_reason():
    m, a, b = english(soft_window=10 * MINUTE, soft_extend=10 * MINUTE,
                      hard_end=CLOSE + 30 * MINUTE)
    m.bid("L1", a, 1_000 * USD, ts=CLOSE - 2 * HOUR)
    events = m.d.ok(ExtendLot(serial="L1", closes_at=CLOSE + HOUR,
                              reason=" gateway outage 10:02-10:40 UTC "))
    extended, notice = one(events, LotExtended), one(events, NoticePosted)
    assert (extended.to, extended.closes_at, extended.hard_end) == \
        ((), CLOSE + HOUR, CLOSE + HOUR + 30 * MINUTE)        # the hard end moves as much
    assert (notice.to, notice.serial, notice.text) == ((), "L1", "gateway outage 10:02-10:40 UTC")
    assert not of(m.tick(CLOSE), LotClosed)                  # the old close passes
    events = m.bid("L1", b, 1_100 * USD, ts=CLOSE + 55 * MINUTE)   # soft close still works
    assert one(events, LotExtended).closes_at == CLOSE + HOUR + 10 * MINUTE
    events = m.tick(CLOSE + HOUR + 10 * MINUTE)
    assert one(events, LotAwarded).paddle == b


def test_an_extension_may_set_the_hard_end_and_is_checked():
    m, a, _ = english()
    ok = m.d.ok(ExtendLot(serial="L1", closes_at=CLOSE + HOUR, hard_end=CLOSE + 2 * HOUR,
                          reason="catalogue corrected"))
    assert one(ok, LotExtended).hard_end == CLOSE + 2 * HOUR
    lot = m.state.lots["L1"]
    for cmd, code in (
            (ExtendLot(serial="L1", closes_at=CLOSE + HOUR, reason="x"), "bad_field"),  # not later
            (ExtendLot(serial="L1", closes_at=CLOSE + 2 * HOUR, reason=" "), "bad_field"),
            (ExtendLot(serial="L1", closes_at=CLOSE + 3 * HOUR, hard_end=CLOSE + 2 * HOUR,
                       reason="x"), "bad_field"),
            (ExtendLot(serial="L1", closes_at=-5, reason="x"), "out_of_range"),
            (ExtendLot(serial="L9", closes_at=CLOSE + 3 * HOUR, reason="x"), "unknown_lot"),
            (ExtendLot(serial="L1", closes_at=CLOSE + 90 * MINUTE, hard_end=CLOSE + 90 * MINUTE,
                       reason="x"), "bad_field"),                  # before the hard end
            (ExtendLot(serial="L1", closes_at=CLOSE + 3 * HOUR, reason="x" * 201), "too_long"),
            (ExtendLot(serial="L1", closes_at=2**63 - 2, reason="x"), "out_of_range")):
        assert m.unchanged(cmd, actor="op", role="operator").code == code, cmd
    assert m.unchanged(ExtendLot(serial="L1", closes_at=CLOSE + 3 * HOUR, reason="x"),
                       actor=m.brokers[a]).code == "not_permitted"
    assert lot.closes_at == CLOSE + HOUR


def test_only_an_open_lot_that_is_not_dutch_is_extended_and_within_its_session():
    m = Market(ends_at=CLOSE + 2 * HOUR)
    seller = m.seller()
    m.bidder("Alice")
    m.lot("L1", seller=seller)                                # opens at T0 + HOUR
    late = ExtendLot(serial="L1", closes_at=CLOSE + HOUR, reason="outage")
    assert m.unchanged(late, actor="op", role="operator").code == "bad_status"  # scheduled
    m.tick(T0 + HOUR)
    assert m.unchanged(ExtendLot(serial="L1", closes_at=CLOSE + 3 * HOUR, reason="outage"),
                       actor="op", role="operator").code == "outside_session"
    m.lot("D1", seller=seller, mechanism="dutch", dutch_start=5_000 * USD,
          dutch_step=100 * USD, dutch_interval=MINUTE, starting_bid=1_000 * USD)
    m.tick(T0 + HOUR + 1)
    assert m.unchanged(ExtendLot(serial="D1", closes_at=CLOSE + HOUR, reason="outage"),
                       actor="op", role="operator").code == "wrong_mechanism"
    m.tick(CLOSE)
    assert m.state.lots["L1"].status != "open"
    assert m.unchanged(late, actor="op", role="operator").code == "bad_status"


def test_a_sealed_lot_extended_reveals_at_its_new_close():
    m = Market()
    seller = m.seller()
    a = m.bidder("Alice")
    m.lot("S1", seller=seller, mechanism="sealed_first")
    m.tick(T0 + HOUR)
    m.bid("S1", a, 1_500 * USD)
    m.d.ok(ExtendLot(serial="S1", closes_at=CLOSE + HOUR, reason="outage"))
    assert not of(m.tick(CLOSE + HOUR - 1), SealedBidsRevealed)
    assert of(m.tick(CLOSE + HOUR), SealedBidsRevealed)


def test_notices_about_a_session_a_lot_or_a_book():
    m, a, _ = english()
    m.d.ok(CreateInstrument(session="S1", instrument="U"))
    m.lot("D1", seller=m.seller("Other"), schedule=False)     # a draft: not published
    for fields in ({}, {"serial": "L1"}, {"instrument": "U"}):
        notice = one(m.d.ok(PostNotice(session="S1", text=" lot 12 withdrawn by the seller ",
                                       **fields)), NoticePosted)
        assert (notice.to, notice.session, notice.text) == ((), "S1",
                                                            "lot 12 withdrawn by the seller")
        assert (notice.serial, notice.instrument) == (fields.get("serial", ""),
                                                      fields.get("instrument", ""))
    for cmd, code in ((PostNotice(session="S9", text="x"), "unknown_session"),
                      (PostNotice(session="S1", serial="L9", text="x"), "unknown_lot"),
                      (PostNotice(session="S1", instrument="V", text="x"), "unknown_instrument"),
                      (PostNotice(session="S1", text="  "), "bad_field"),
                      (PostNotice(session="S1", serial="D1", text="x"), "bad_status")):
        assert m.unchanged(cmd, actor="op", role="operator").code == code, cmd
    assert m.unchanged(PostNotice(session="S1", text="x"), actor=m.brokers[a]).code \
        == "not_permitted"
    assert not of(m.bid("L1", a, 1_000 * USD), NoticePosted)
    assert of(m.bid("L1", a, 1_200 * USD), BidAccepted)


def logged_journal(m: Market) -> SimpleNamespace:
    """A journal source (for `whatif`) of what ``m``'s driver logged."""
    return SimpleNamespace(entries=lambda label="": (
        (None, SimpleNamespace(env=env, events=events)) for env, events in m.d.log))


def test_whatif_reruns_a_lot_with_its_operator_extension():
    m = Market(log=True)
    seller, a, b = m.seller(), m.bidder("Alice"), m.bidder("Bob")
    m.lot("L1", seller=seller)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 1_000 * USD, ts=CLOSE - HOUR)
    m.d.ok(ExtendLot(serial="L1", closes_at=CLOSE + HOUR, reason="gateway outage"))
    m.bid("L1", b, 2_000 * USD, ts=CLOSE + 30 * MINUTE)     # in the extension
    m.tick(CLOSE + HOUR)
    recorded = m.state.lots["L1"].sale.hammer

    report = whatif.run_journal(logged_journal(m), rules="english",
                                viewer=SimpleNamespace(operator=True))
    row, = report.rows
    assert (row["recorded"], row["price"], row["refused"]) == (recorded, recorded, 0)


def test_a_soft_close_keeps_room_to_extend_after_an_extension():
    m, a, _ = english(soft_window=10 * MINUTE, soft_extend=10 * MINUTE,
                      hard_end=CLOSE + HOUR)
    refusal = m.unchanged(ExtendLot(serial="L1", closes_at=CLOSE + 2 * HOUR,
                                    hard_end=CLOSE + 2 * HOUR, reason="x"),
                          actor="op", role="operator")
    assert refusal.code == "bad_field" and "soft close" in refusal.text


def test_no_extension_in_a_closed_session():
    m, _, _ = english()
    m.d.ok(__import__("exchange.commands", fromlist=["CloseSession"]).CloseSession(session="S1"))
    assert m.state.lots["L1"].status == "open"           # bids end; the lot closes in time
    assert m.unchanged(ExtendLot(serial="L1", closes_at=CLOSE + HOUR, reason="x"),
                           actor="op", role="operator").code == "session_closed"


def test_whatif_reruns_the_first_round_of_a_relisted_lot_only():
    from exchange.commands import RelistLot

    m = Market(log=True)
    seller, a, b = m.seller(), m.bidder("Alice"), m.bidder("Bob")
    m.lot("L1", seller=seller, reserve=5_000 * USD, negotiation_window=HOUR)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 1_000 * USD, ts=CLOSE - HOUR)
    m.tick(CLOSE + 2 * HOUR)                               # passed; negotiation over
    assert m.state.lots["L1"].status == "passed"
    m.d.ok(RelistLot(serial="L1", opens_at=CLOSE + 3 * HOUR, closes_at=CLOSE + 5 * HOUR))
    m.tick(CLOSE + 3 * HOUR)
    m.d.ok(ExtendLot(serial="L1", closes_at=CLOSE + 6 * HOUR, reason="outage"))
    m.bid("L1", b, 6_000 * USD, ts=CLOSE + 5 * HOUR + 30 * MINUTE)   # round 2, in its extension
    m.tick(CLOSE + 6 * HOUR)
    assert m.state.lots["L1"].status == "sold"

    report = whatif.run_journal(logged_journal(m), rules="english",
                                viewer=SimpleNamespace(operator=True))
    row, = report.rows
    assert (row["bids"], row["recorded"], row["price"], row["refused"]) == (1, None, None, 0)
    assert row["note"].endswith("relisted: first round only")
