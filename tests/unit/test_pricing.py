"""Pricing by an expert inquiry panel drawn at random."""

from __future__ import annotations

import pytest

from exchange import pricing
from exchange.commands import (CancelPanel, CloseSession, DrawPanel, PublishPriceRange,
                               RecordValuation, RegisterExpert, RetireExpert, ScheduleLot, VetLot,
                               WithdrawLot)
from exchange.events import (ExpertRegistered, LotPassed, PanelDiscarded, PanelDrawn,
                             PriceRangePublished, ValuationRecorded)
from tests.unit.auctionkit import DAY, HOUR, T0, USD, Market, of, one

OPS = ("@operators",)


def market(experts=8, schedule=False):
    m = Market(log=True)
    seller = m.seller()
    m.lot("L1", seller=seller, schedule=schedule)
    ids = []
    for i in range(experts):
        fields = ("printing",) if i % 2 == 0 else ("imaging", "printing") if i % 4 == 1 else ()
        ids.append(one(m.d.ok(RegisterExpert(name=f"Expert {i}", fields=fields)),
                       ExpertRegistered).expert)
    return m, seller, ids


def draw(m, size=5, field="", serial="L1"):
    return one(m.d.ok(DrawPanel(serial=serial, size=size, field=field)), PanelDrawn)


def value(m, expert, low, high, serial="L1"):
    return m.d.ok(RecordValuation(serial=serial, expert=expert, low=low * USD,
                                  high=high * USD))


def test_a_draw_is_private_random_and_recomputable_from_the_journal():
    m, _, ids = market()
    drawn = draw(m)
    assert drawn.to == OPS and drawn.round == 1 and len(set(drawn.experts)) == 5
    assert set(drawn.experts) <= set(ids)
    env = m.d.log[-1][0]                      # the DrawPanel's envelope
    recomputed = sorted(ids, key=lambda e: pricing.draw_rank("L1", 1, env.seq, env.ts, e))[:5]
    assert drawn.experts == tuple(recomputed)
    again, _, _ = market()                    # the same journal draws the same panel
    assert draw(again).experts == drawn.experts


def test_a_field_and_retirement_narrow_the_pool():
    m, _, ids = market()
    m.d.ok(RetireExpert(expert=ids[0]))
    drawn = draw(m, size=4, field="imaging")   # 1 and 5 know imaging; 3 and 7 know any field
    assert set(drawn.experts) == {ids[1], ids[3], ids[5], ids[7]}
    experts = pricing.pool(m.state).experts
    assert all(not experts[e].fields or "imaging" in experts[e].fields
               for e in drawn.experts)
    m2, _, ids2 = market()
    m2.d.ok(RetireExpert(expert=ids2[1]))
    assert m2.unchanged(DrawPanel(serial="L1", size=4, field="imaging"),
                        actor="op", role="operator").code == "too_few_experts"
    assert m2.unchanged(RetireExpert(expert=ids2[1]), actor="op",
                        role="operator").code == "unknown_expert"


def test_the_range_is_the_medians_and_reaches_the_seller_first_then_the_public():
    m, seller, _ = market()
    panel = draw(m).experts
    for expert, (low, high) in zip(panel, ((300, 900), (100, 400), (200, 500))):
        recorded = one(value(m, expert, low, high), ValuationRecorded)
        assert recorded.to == OPS
    value(m, panel[0], 250, 900)                 # a revision replaces the first range
    told = one(m.d.ok(PublishPriceRange(serial="L1")), PriceRangePublished)
    assert told.to == ("seller-broker", "@operators")          # the lot is not published yet
    assert (told.low, told.high, told.valuations, told.panel, told.currency) == \
        (200 * USD, 500 * USD, 3, 5, "USD")
    m.d.ok(VetLot(serial="L1", score=80, approved=True))
    listed = one(m.d.ok(ScheduleLot(serial="L1")), PriceRangePublished)
    assert listed.to == () and (listed.low, listed.high) == (200 * USD, 500 * USD)
    assert not of(m.d.ok(ScheduleLot(serial="L1", opens_at=T0 + 2 * HOUR)), PriceRangePublished)
    # nothing public names an expert
    public = [e for _, events in m.d.log for e in events if not e.to]
    assert not [e for e in public if type(e).__name__ in ("PanelDrawn", "ValuationRecorded",
                                                          "ExpertRegistered")]


