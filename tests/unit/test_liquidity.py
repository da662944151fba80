"""Liquidity providers on a units book: appointment, the time measured, reports."""

from __future__ import annotations

from exchange.commands import (AppointLiquidityProvider, CloseInstrument, CloseSession,
                               CreateInstrument, EndLiquidityProvider, HaltTrading,
                               ReportLiquidity, ResumeTrading, ReviewCredit, StartCall, Uncross)
from exchange.engine import Engine
from exchange.events import LiquidityProviderAppointed, LiquidityReport
from exchange.invariants import check
from tests.unit.auctionkit import one
from tests.unit.test_market import Market, of, patent_market, rejected

S = 10**9                                    # a second in ns


def appoint(mk: Market, broker: str = "b1", max_spread: int = 10, min_qty: int = 5,
            presence_bp: int = 8_000) -> list:
    return mk.d.ok(AppointLiquidityProvider(session="S", instrument="U",
                                            paddle=mk.paddle[broker], max_spread=max_spread,
                                            min_qty=min_qty, presence_bp=presence_bp))


def report(mk: Market, reset: bool = False) -> list[LiquidityReport]:
    return of(mk.d.ok(ReportLiquidity(session="S", instrument="U", reset=reset)),
              LiquidityReport)


def later(mk: Market, seconds: int) -> None:
    mk.d.tick(mk.d.ts + seconds * S)


def test_the_appointment_is_private_and_counts_the_orders_resting_already():
    mk = Market()
    mk.order("b1", 1, "buy", 5, 100)
    mk.order("b1", 2, "sell", 5, 108)
    start = mk.d.ts
    appointed = one(appoint(mk), LiquidityProviderAppointed)
    assert "b1" in appointed.to and "b2" not in appointed.to     # never public
    assert (appointed.paddle, appointed.party, appointed.max_spread, appointed.min_qty,
            appointed.presence_bp) == (mk.paddle["b1"], mk.party["b1"], 10, 5, 8_000)
    later(mk, 60)
    found = one(report(mk), LiquidityReport)
    assert (found.since, found.until) == (start, start + 60 * S)
    assert (found.trading_ns, found.quoting_ns, found.presence_bp, found.met,
            found.final) == (60 * S, 60 * S, 10_000, True, False)
    assert found.to == appointed.to


def test_presence_is_the_time_the_quote_met_the_obligation_to_the_nanosecond():
    mk = Market()
    appoint(mk, presence_bp=5_000)
    start = mk.d.ts
    mk.order("b1", 1, "buy", 5, 100)             # one side only: not quoting
    mk.d.tick(start + 10 * S)
    mk.order("b1", 2, "sell", 5, 110)            # spread 10: quoting from here
    mk.d.tick(start + 70 * S)
    mk.modify("b1", 2, 111, 5)                   # spread 11: too wide
    mk.d.tick(start + 100 * S)
    found = one(report(mk), LiquidityReport)
    assert (found.trading_ns, found.quoting_ns) == (100 * S, 60 * S)
    assert (found.presence_bp, found.required_bp, found.met) == (6_000, 5_000, True)
    mk.d.tick(start + 200 * S)
    found = one(report(mk), LiquidityReport)
    assert (found.trading_ns, found.quoting_ns, found.presence_bp, found.met) == (
        200 * S, 60 * S, 3_000, False)


def test_the_quote_for_the_obligation_reaches_min_qty_from_the_providers_own_orders():
    mk = Market()
    mk.order("b2", 1, "buy", 50, 104)            # another's better bid does not count
    mk.order("b1", 1, "buy", 3, 100)
    mk.order("b1", 2, "buy", 2, 99)              # 5 bought at 99 at worst
    mk.order("b1", 3, "sell", 5, 105)
    appoint(mk, max_spread=5, min_qty=5)
    provider = mk.state.books["U"].providers[mk.paddle["b1"]]
    assert not provider.quoting                  # 105 - 99 = 6
    mk.cancel("b1", 2)
    mk.order("b1", 4, "buy", 2, 101)             # now 5 at 100 at worst: 5 wide
    assert provider.quoting
    mk.order("b2", 2, "buy", 1, 105)             # takes 1 of the ask: 4 left, short
    assert not provider.quoting
    mk.order("b1", 5, "sell", 1, 106)            # 5 sold at 106 at worst: 6 wide
    assert not provider.quoting
    mk.modify("b1", 5, 105, 1)
    assert provider.quoting


