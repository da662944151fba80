"""Trading halts on a book: `HaltTrading` and `ResumeTrading`."""

from __future__ import annotations

import pytest

from exchange.commands import (CloseSession, HaltTrading, IssueUnits, MassCancel, PlaceOrder,
                               ResumeTrading, SetPriceRules, StartCall, Uncross)
from exchange.engine import Engine
from exchange.invariants import check
from exchange.events import (CallUncrossed, DepthChanged, IndicativePrice, OrderCancelled,
                             PhaseChanged, QuoteChanged, TradeExecuted, TradingHalted)
from tests.unit.auctionkit import one
from tests.unit.test_market import Market, of, rejected


def halt(mk: Market, reason: str = "validity challenge filed") -> list:
    return mk.d.ok(HaltTrading(session="S", instrument="U", reason=reason))


def resume(mk: Market, phase: str = "continuous") -> list:
    return mk.d.ok(ResumeTrading(session="S", instrument="U", phase=phase))


def test_a_halt_is_public_with_its_reason_and_refuses_new_and_changed_orders():
    mk = Market()
    mk.order("b1", 1, "sell", 5, 500)
    mk.order("b2", 1, "buy", 5, 400)
    events = halt(mk, "  validity challenge filed ")
    assert [type(e).__name__ for e in events] == ["TradingHalted", "PhaseChanged"]
    halted = one(events, TradingHalted)
    assert (halted.to, halted.instrument, halted.reason) == ((), "U", "validity challenge filed")
    assert one(events, PhaseChanged).phase == "halted" and mk.state.books["U"].phase == "halted"
    refusal = mk.refused("b2", PlaceOrder(session="S", instrument="U", paddle=mk.paddle["b2"],
                                          order=2, side="buy", qty=1, price=500))
    assert refusal.code == "instrument_halted"
    assert "halted (validity challenge filed)" in refusal.text
    assert rejected(mk.modify("b2", 1, 500, 5)) == "instrument_halted"     # would trade
    assert rejected(mk.modify("b2", 1, 400, 2)) == "instrument_halted"     # even a reduction
    assert mk.state.books["U"].book.best_ask() == 500                     # nothing traded


def test_a_halted_book_still_cancels_expires_and_mass_cancels_and_quotes():
    mk = Market()
    mk.order("b1", 1, "sell", 5, 500)
    mk.order("b1", 2, "sell", 5, 510)
    mk.order("b2", 1, "buy", 5, 400)
    mk.order("b3", 1, "buy", 2, 390, tif="gtd", expires=mk.d.ts + 10 * 10**9)
    halt(mk)
    events = mk.cancel("b1", 1)
    assert not rejected(events) and one(events, OrderCancelled).reason == "requested"
    assert [(d.price, d.qty) for d in of(events, DepthChanged)] == [(500, 0)]
    quote = one(events, QuoteChanged)                        # the quote stays true
    assert (quote.bid, quote.ask) == (400, 510)
    events = mk.d.ok(MassCancel(session="S", instrument="U", paddle=mk.paddle["b2"]),
                     actor="b2", role="broker")
    assert one(events, OrderCancelled).reason == "mass_cancel"
    events = mk.d.tick(mk.d.ts + 11 * 10**9)                 # the GTD order expires
    assert one(events, OrderCancelled).reason == "expired"
    assert mk.state.books["U"].phase == "halted"
    events = resume(mk)
    assert [e.phase for e in of(events, PhaseChanged)] == ["continuous"]
    assert not of(events, QuoteChanged)                      # it was kept up to date
    assert mk.state.books["U"].quote == (0, 0, 510, 5)
    assert not rejected(mk.order("b2", 3, "buy", 5, 510))


def test_the_operator_may_change_rules_and_units_while_halted_and_resume_into_a_call():
    mk = Market()
    mk.order("b1", 1, "sell", 5, 500)
    halt(mk)
    mk.d.ok(SetPriceRules(session="S", instrument="U", tick=10))
    mk.d.ok(IssueUnits(session="S", instrument="U", paddle=mk.paddle["b3"], qty=10))
    assert mk.d.refused(StartCall(session="S", instrument="U")).code == "instrument_halted"
    events = resume(mk, "call")
    assert one(events, PhaseChanged).phase == "call"
    assert not rejected(mk.order("b2", 1, "buy", 5, 520))   # crosses: a call collects it
    assert of(mk.order("b3", 1, "buy", 1, 510), IndicativePrice)
    events = mk.d.ok(Uncross(session="S", instrument="U"))
    assert one(events, CallUncrossed).volume == 5
    assert mk.state.books["U"].phase == "continuous"


