"""The memory of gone orders (why a cancel or modify failed) keeps the most
recent `market.GONE_MEMORY` keys, oldest forgotten first, also when it comes
from a snapshot written while it was a plain dict."""

from __future__ import annotations

import os
import random
from collections import OrderedDict

from exchange import market
from exchange.codec import encode
from exchange.commands import CancelOrder, ModifyOrder, PlaceOrder
from exchange.driver import Driver
from exchange.engine import Engine

from tests.unit.test_market import Market, rejected

SEED = int(os.environ.get("GONE_SEED", "20260415"))


def test_the_oldest_gone_order_is_forgotten_first(monkeypatch):
    monkeypatch.setattr(market, "GONE_MEMORY", 3)
    mk = Market()
    for oid in range(1, 6):
        mk.order("b1", oid, "buy", 1, 100)
        mk.cancel("b1", oid)
    assert [rejected(mk.cancel("b1", oid)) for oid in range(1, 6)] == [
        "unknown_order", "unknown_order", "order_cancelled", "order_cancelled", "order_cancelled"]
    # remembered: b1's 3, 4, 5. The id 3 comes back (leaving the memory) and
    # fills against b2's 1: both go in, pushing out 4. Then b1's 6 pushes out 5.
    mk.order("b1", 3, "buy", 1, 100)
    mk.order("b2", 1, "sell", 1, 100)
    mk.order("b1", 6, "buy", 1, 100)
    mk.cancel("b1", 6)
    assert [rejected(mk.cancel("b1", oid)) for oid in (3, 4, 5, 6)] == [
        "order_filled", "unknown_order", "unknown_order", "order_cancelled"]
    assert rejected(mk.cancel("b2", 1)) == "order_filled"
    assert isinstance(mk.state.books["U"].gone, OrderedDict)


def test_a_plain_dict_from_an_older_snapshot_forgets_the_same_orders(monkeypatch):
    """Two engines from one snapshot, one whose memory is a plain dict as an
    older snapshot holds it: the same random commands give the same bytes."""
    monkeypatch.setattr(market, "GONE_MEMORY", 8)
    mk = Market()
    for oid in range(1, 20):
        mk.order("b1", oid, "buy", 1, 100 + oid % 3)
        mk.cancel("b1", oid)
    plain = Engine.restore(mk.d.engine.snapshot())
    plain.state.books["U"].gone = dict(plain.state.books["U"].gone)
    plain.check_invariants = True
    drivers = (Driver(plain), Driver(Engine.restore(mk.d.engine.snapshot())))
    rnd = random.Random(SEED)
    for _ in range(400):
        roll = rnd.random()
        broker = rnd.choice(("b1", "b2"))
        paddle, oid = mk.paddle[broker], rnd.randrange(1, 30)
        if roll < 0.5:
            cmd = PlaceOrder(session="S", instrument="U", paddle=paddle, order=oid,
                             side=rnd.choice(("buy", "sell")), qty=rnd.randrange(1, 4),
                             price=rnd.randrange(99, 103))
        elif roll < 0.8:
            cmd = CancelOrder(session="S", instrument="U", paddle=paddle, order=oid)
        else:
            cmd = ModifyOrder(session="S", instrument="U", paddle=paddle, order=oid,
                              price=rnd.randrange(99, 103), qty=rnd.randrange(1, 4))
        got = [encode(d.send(cmd, actor=broker, role="broker")) for d in drivers]
        assert got[0] == got[1], f"seed {SEED}: {cmd}"
    gone = [d.engine.state.books["U"].gone for d in drivers]
    assert isinstance(gone[0], OrderedDict), f"seed {SEED}"
    assert list(gone[0].items()) == list(gone[1].items()), f"seed {SEED}"
