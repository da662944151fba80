"""The demo session, run in-process on simulated time: every mechanism ends
the way the story says, and the catalogue is the one promised."""

from collections import Counter

from gateway.demo import PLAN, DemoSession, InProcessVenue
from gateway.demo_catalogue import FIELDS, build_catalogue


def test_catalogue_is_1070_patents_in_45_lots_across_12_fields():
    catalogue = build_catalogue()
    assert len(catalogue) == 45
    assert sum(len(lot.patents) for lot in catalogue) == 1070
    assert {lot.field for lot in catalogue} == set(FIELDS)
    assert len({p.number for lot in catalogue for p in lot.patents}) == 1070


def test_demo_session_uses_every_mechanism_and_ends_each_lot():
    venue = InProcessVenue()
    report = DemoSession(venue).run()
    outcomes = Counter(row["outcome"] for row in report.lots)
    mechanisms = {row["mechanism"] for row in report.lots}
    assert mechanisms == set(PLAN) | {"reverse"}
    assert outcomes["sold (auction)"] > 20
    assert outcomes["sold in negotiation"] >= 1
    assert outcomes["passed"] >= 1
    assert outcomes["sold (ask)"] >= 1 and outcomes["sold (book)"] >= 1
    assert "unsold" not in outcomes
    assert report.units_traded > 0 and report.halts == 1 and report.notices == 1
    assert report.documents == 2 * 45 and report.ndas >= 45
    assert report.documents_opened == report.ndas
    assert report.valued == 9                           # lots 3, 8, 13, ... of 45
    assert report.settled >= 5 and report.certificates == report.settled
    assert report.defaults == 1 and report.reawarded == 1
    assert report.units_payers >= 1 and report.units_paid > 0
    lp = report.liquidity                               # quoted but for the halt and call
    assert lp is not None and 0 < lp.quoting_ns < lp.trading_ns and lp.met
    assert outcomes["sold (reaward)"] == 1
    for row in report.lots:
        if "hammer" in row:
            assert row["total"] == row["hammer"] + row["premium"]
            assert row["display_currency"] == "CNY" and row["display_total"] > row["total"]


def test_demo_is_deterministic_in_process():
    first = DemoSession(InProcessVenue()).run()
    second = DemoSession(InProcessVenue()).run()
    assert first.lots == second.lots


def test_demo_money_keeps_cny_decimals_and_drops_whole_dollar_cents():
    from gateway.demo_cli import money
    assert money(438_253_200, "CNY") == "¥4,382,532.00"
    assert money(438_253_222, "CNY") == "¥4,382,532.22"
    assert money(22_920_000) == "$229,200" and money(22_920_050) == "$229,200.50"