def test_a_halt_during_a_call_reopens_only_in_a_call():
    mk = Market(call=True)
    mk.order("b1", 1, "sell", 5, 500)
    mk.order("b2", 1, "buy", 5, 520)                          # crossed, in the call
    mk.order("b3", 1, "buy", 1, 490, tif="ioc")               # an IOC waits for the uncross
    halt(mk)
    check(mk.state)                                          # a crossed, halted book is sound
    refusal = mk.d.refused(ResumeTrading(session="S", instrument="U"))
    assert refusal.code == "wrong_phase" and "resume into a call" in refusal.text
    assert rejected(mk.cancel("b2", 1)) is None               # no longer crossed ...
    assert mk.d.refused(ResumeTrading(session="S", instrument="U")).code == "wrong_phase"
    assert rejected(mk.cancel("b3", 1)) is None               # ... and no call order left
    events = resume(mk)
    assert one(events, PhaseChanged).phase == "continuous"
    assert not of(events, TradeExecuted)


def test_halts_are_the_operators_and_checked():
    mk = Market()
    assert mk.refused("b1", HaltTrading(session="S", instrument="U", reason="x")).code \
        == "not_permitted"
    assert mk.d.refused(HaltTrading(session="S", instrument="U", reason=" ")).code \
        == "bad_field"
    assert mk.d.refused(HaltTrading(session="S", instrument="X", reason="x")).code \
        == "unknown_instrument"
    assert mk.d.refused(ResumeTrading(session="S", instrument="U")).code == "wrong_phase"
    assert mk.d.refused(HaltTrading(session="S", instrument="U", reason="x" * 201)).code \
        == "too_long"
    halt(mk, "x" * 200)
    assert mk.d.refused(HaltTrading(session="S", instrument="U", reason="y")).code \
        == "wrong_phase"
    assert mk.refused("b1", ResumeTrading(session="S", instrument="U")).code == "not_permitted"
    assert mk.d.refused(ResumeTrading(session="S", instrument="U",
                                          phase="closed")).code == "bad_field"



def test_closing_a_halted_book_closes_it_and_the_halt_ends():
    mk = Market()
    mk.order("b1", 1, "sell", 5, 500)
    halt(mk)
    events = mk.d.ok(CloseSession(session="S"))
    assert one(events, OrderCancelled).qty == 5
    inst = mk.state.books["U"]
    assert (inst.phase, inst.halt_reason) == ("closed", "")
    assert mk.d.refused(ResumeTrading(session="S", instrument="U")).code \
        == "instrument_closed"


@pytest.mark.parametrize("restart", [False, True])
def test_a_halt_survives_a_snapshot(restart):
    mk = Market()
    halt(mk, "court order")
    if restart:
        engine = Engine.restore(mk.d.engine.snapshot())
        mk.d.engine = engine
    assert mk.state.books["U"].halt_reason == "court order"
    assert rejected(mk.order("b1", 1, "sell", 1, 500)) == "instrument_halted"


def test_a_halted_call_keeps_publishing_its_indicative_price_not_a_quote():
    mk = Market(call=True)
    mk.order("b1", 1, "sell", 5, 500)
    mk.order("b2", 1, "buy", 5, 520)
    mk.order("b3", 1, "buy", 2, 510)
    halt(mk)
    assert mk.state.books["U"].halted_from == "call"
    events = mk.cancel("b3", 1)
    assert one(events, IndicativePrice).imbalance == 0 and not of(events, QuoteChanged)


def test_the_lobster_export_writes_a_halt_as_a_halt_and_the_resume_as_a_resume(monkeypatch):
    import functools
    from types import SimpleNamespace

    from exchange.driver import Driver
    from replay.lobster import OrderBookRebuilder
    from tests.unit import test_market

    monkeypatch.setattr(test_market, "Driver", functools.partial(Driver, keep_log=True))
    mk = Market()
    mk.order("b1", 1, "sell", 5, 500)
    halt(mk)
    resume(mk)
    for private in (True, False):
        rebuilder = OrderBookRebuilder(2, private=private)
        for env, events in mk.d.log:
            shown = events if private else [e for e in events if not e.to]
            rebuilder.fold(SimpleNamespace(env=env, events=shown))
        halts = [message[4] for message, _ in rebuilder.rows("U") if message[1] == 7]
        assert halts == [-1, 1], (private, halts)