def test_an_even_count_takes_the_lower_median_and_half_the_panel_must_value():
    m, _, _ = market(schedule=True)
    panel = draw(m, size=4).experts
    value(m, panel[0], 100, 200)
    assert m.unchanged(PublishPriceRange(serial="L1"), actor="op",
                       role="operator").code == "too_few_valuations"
    value(m, panel[1], 300, 600)
    told = one(m.d.ok(PublishPriceRange(serial="L1")), PriceRangePublished)
    assert told.to == () and (told.low, told.high) == (100 * USD, 200 * USD)


def test_one_open_panel_a_lot_and_a_new_round_after_a_pass():
    m, seller, _ = market(schedule=True)
    panel = draw(m, size=3).experts
    assert m.unchanged(DrawPanel(serial="L1", size=3), actor="op",
                       role="operator").code == "panel_open"
    value(m, panel[0], 100, 200)
    value(m, panel[1], 120, 220)
    m.d.ok(PublishPriceRange(serial="L1"))
    m.tick(T0 + HOUR)                           # the lot opens: no panel while it runs
    assert m.unchanged(DrawPanel(serial="L1", size=3), actor="op",
                       role="operator").code == "bad_status"
    assert one(m.tick(T0 + DAY), LotPassed)     # no bids: passed
    second = draw(m, size=3)
    assert second.round == 2
    assert m.unchanged(RecordValuation(serial="L1", expert=-1, low=1, high=2), actor="op",
                       role="operator").code == "not_on_panel"


@pytest.mark.parametrize("make, code", [
    (lambda ids: RegisterExpert(name=" "), "bad_field"),
    (lambda ids: RegisterExpert(name="A", fields=("x", "x")), "bad_field"),
    (lambda ids: RegisterExpert(name="A", fields=(" x",)), "bad_field"),
    (lambda ids: RegisterExpert(name="A", fields=tuple(f"f{i}" for i in range(21))), "too_long"),
    (lambda ids: DrawPanel(serial="L1", size=0), "non_positive"),
    (lambda ids: DrawPanel(serial="L1", size=16), "out_of_range"),
    (lambda ids: DrawPanel(serial="L9", size=3), "unknown_lot"),
    (lambda ids: DrawPanel(serial="L1", size=9), "too_few_experts"),
    (lambda ids: RecordValuation(serial="L1", expert=ids[0], low=5, high=6), "no_panel"),
    (lambda ids: PublishPriceRange(serial="L1"), "no_panel"),
])
def test_bad_commands_are_refused_and_change_nothing(make, code):
    m, _, ids = market()
    assert m.unchanged(make(ids), actor="op", role="operator").code == code


def test_brokers_have_no_say_and_a_valuation_is_checked():
    m, _, ids = market()
    panel = draw(m, size=3).experts
    for cmd in (RegisterExpert(name="Mine"), RetireExpert(expert=ids[0]),
                DrawPanel(serial="L1", size=3),
                RecordValuation(serial="L1", expert=panel[0], low=1, high=2),
                PublishPriceRange(serial="L1")):
        assert m.unchanged(cmd, actor="seller-broker").code == "not_permitted", cmd
    for low, high, code in ((0, 5, "non_positive"), (6, 5, "bad_field"),
                            (1, 10**16, "out_of_range")):
        assert m.unchanged(RecordValuation(serial="L1", expert=panel[0], low=low, high=high),
                           actor="op", role="operator").code == code


def test_the_board_shows_the_published_range():
    from rich.console import Console

    from gateway.board import Board

    m, _, _ = market(schedule=True)
    panel = draw(m, size=1).experts
    value(m, panel[0], 40_000, 80_000)
    m.d.ok(PublishPriceRange(serial="L1"))
    board = Board(session="S1")
    board.apply(e for _, events in m.d.log for e in events if not e.to)
    assert board.lots["L1"].price_range == (40_000 * USD, 80_000 * USD)
    console = Console(width=220, record=True)
    console.print(board.render(T0))
    text = console.export_text()
    assert "panel range" in text and "40,000.00 USD" in text and "80,000.00 USD" in text


