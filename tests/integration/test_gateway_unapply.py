"""A command the engine applied but that cannot be recorded (its handler
raised, or its journal entry is over the journal's limit) is taken back:
refused with its code, the engine rebuilt from the journal, nothing of it
recorded or sent, and the exchange goes on serving everyone."""

from __future__ import annotations

import pytest

from exchange.commands import CancelOrder, MassCancel, PlaceOrder, RegisterParty
from gateway.client import SessionRejectedError
from tests.integration.gateway_harness import build_market, client, running


def _orders(market, count: int) -> list[PlaceOrder]:
    return [PlaceOrder(session="S1", instrument=market.instrument,
                       paddle=market.paddles["Borealis"], order=n, side="buy", qty=1,
                       price=100 + n) for n in range(1, count + 1)]


def test_an_entry_over_the_limit_is_refused_and_the_exchange_goes_on(tmp_path, monkeypatch):
    """A mass cancel of 150 orders makes a ~28 KB entry; with a limit of
    20,000 bytes it is refused `entry_too_large` (at the old 16 MiB limit,
    ~90,000 orders, it stopped the journal and the exchange)."""
    import gateway.server
    monkeypatch.setattr(gateway.server, "MAX_ENTRY_BYTES", 20_000)
    with running(tmp_path) as server, client(tmp_path, "op") as op, \
            client(tmp_path, "b1") as b1, client(tmp_path, "b2") as b2:
        market = build_market(op, b1, b2)
        orders = _orders(market, 150)
        placed = [r for i in range(0, 150, 50) for r in b2.request_batch(orders[i:i + 50])]
        assert all(r.accepted for r in placed)
        with pytest.raises(SessionRejectedError) as refused:
            b2.request(MassCancel(session="S1"), client_id="too-big-1")
        assert refused.value.code == "entry_too_large"
        assert server.failed is None
        after = b1.ok(RegisterParty(name="Still served"))
        assert after.seq == placed[-1].seq + 1            # the refused command left no gap
        book = server.engine.state.books[market.instrument].book
        assert len(book.orders) == 150                    # rebuilt: every order still rests
        one = b2.ok(CancelOrder(session="S1", instrument=market.instrument,
                                paddle=market.paddles["Borealis"], order=1))
        assert one.seq == after.seq + 1
        assert len(server.engine.state.books[market.instrument].book.orders) == 149


def test_a_failing_handler_is_refused_and_the_state_rebuilt(tmp_path, monkeypatch):
    from exchange import engine
    register = engine.HANDLERS[RegisterParty]

    def fragile(state, ctx, cmd):
        register(state, ctx, cmd)                         # applied, then a bug
        if cmd.name == "Boom":
            raise RuntimeError("a bug in a handler")
    monkeypatch.setitem(engine.HANDLERS, RegisterParty, fragile)
    with running(tmp_path) as server, client(tmp_path, "b1") as b1:
        before = b1.ok(RegisterParty(name="Before"))
        with pytest.raises(SessionRejectedError) as refused:
            b1.request(RegisterParty(name="Boom"))
        assert refused.value.code == "internal_error"
        after = b1.ok(RegisterParty(name="After"))
        assert after.seq == before.seq + 1
        names = [p.name for p in server.engine.state.parties.values()]
        assert "Boom" not in names and names[-2:] == ["Before", "After"]


def test_events_that_cannot_be_encoded_are_refused_and_the_exchange_goes_on(tmp_path,
                                                                            monkeypatch):
    """A handler whose event holds an integer beyond msgpack's 64 bits (a
    display amount at a large rate once did) is taken back `internal_error`;
    the engine thread lived on to serve the next command."""
    from exchange import engine
    from exchange.events import PartyRegistered
    register = engine.HANDLERS[RegisterParty]

    def overflowing(state, ctx, cmd):
        register(state, ctx, cmd)
        if cmd.name == "Huge":
            ctx.emit(PartyRegistered(party=2**64, name="Huge", country="", broker="b1",
                                     to=("b1",)))
    monkeypatch.setitem(engine.HANDLERS, RegisterParty, overflowing)
    with running(tmp_path) as server, client(tmp_path, "b1") as b1:
        before = b1.ok(RegisterParty(name="Before"))
        with pytest.raises(SessionRejectedError) as refused:
            b1.request(RegisterParty(name="Huge"))
        assert refused.value.code == "internal_error"
        assert server.failed is None
        after = b1.ok(RegisterParty(name="After"))
        assert after.seq == before.seq + 1
        names = [p.name for p in server.engine.state.parties.values()]
        assert "Huge" not in names and names[-2:] == ["Before", "After"]
