"""The continuous bid-ask book against two PyPI peers, on one seeded workload.

Run: ``make bench`` or
``.venv/bin/python -m pytest bench/test_cda_bench.py --benchmark-only -p no:cacheprovider``
(add ``-s`` to see the messages/second, ratio and memory lines). Environment:
``CDA_BENCH_MESSAGES`` (default 1,000,000), ``CDA_BENCH_DEEP`` (resting
orders of the deep variant, default 100,000), ``CDA_BENCH_SEED``.

The workload (`mixed_workload`): a mid price that wanders one tick at a time;
new orders near the touch (resting buys below the mid, sells above, at a
distance drawn from an exponential); 15 % of new orders are
immediate-or-cancel at prices through the mid, so they trade; of the others
80 % are cancelled later and 20 % modified later (half quantity reductions,
half price moves of a few ticks); traders are 1,000 owners drawn at random.
Cancels and modifies of orders already filled stay in the stream, as they
would on a real venue. The deep variant first rests 100,000 orders 300 to
3,300 ticks from the mid (built untimed in the setup), then runs the same
stream.

Who runs what:

- ``lotex``: `exchange.book.Book`, the pure book that is the engine's hot path
  (`place`, `cancel`, `modify`; self-trade prevention on, cancel-newest).
  ``test_cda_engine`` runs the same stream through the whole engine
  (`Envelope` -> `Engine.apply` with paddles, credit checks, holdings and
  events) and is reported separately.
- ``lightmatchingengine`` 2019.1.4: on PyPI a pure-Python wheel (the Cython
  build is not what pip installs on Python 3.11). It assigns its own order
  ids, so a dict maps ours to its orders. No IOC: add, then cancel the rest.
  No modify: cancel and add (priority is lost even on a reduction). Its
  cancel of an order already filled fails an assert, so the adapter checks
  ``leaves_qty`` first (the equivalent of our rejection).
- ``limit_order_book`` 2.0: a C++ book through ctypes; the adapter calls the
  ctypes functions bound once (its fastest path, skipping its Python wrapper
  methods). No IOC: limit, then cancel the rest. No modify: cancel and
  limit. Its cancel of a missing id throws a C++ exception that aborts the
  process, so the adapter asks ``has`` first (again our rejection).

Memory per resting order (``test_cda_memory``, in a fresh subprocess per
peer): RSS growth over building the deep book's 100,000 resting orders, and
tracemalloc over a second build. tracemalloc cannot see the C++ book's
allocations (it reports ~0 there), so compare that peer by RSS.
"""

from __future__ import annotations

import gc
import heapq
import json
import os
import random
import subprocess
import sys

import pytest

from exchange.book import BUY, CANCEL_NEWEST, IOC, SELL, Book

MESSAGES = int(os.environ.get("CDA_BENCH_MESSAGES", "1000000"))
DEEP_ORDERS = int(os.environ.get("CDA_BENCH_DEEP", "100000"))
SEED = int(os.environ.get("CDA_BENCH_SEED", "20260101"))
DEEP_MESSAGES = MESSAGES // 2

NEW, NEW_IOC, CANCEL, MODIFY = 0, 1, 2, 3
PEERS = ("lotex", "lightmatchingengine", "limit_order_book")


# ---------------------------------------------------------------------------
# the workload
# ---------------------------------------------------------------------------