def test_fills_by_others_end_quoting_at_the_time_of_the_trade():
    mk = Market()
    appoint(mk, presence_bp=10_000)
    start = mk.d.ts
    mk.order("b1", 1, "buy", 5, 100)
    mk.order("b1", 2, "sell", 5, 101)
    mk.d.tick(start + 30 * S)
    events = mk.d.send(mk_order(mk, "b2", 1, "sell", 5, 100), actor="b2", role="broker",
                       ts=start + 30 * S)
    assert not rejected(events)
    mk.d.tick(start + 90 * S)
    mk.order("b1", 1, "buy", 5, 100)             # the filled id again: indexed anew
    mk.d.tick(start + 100 * S)
    found = one(report(mk), LiquidityReport)
    assert (found.trading_ns, found.quoting_ns) == (100 * S, 40 * S)
    assert found.presence_bp == 4_000 and not found.met


def mk_order(mk: Market, broker: str, oid: int, side: str, qty: int, price: int):
    from exchange.commands import PlaceOrder
    return PlaceOrder(session="S", instrument="U", paddle=mk.paddle[broker], order=oid,
                      side=side, qty=qty, price=price)


def test_halts_and_call_periods_are_not_trading_time():
    mk = Market()
    mk.order("b1", 1, "buy", 5, 100)
    mk.order("b1", 2, "sell", 5, 101)
    appoint(mk)
    start = mk.d.ts
    mk.d.tick(start + 10 * S)
    mk.d.ok(HaltTrading(session="S", instrument="U", reason="validity challenge"))
    mk.d.tick(start + 50 * S)
    mk.d.ok(ResumeTrading(session="S", instrument="U", phase="call"))
    mk.d.tick(start + 60 * S)
    mk.d.ok(Uncross(session="S", instrument="U"))
    mk.d.tick(start + 70 * S)
    mk.d.ok(StartCall(session="S", instrument="U"))
    mk.d.tick(start + 75 * S)
    found = one(report(mk), LiquidityReport)
    assert (found.trading_ns, found.quoting_ns) == (20 * S, 20 * S)
    assert found.until == start + 75 * S


def test_an_expiring_order_stops_quoting_when_the_clock_says_so():
    mk = Market()
    appoint(mk)
    start = mk.d.ts
    mk.order("b1", 1, "buy", 5, 100, tif="gtd", expires=start + 20 * S)
    mk.order("b1", 2, "sell", 5, 101)
    mk.d.tick(start + 25 * S)                    # fires the expiry, due at 20 s (rules 6;
    mk.d.tick(start + 40 * S)                    # rules 5 counted to 25 s: test_rules_6)
    found = one(report(mk), LiquidityReport)
    assert (found.trading_ns, found.quoting_ns) == (40 * S, 20 * S)


def test_reset_starts_a_new_period_and_end_reports_for_the_last_time():
    mk = Market()
    appoint(mk, "b1")
    appoint(mk, "b2", presence_bp=1)
    start = mk.d.ts
    mk.order("b1", 1, "buy", 5, 100)
    mk.order("b1", 2, "sell", 5, 101)
    mk.d.tick(start + 10 * S)
    first = report(mk, reset=True)
    assert [(r.paddle, r.quoting_ns, r.trading_ns) for r in first] == [
        (mk.paddle["b1"], 10 * S, 10 * S), (mk.paddle["b2"], 0, 10 * S)]
    assert [r.to for r in first] != [first[0].to] * 2          # each to its own broker
    mk.d.tick(start + 15 * S)
    ended = one(mk.d.ok(EndLiquidityProvider(session="S", instrument="U",
                                             paddle=mk.paddle["b1"])), LiquidityReport)
    assert (ended.since, ended.until, ended.trading_ns, ended.quoting_ns, ended.final) == (
        start + 10 * S, start + 15 * S, 5 * S, 5 * S, True)
    assert [r.paddle for r in report(mk)] == [mk.paddle["b2"]]
    refused = mk.d.refused(EndLiquidityProvider(session="S", instrument="U",
                                                paddle=mk.paddle["b1"]))
    assert refused.code == "not_a_provider"


