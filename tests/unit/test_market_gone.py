"""The memory of gone orders (why a cancel or modify failed) keeps at least
the most recent `market.GONE_MEMORY` keys, forgets the oldest generations
first, never answers with a stale reason, and takes over the memory of a
snapshot written while it was an OrderedDict or a plain dict."""

from __future__ import annotations

import os
import pickle
import random
from collections import OrderedDict

from exchange import market
from exchange.engine import Engine
from exchange.market import GoneOrders

from tests.unit.test_market import Market, rejected

SEED = int(os.environ.get("GONE_SEED", "20260415"))


def small_generations(monkeypatch, size: int, count: int) -> None:
    monkeypatch.setattr(market, "GONE_GENERATION", size)
    monkeypatch.setattr(market, "GONE_GENERATIONS", count)


def test_the_oldest_generation_is_forgotten_first(monkeypatch):
    small_generations(monkeypatch, 2, 2)      # remembers the last 4 at least, 6 at most
    mk = Market()
    for oid in range(1, 10):
        mk.order("b1", oid, "buy", 1, 100)
        mk.cancel("b1", oid)
    assert [rejected(mk.cancel("b1", oid)) for oid in range(1, 10)] == (
        ["unknown_order"] * 4 + ["order_cancelled"] * 5)
    mk.d.engine.state.books["U"].gone.check()


def test_an_id_that_rests_again_is_answered_by_its_latest_exit(monkeypatch):
    small_generations(monkeypatch, 2, 2)
    mk = Market()
    mk.order("b1", 3, "buy", 1, 100)
    mk.cancel("b1", 3)
    assert rejected(mk.cancel("b1", 3)) == "order_cancelled"
    mk.order("b1", 3, "buy", 1, 100)          # the id comes back and rests: cancellable
    assert rejected(mk.cancel("b1", 3)) is None
    mk.order("b1", 3, "buy", 1, 100)          # and again; this time it fills
    mk.order("b2", 1, "sell", 1, 100)
    assert rejected(mk.cancel("b1", 3)) == "order_filled"
    assert rejected(mk.cancel("b2", 1)) == "order_filled"


def test_no_write_keeps_more_than_the_bounds_and_no_answer_is_stale(monkeypatch):
    """Seeded random writes against an exact model: a key whose last write is
    among the last GONE_MEMORY is answered with that write; one whose last
    write is older than the bound is forgotten; nothing else is answered."""
    small_generations(monkeypatch, 8, 4)
    memory = 8 * 4
    rnd = random.Random(SEED)
    gone = GoneOrders()
    latest: dict[tuple[int, int], tuple[int, str]] = {}   # key -> (write number, how)
    for n in range(3000):
        key = (rnd.randrange(1, 4), rnd.randrange(1, 120))
        how = rnd.choice(("filled", "cancelled"))
        gone.put(key, how)
        latest[key] = (n, how)
        gone.check()
        if n % 37 == 0:
            for key, (at, how) in latest.items():
                got = gone.get(key)
                age = n - at
                if age < memory:
                    assert got == how, f"seed {SEED}: {key} written {age} ago"
                elif age >= memory + 8:
                    assert got is None, f"seed {SEED}: {key} written {age} ago"
                else:
                    assert got in (None, how), f"seed {SEED}: {key} stale"


def test_a_snapshot_from_before_takes_its_memory_over():
    """An engine restored from a snapshot whose memory is an OrderedDict (or a
    plain dict) answers as that memory did, and goes on remembering."""
    for kind in (OrderedDict, dict):
        mk = Market()
        for oid in range(1, 6):
            mk.order("b1", oid, "buy", 1, 100)
            mk.cancel("b1", oid)
        state = mk.d.engine.state
        state.books["U"].gone = kind(((mk.paddle["b1"], oid), "cancelled")
                                     for oid in range(1, 6))
        restored = Engine.restore(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        gone = restored.state.books["U"].gone
        assert isinstance(gone, GoneOrders)
        assert [gone.get((mk.paddle["b1"], oid)) for oid in range(1, 7)] == (
            ["cancelled"] * 5 + [None])
        gone.check()
        again = Engine.restore(restored.snapshot()).state.books["U"].gone   # as it is now
        assert isinstance(again, GoneOrders)
        assert again.generations == gone.generations and again.retiring == gone.retiring