def mixed_workload(messages: int, seed: int, *, first_id: int = 1,
                   start_mid: int = 100_000) -> list[tuple[int, int, int, int, int, int]]:
    """Return ``messages`` tuples ``(kind, order id, side, price, qty, owner)``.
    For MODIFY, price and qty are the new ones; for CANCEL they are unused."""
    rnd = random.Random(seed)
    random_ = rnd.random
    expo = rnd.expovariate
    randint = rnd.randint
    out: list[tuple[int, int, int, int, int, int]] = []
    later: list[tuple[int, int, tuple]] = []  # (due index, tie, message)
    mid = start_mid
    oid = first_id
    tie = 0
    while len(out) < messages:
        now = len(out)
        if later and later[0][0] <= now:
            out.append(heapq.heappop(later)[2])
            continue
        if random_() < 0.25:
            mid += 1 if random_() < 0.5 else -1
        side = BUY if random_() < 0.5 else SELL
        qty = randint(1, 100)
        owner = randint(1, 1000)
        oid += 1
        if random_() < 0.15:
            through = randint(0, 4)
            price = mid + through if side == BUY else mid - through
            out.append((NEW_IOC, oid, side, price, qty, owner))
            continue
        away = 1 + int(expo(0.25))
        price = mid - away if side == BUY else mid + away
        out.append((NEW, oid, side, price, qty, owner))
        modify_at = 0
        if random_() < 0.20:
            modify_at = now + randint(1, 400)
            if random_() < 0.5:
                new_price, new_qty = price, max(1, qty // 2)
            else:
                step = randint(1, 3)
                new_price = price + step if random_() < 0.5 else price - step
                new_qty = qty
            tie += 1
            heapq.heappush(later, (modify_at, tie, (MODIFY, oid, side, new_price, new_qty, owner)))
        if random_() < 0.80:
            tie += 1
            heapq.heappush(later, (max(modify_at, now) + randint(1, 2000), tie,
                                   (CANCEL, oid, side, 0, 0, owner)))
    return out


def deep_orders(count: int, seed: int, *, mid: int = 100_000) -> list[tuple[int, int, int, int, int, int]]:
    """Return ``count`` resting orders 300 to 3,300 ticks either side of ``mid``,
    with ids from 10**9 (never cancelled by the stream)."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        side = BUY if i % 2 == 0 else SELL
        away = rnd.randint(300, 3300)
        price = mid - away if side == BUY else mid + away
        out.append((NEW, 10**9 + i, side, price, rnd.randint(1, 100), rnd.randint(1, 1000)))
    return out


# ---------------------------------------------------------------------------
# the three runners: each returns a callable that feeds a message list
# ---------------------------------------------------------------------------

def lotex_runner():
    book = Book()
    place = book.place
    cancel = book.cancel
    modify = book.modify
    orders = book.orders

    def run(messages):
        for kind, oid, side, price, qty, owner in messages:
            if kind == NEW:
                place(oid, side, price, qty, owner)
            elif kind == CANCEL:
                cancel(oid)
            elif kind == NEW_IOC:
                place(oid, side, price, qty, owner, IOC)
            elif oid in orders:
                modify(oid, price, qty, CANCEL_NEWEST)
    run.book = book
    return run


def lightmatchingengine_runner():
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine, Side
    engine = LightMatchingEngine()
    add_order = engine.add_order
    cancel_order = engine.cancel_order
    live: dict[int, object] = {}
    sides = (Side.BUY, Side.SELL)

    def run(messages):
        for kind, oid, side, price, qty, owner in messages:
            if kind == NEW:
                order, _ = add_order("X", price, qty, sides[side])
                if order.leaves_qty:
                    live[oid] = order
            elif kind == CANCEL:
                order = live.pop(oid, None)
                if order is not None and order.leaves_qty:
                    cancel_order(order.order_id, "X")
            elif kind == NEW_IOC:
                order, _ = add_order("X", price, qty, sides[side])
                if order.leaves_qty:
                    cancel_order(order.order_id, "X")
            else:
                order = live.pop(oid, None)
                if order is not None and order.leaves_qty:
                    cancel_order(order.order_id, "X")
                    order, _ = add_order("X", price, qty, sides[side])
                    if order.leaves_qty:
                        live[oid] = order
    run.book = engine
    return run


def limit_order_book_runner():
    from limit_order_book import LimitOrderBook
    from limit_order_book.library import Library
    book = LimitOrderBook()
    handle = book._book
    functions = Library.functions
    limit = functions.limit
    has = functions.has
    cancel = functions.cancel

    def run(messages):
        for kind, oid, side, price, qty, owner in messages:
            if kind == NEW:
                limit(handle, side == BUY, oid, qty, price)
            elif kind == CANCEL:
                if has(handle, oid):
                    cancel(handle, oid)
            elif kind == NEW_IOC:
                limit(handle, side == BUY, oid, qty, price)
                if has(handle, oid):
                    cancel(handle, oid)
            elif has(handle, oid):
                cancel(handle, oid)
                limit(handle, side == BUY, oid, qty, price)
    run.book = book
    return run


RUNNERS = {"lotex": lotex_runner, "lightmatchingengine": lightmatchingengine_runner,
           "limit_order_book": limit_order_book_runner}


# ---------------------------------------------------------------------------
# fixtures and results
# ---------------------------------------------------------------------------

RESULTS: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module")
def mixed():
    return mixed_workload(MESSAGES, SEED)


@pytest.fixture(scope="module")
def deep():
    return deep_orders(DEEP_ORDERS, SEED + 1), mixed_workload(DEEP_MESSAGES, SEED + 2)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _report(workload: str, peer: str, messages: int, seconds: float) -> None:
    rate = messages / seconds
    RESULTS[(workload, peer)] = rate
    line = f"{workload:>6} {peer:<20} {rate:>12,.0f} msg/s"
    if peer != "lotex" and (workload, "lotex") in RESULTS:
        line += f"   lotex/{peer} = {RESULTS[(workload, 'lotex')] / rate:.2f}x"
    print("\n" + line)


@pytest.mark.parametrize("peer", PEERS)
def test_cda_mixed(benchmark, peer, mixed):
    runs = []

    def setup():
        run = RUNNERS[peer]()
        runs.append(run)
        return (mixed,), {}

    gc.collect()
    benchmark.pedantic(lambda messages: runs[-1](messages), setup=setup, rounds=2,
                       iterations=1, warmup_rounds=0)
    _report("mixed", peer, len(mixed), benchmark.stats.stats.min)
    benchmark.extra_info["messages_per_second"] = round(len(mixed) / benchmark.stats.stats.min)


@pytest.mark.parametrize("peer", PEERS)
def test_cda_deep(benchmark, peer, deep):
    resting, stream = deep
    runs = []

    def setup():
        run = RUNNERS[peer]()
        run(resting)
        runs.append(run)
        return (stream,), {}

    gc.collect()
    benchmark.pedantic(lambda messages: runs[-1](messages), setup=setup, rounds=1,
                       iterations=1, warmup_rounds=0)
    _report("deep", peer, len(stream), benchmark.stats.stats.min)
    benchmark.extra_info["messages_per_second"] = round(len(stream) / benchmark.stats.stats.min)


@pytest.mark.parametrize("peer", PEERS)
def test_cda_memory(benchmark, peer, deep):
    """Build the deep book (timed: resting-order inserts per second), then,
    untimed, build it again under tracemalloc and RSS: bytes per resting order."""
    resting, _ = deep
    benchmark.pedantic(lambda: RUNNERS[peer]()(resting), rounds=1, iterations=1,
                       warmup_rounds=0)
    _report("insert", peer, len(resting), benchmark.stats.stats.min)
    found = json.loads(subprocess.run(
        [sys.executable, "-c", _MEASURE, os.path.dirname(__file__), peer],
        check=True, capture_output=True, text=True, timeout=600).stdout)
    print(f"memory {peer:<20} tracemalloc {found['traced']:7.0f} B/order   "
          f"RSS growth {found['rss']:7.0f} B/order")
    benchmark.extra_info["tracemalloc_bytes_per_order"] = round(found["traced"])
    benchmark.extra_info["rss_bytes_per_order"] = round(found["rss"])
    if peer == "lotex":
        assert found["resting"] == len(resting)
        assert found["traced"] < 400, found


_MEASURE = """
import gc, json, sys, tracemalloc
sys.path.insert(0, sys.argv[1])
import test_cda_bench as bench
peer = sys.argv[2]
resting = bench.deep_orders(bench.DEEP_ORDERS, bench.SEED + 1)
gc.collect()
before = bench._rss()
kept = bench.RUNNERS[peer]()
kept(resting)
rss = bench._rss() - before
tracemalloc.start()
run = bench.RUNNERS[peer]()
base, _ = tracemalloc.get_traced_memory()
run(resting)
traced, _ = tracemalloc.get_traced_memory()
book = run.book
print(json.dumps({"rss": rss / len(resting), "traced": (traced - base) / len(resting),
                  "resting": len(book.orders) if hasattr(book, "orders") else -1}))
"""


# ---------------------------------------------------------------------------
# the whole engine path: Envelope -> Engine.apply, with events
# ---------------------------------------------------------------------------

ENGINE_MESSAGES = int(os.environ.get("CDA_BENCH_ENGINE_MESSAGES", "200000"))
ENGINE_OWNERS = 1000


def engine_envelopes(messages, paddles: dict[int, int], first_seq: int, ts: int):
    """Turn workload tuples into sequenced envelopes of book commands."""
    from exchange.commands import CancelOrder, Envelope, ModifyOrder, PlaceOrder
    sides = ("buy", "sell")
    out = []
    seq = first_seq
    for kind, oid, side, price, qty, owner in messages:
        paddle = paddles[owner]
        if kind == NEW:
            cmd = PlaceOrder(session="S", instrument="U", paddle=paddle, order=oid,
                             side=sides[side], qty=qty, price=price)
        elif kind == NEW_IOC:
            cmd = PlaceOrder(session="S", instrument="U", paddle=paddle, order=oid,
                             side=sides[side], qty=qty, price=price, tif="ioc")
        elif kind == CANCEL:
            cmd = CancelOrder(session="S", instrument="U", paddle=paddle, order=oid)
        else:
            cmd = ModifyOrder(session="S", instrument="U", paddle=paddle, order=oid,
                              price=price, qty=qty)
        seq += 1
        ts += 1000
        out.append(Envelope(seq=seq, ts=ts, actor=f"b{owner}", role="broker", cmd=cmd, client_id=""))
    return out


def engine_market():
    """An engine with session S, ENGINE_OWNERS parties (one broker each, ample
    credit and units) and the units instrument U; return (engine, paddles)."""
    from exchange.commands import (CreateInstrument, CreateSession, IssuePaddle, IssueUnits,
                                   RegisterParty, ReviewCredit)
    from exchange.driver import Driver
    from exchange.errors import MAX_INT
    d = Driver()
    d.ok(CreateSession(session="S", name="bench"))
    paddles = {}
    for owner in range(1, ENGINE_OWNERS + 1):
        broker = f"b{owner}"
        party = d.ok(RegisterParty(name=broker), actor=broker, role="broker")[0].party
        d.ok(ReviewCredit(party=party, approved=True, credit_limit=MAX_INT, currency="USD",
                          agreement_version="v1"))
        paddles[owner] = d.ok(IssuePaddle(session="S", party=party))[0].paddle
    d.ok(CreateInstrument(session="S", instrument="U"))
    for paddle in paddles.values():
        d.ok(IssueUnits(session="S", instrument="U", paddle=paddle, qty=10**12))
    return d, paddles


def test_cda_engine(benchmark, mixed):
    """The mixed stream (first CDA_BENCH_ENGINE_MESSAGES messages) through the
    whole engine: validation, paddles, credit, holdings and every event."""
    runs = []

    def setup():
        d, paddles = engine_market()
        envelopes = engine_envelopes(mixed[:ENGINE_MESSAGES], paddles, d.seq, d.ts)
        runs.append(d.engine)
        return (envelopes,), {}

    def run(envelopes):
        apply = runs[-1].apply
        events = 0
        for env in envelopes:
            events += len(apply(env))
        runs[-1].events = events

    gc.collect()
    benchmark.pedantic(run, setup=setup, rounds=1, iterations=1, warmup_rounds=0)
    seconds = benchmark.stats.stats.min
    _report("engine", "lotex", ENGINE_MESSAGES, seconds)
    events = runs[-1].events
    print(f"engine path: {events / ENGINE_MESSAGES:.2f} events per message; "
          f"pure book / engine = {RESULTS.get(('mixed', 'lotex'), 0) / (ENGINE_MESSAGES / seconds):.1f}x")
    benchmark.extra_info["messages_per_second"] = round(ENGINE_MESSAGES / seconds)