def test_a_closing_book_or_session_reports_every_provider_for_the_last_time():
    mk = Market()
    appoint(mk, "b1")
    appoint(mk, "b2")
    mk.order("b1", 1, "buy", 5, 100)
    mk.d.tick(mk.d.ts + 5 * S)
    finals = of(mk.d.ok(CloseInstrument(session="S", instrument="U")), LiquidityReport)
    assert [(r.paddle, r.final, r.trading_ns) for r in finals] == [
        (mk.paddle["b1"], True, 5 * S), (mk.paddle["b2"], True, 5 * S)]
    assert not mk.state.books["U"].providers
    assert mk.d.refused(ReportLiquidity(session="S", instrument="U")).code == "no_providers"
    mk.d.ok(CreateInstrument(session="S", instrument="V"))
    mk.d.ok(AppointLiquidityProvider(session="S", instrument="V", paddle=mk.paddle["b3"],
                                     max_spread=1, min_qty=1, presence_bp=1))
    mk.d.tick(mk.d.ts + 7 * S)
    finals = of(mk.d.ok(CloseSession(session="S")), LiquidityReport)
    assert [(r.instrument, r.final, r.trading_ns) for r in finals] == [("V", True, 7 * S)]


def test_a_frozen_or_disapproved_provider_stops_quoting():
    mk = Market()
    appoint(mk)
    mk.order("b1", 1, "buy", 5, 100)
    mk.order("b1", 2, "sell", 5, 101)
    provider = mk.state.books["U"].providers[mk.paddle["b1"]]
    assert provider.quoting
    mk.d.ok(ReviewCredit(party=mk.party["b1"], approved=False))
    assert not provider.quoting and not provider.orders


def test_refusals():
    mk = Market()
    paddle = mk.paddle["b1"]

    def cmd(**kw):
        fields = dict(session="S", instrument="U", paddle=paddle, max_spread=10, min_qty=5,
                      presence_bp=8_000)
        fields.update(kw)
        return AppointLiquidityProvider(**fields)
    assert mk.refused("b1", cmd()).code == "not_permitted"     # a broker cannot
    assert mk.d.refused(cmd(instrument="X")).code == "unknown_instrument"
    assert mk.d.refused(cmd(paddle=999)).code == "unknown_paddle"
    assert mk.d.refused(cmd(max_spread=0)).code == "non_positive"
    assert mk.d.refused(cmd(min_qty=-1)).code == "non_positive"
    assert mk.d.refused(cmd(presence_bp=0)).code == "bad_field"
    assert mk.d.refused(cmd(presence_bp=10_001)).code == "bad_field"
    assert mk.d.refused(cmd(max_spread=10**16)).code == "out_of_range"
    appoint(mk)
    assert mk.d.refused(cmd()).code == "provider_exists"
    assert mk.refused("b1", ReportLiquidity(session="S", instrument="U")).code == "not_permitted"
    assert mk.refused("b1", EndLiquidityProvider(session="S", instrument="U",
                                                 paddle=paddle)).code == "not_permitted"
    mk.d.ok(CloseInstrument(session="S", instrument="U"))
    assert mk.d.refused(cmd()).code == "instrument_closed"


def test_a_patent_book_has_no_providers():
    mk = patent_market()
    refused = mk.d.refused(AppointLiquidityProvider(
        session="S", instrument="P1", paddle=mk.paddle["b3"], max_spread=1, min_qty=1,
        presence_bp=1))
    assert refused.code == "wrong_kind"


def test_providers_survive_a_snapshot_and_keep_counting():
    mk = Market()
    appoint(mk)
    mk.order("b1", 1, "buy", 5, 100)
    mk.order("b1", 2, "sell", 5, 101)
    start = mk.d.ts
    restored = Engine.restore(mk.d.engine.snapshot())
    restored.check_invariants = True
    check(restored.state)
    provider = restored.state.books["U"].providers[mk.paddle["b1"]]
    book = restored.state.books["U"].book
    assert provider.orders[1] is book.orders[(mk.paddle["b1"], 1)]     # one object, as before
    mk.d.engine = restored
    mk.d.tick(start + 9 * S)
    found = one(report(mk), LiquidityReport)
    assert (found.trading_ns, found.quoting_ns) == (9 * S, 9 * S)