def test_the_draw_depends_on_the_exchanges_time_stamp_which_no_sender_knows():
    m, _, ids = market()
    seq = m.d.seq + 1
    panels = {tuple(sorted(ids, key=lambda e: pricing.draw_rank("L1", 1, seq, T0 + ns, e))[:3])
              for ns in range(20)}
    assert len(panels) > 1                  # the same seq, other nanoseconds: other panels


def test_a_panel_can_be_cancelled_and_ends_when_the_lot_opens_or_is_withdrawn():
    m, _, _ = market(schedule=True)
    draw(m, size=3)
    assert m.unchanged(CancelPanel(serial="L1", reason=" "), actor="op",
                       role="operator").code == "bad_field"
    ended = one(m.d.ok(CancelPanel(serial="L1", reason="experts did not answer")),
                PanelDiscarded)
    assert ended.to == OPS and (ended.round, ended.reason) == (1, "experts did not answer")
    assert m.unchanged(CancelPanel(serial="L1", reason="x"), actor="op",
                       role="operator").code == "no_panel"
    panel = draw(m, size=3)
    assert panel.round == 2
    value(m, panel.experts[0], 100, 200)
    ended = one(m.tick(T0 + HOUR), PanelDiscarded)           # the lot opens
    assert ended.reason == "the lot opened"
    assert one(m.tick(T0 + DAY), LotPassed)
    draw(m, size=2, serial="L1")                               # after the pass: round 3
    m.d.ok(WithdrawLot(serial="L1", reason="seller changed its mind"))
    assert pricing.pool(m.state).panels["L1"].discarded


def test_a_retired_expert_no_longer_counts_on_its_open_panel():
    m, _, _ = market()
    panel = draw(m, size=3).experts
    value(m, panel[0], 100, 200)
    value(m, panel[1], 300, 400)
    m.d.ok(RetireExpert(expert=panel[0]))                   # a conflict of interest found
    assert m.unchanged(RecordValuation(serial="L1", expert=panel[0], low=1, high=2),
                       actor="op", role="operator").code == "unknown_expert"
    assert m.unchanged(PublishPriceRange(serial="L1"), actor="op",
                       role="operator").code == "too_few_valuations"     # 1 of 3 now
    value(m, panel[2], 500, 600)
    told = one(m.d.ok(PublishPriceRange(serial="L1")), PriceRangePublished)
    assert (told.low, told.high, told.valuations) == (300 * USD, 400 * USD, 2)


def test_pricing_stops_with_the_session():
    m, _, _ = market(schedule=True)
    m.tick(T0 + HOUR)
    assert one(m.tick(T0 + DAY), LotPassed)
    draw(m, size=2)                                 # after the pass
    ended = one(m.d.ok(CloseSession(session="S1")), PanelDiscarded)
    assert (ended.to, ended.reason) == (OPS, "the session closed")
    assert m.unchanged(DrawPanel(serial="L1", size=3), actor="op",
                       role="operator").code == "session_closed"


def test_the_pool_takes_one_seat_a_person_and_named_fields(monkeypatch):
    m, _, _ = market(experts=2)
    for cmd, code in ((RegisterExpert(name="Expert 0"), "expert_exists"),
                      (RegisterExpert(name="Dr. X", fields=("",)), "bad_field"),
                      (RegisterExpert(name="Dr.\nX"), "bad_field"),
                      (RegisterExpert(name=" Expert 1"), "bad_field"),
                      (RegisterExpert(name="D" * 201), "too_long")):
        assert m.unchanged(cmd, actor="op", role="operator").code == code, cmd
    monkeypatch.setattr(pricing, "MAX_EXPERTS", 2)
    assert m.unchanged(RegisterExpert(name="Dr. Y"), actor="op",
                       role="operator").code == "too_many_experts"
