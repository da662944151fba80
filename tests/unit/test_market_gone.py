"""The memory of gone orders (why a cancel or modify failed) keeps the most
recent `market.GONE_MEMORY` keys, oldest forgotten first, also when it comes
from a snapshot written while it was a plain dict or an OrderedDict; and
`GoneOrders` remembers exactly what an OrderedDict would."""

from __future__ import annotations

import os
import random
from collections import OrderedDict

import pytest

from exchange import market
from exchange.codec import encode
from exchange.commands import CancelOrder, ModifyOrder, PlaceOrder
from exchange.driver import Driver
from exchange.engine import Engine
from exchange.gone import GoneOrders

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
    assert isinstance(mk.state.books["U"].gone, GoneOrders)


@pytest.mark.parametrize("older", [dict, OrderedDict])
def test_a_memory_from_an_older_snapshot_forgets_the_same_orders(monkeypatch, older):
    """Two engines from one snapshot, one whose memory is a plain dict or an
    OrderedDict as older snapshots hold it: the same random commands give
    the same bytes."""
    monkeypatch.setattr(market, "GONE_MEMORY", 8)
    mk = Market()
    for oid in range(1, 20):
        mk.order("b1", oid, "buy", 1, 100 + oid % 3)
        mk.cancel("b1", oid)
    plain = Engine.restore(mk.d.engine.snapshot())
    plain.state.books["U"].gone = older(plain.state.books["U"].gone.items())
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
    assert isinstance(gone[0], GoneOrders), f"seed {SEED}"
    assert list(gone[0].items()) == list(gone[1].items()), f"seed {SEED}"


def _reference_put(ref: OrderedDict, key, how, limit: int) -> None:
    """What `_Run.forget` did with an OrderedDict."""
    ref.pop(key, None)
    ref[key] = how
    while len(ref) > limit:
        ref.popitem(last=False)


def test_gone_orders_remember_what_an_ordered_dict_remembers():
    """A seeded random mix of put, pop and get against an OrderedDict: the
    same keys in the same order after every step; the queue of places stays
    bounded; a pickle round trip keeps it all."""
    import pickle
    rnd = random.Random(SEED)
    for limit in (1, 5, 64):
        gone, ref = GoneOrders(), OrderedDict()
        for step in range(6000):
            key = (rnd.randrange(1, 4), rnd.randrange(1, 3 * limit + 3))
            roll = rnd.random()
            if roll < 0.6:
                how = rnd.choice(("filled", "cancelled"))
                gone.put(key, how, limit)
                _reference_put(ref, key, how, limit)
            elif roll < 0.85:
                assert gone.pop(key, "none") == ref.pop(key, "none"), f"seed {SEED} step {step}"
            else:
                assert gone.get(key) == ref.get(key), f"seed {SEED} step {step}"
                assert (key in gone) == (key in ref), f"seed {SEED} step {step}"
            assert list(gone.items()) == list(ref.items()), f"seed {SEED} step {step}"
            assert len(gone) == len(ref), f"seed {SEED} step {step}"
            assert len(gone.queue) <= 2 * len(gone) + 1024, f"seed {SEED} step {step}"
        again = pickle.loads(pickle.dumps(gone))
        assert again == gone and list(again.items()) == list(ref.items())


def test_stale_places_behind_a_remembered_key_are_compacted():
    """One key remembered long while others come and go: the queue does not
    grow without bound."""
    gone = GoneOrders()
    gone.put((1, 1), "filled", 10)
    for i in range(10000):
        gone.put((2, i % 3), "cancelled", 10)
        gone.pop((2, i % 3))
    assert list(gone.items()) == [((1, 1), "filled")]
    assert len(gone.queue) <= 2 * len(gone) + 1025
