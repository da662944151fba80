"""The gateway's engine thread without sockets: the ceiling of one loop.

Run: ``.venv/bin/python -m pytest bench/test_gateway_loop_bench.py --benchmark-only
-p no:cacheprovider -s`` (``-s`` prints the figures; ``-k parts``: where an
order's time goes). ``LOOP_BENCH_BATCHES``
sets how many Batch messages of 100 orders are measured (default 300).

A server on a temporary directory (``group`` durability) gets the market of
`test_gateway_bench` over real sockets; then its loop is stopped and this
test does, in one thread, what a turn does with Batch messages of 100 orders
(a resting buy, then a sell that trades with it, as in the end-to-end bench)
from one logged-on broker: `Server._on_batch` for each message (client ids,
envelopes, `Engine.apply`, journal entries, Result and Market encoding),
`Server._commit` (append, one write, one fdatasync), then `Server._flush`
for the feed (PUB send with no subscriber, the public view, the ring); the
replies are dropped unsent, so no broker socket is involved. The messages
are built before the clock starts, so decoding is not counted.

It reports orders per second, CPU per order and the share spent in
`Engine.apply`. End to end (`test_gateway_bench.py`) the same orders also
cross CURVE sockets and are decoded and answered: the difference is what the
sockets cost. 50,000 acknowledged orders per second end to end needs this
loop well under 20 us per order.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from exchange.commands import PlaceOrder
from gateway import protocol as p
from gateway.server import Conn

from test_gateway_bench import INSTRUMENT, stopped_market_server

BATCHES = int(os.environ.get("LOOP_BENCH_BATCHES", "300"))
BATCH = 100


@pytest.fixture(scope="module")
def stopped_server():
    """A server with the bench market whose loop no longer runs."""
    tmp = tempfile.TemporaryDirectory(prefix="lotex-loop-bench-")
    try:
        server, paddles = stopped_market_server(Path(tmp.name))
        try:
            yield server, paddles["bench1"]
        finally:
            server.close()
    finally:
        tmp.cleanup()


def batches(first_order: int, count: int, paddles: tuple[int, int]) -> list[p.Batch]:
    buyer, seller = paddles
    out = []
    n = first_order
    for _ in range(count):
        requests = []
        for _ in range(BATCH):
            n += 1
            buy = n % 2 == 1
            requests.append(p.Request(client_id=f"loop-{n}", cmd=PlaceOrder(
                session="B", instrument=INSTRUMENT, paddle=buyer if buy else seller, order=n,
                side="buy" if buy else "sell", qty=1, price=1000)))
        out.append(p.Batch(requests=requests))
    return out


def logged_on(server, rid: bytes) -> tuple:
    """The bench broker's user and a connection of its, as a logon makes them."""
    conn = Conn("broker", server.broker, rid, "bench1", "broker", 10**15, time.monotonic_ns(),
                False, False)
    server.sessions["broker"][conn.rid] = conn
    return server.users["bench1"], conn


def test_gateway_loop_without_sockets(benchmark, stopped_server):
    server, paddles = stopped_server
    user, conn = logged_on(server, b"\0loop-bench")
    engine = server.engine
    apply = engine.apply
    spent = [0.0]
    clock = time.perf_counter

    def timed_apply(env):
        start = clock()
        events = apply(env)
        spent[0] += clock() - start
        return events

    def turn(messages: list[p.Batch]) -> None:
        for msg in messages:
            server._on_batch(server.broker, conn, user, msg)
            server._commit()
            server.outbox.clear()                # the replies: no broker to send them to
            server._flush()                      # the feed: Market messages, view, ring

    turn(batches(0, 20, paddles))                # warm up
    work = batches(20 * BATCH, BATCHES, paddles)
    figures: dict[str, float] = {}

    def run() -> None:
        engine.apply = timed_apply
        try:
            cpu, wall = time.process_time(), clock()
            turn(work)
            wall, cpu = clock() - wall, time.process_time() - cpu
        finally:
            engine.apply = apply
        orders = BATCHES * BATCH
        figures.update(orders_per_s=orders / wall, cpu_us=cpu / orders * 1e6,
                       wall_us=wall / orders * 1e6, engine_us=spent[0] / orders * 1e6)
    benchmark.pedantic(run, rounds=1, iterations=1)
    assert server.failed is None and not server.records
    benchmark.extra_info.update(figures)
    print(f"\ngateway loop without sockets, Batch of {BATCH}: {figures['orders_per_s']:,.0f} "
          f"orders/s; per order {figures['wall_us']:.1f} us wall, {figures['cpu_us']:.1f} us "
          f"CPU, of which Engine.apply {figures['engine_us']:.1f} us "
          f"({figures['engine_us'] / figures['wall_us']:.0%})")


def test_gateway_loop_parts(benchmark, stopped_server, monkeypatch):
    """Where the loop's time goes, per order: each part timed apart (the
    engine, the journal's framing and its write + fdatasync, the three
    encodings, the feed's fold); "the rest" is the gateway's own Python
    around them (client ids, envelopes, audiences, queues). The timers add
    ~1 us an order of their own, counted in the rest."""
    import gateway.server as gs

    server, paddles = stopped_server
    user, conn = logged_on(server, b"\0loop-parts")
    clock = time.perf_counter
    spent: dict[str, float] = {}

    def timed(fn, label):
        def run(*args, **kw):
            start = clock()
            try:
                return fn(*args, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + clock() - start
        return run
    monkeypatch.setattr(server.engine, "apply", timed(server.engine.apply, "Engine.apply"))
    monkeypatch.setattr(gs, "encode_entry", timed(gs.encode_entry, "encode the journal entry"))
    encode = p.encode

    def encode_timed(message):
        start = clock()
        try:
            return encode(message)
        finally:
            label = f"encode {type(message).__name__.lstrip('_')}"
            spent[label] = spent.get(label, 0.0) + clock() - start
    monkeypatch.setattr(p, "encode", encode_timed)
    journal = server.journal
    monkeypatch.setattr(journal, "append_many", timed(journal.append_many, "journal framing"))
    monkeypatch.setattr(journal, "commit", timed(journal.commit,
                                                 "journal write + fdatasync (wall)"))
    monkeypatch.setattr(server.view, "fold", timed(server.view.fold, "feed view fold"))

    def turn(messages: list[p.Batch]) -> None:
        for msg in messages:
            server._on_batch(server.broker, conn, user, msg)
            server._commit()
            server.outbox.clear()
            server._flush()
    first = 5 * 10**7                            # clear of the other tests' order ids
    turn(batches(first, 20, paddles))
    work = batches(first + 20 * BATCH, BATCHES, paddles)
    figures: dict[str, float] = {}

    def run() -> None:
        spent.clear()
        cpu, wall = time.process_time(), clock()
        turn(work)
        wall, cpu = clock() - wall, time.process_time() - cpu
        figures.update(wall=wall, cpu=cpu)
    benchmark.pedantic(run, rounds=1, iterations=1)
    assert server.failed is None and not server.records
    orders = BATCHES * BATCH
    parts = {label: seconds / orders * 1e6 for label, seconds in spent.items()}
    parts["the rest"] = figures["wall"] / orders * 1e6 - sum(parts.values())
    benchmark.extra_info.update(parts)
    print(f"\ngateway loop, Batch of {BATCH}: {orders / figures['wall']:,.0f} orders/s, "
          f"{figures['wall'] / orders * 1e6:.1f} us wall and {figures['cpu'] / orders * 1e6:.1f} "
          f"us CPU an order:")
    for label, us in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"  {label:34s} {us:5.2f} us")


HICCUP_ORDERS = int(os.environ.get("LOOP_BENCH_HICCUP_ORDERS", "250000"))
HICCUP_BATCH = 10


def test_gateway_loop_hiccups(benchmark, stopped_server):
    """The same loop over a day's worth of orders in turns of 10: the slowest
    turns show any pause that grows with the orders seen so far (a table
    rebuilt whole, a ring trimmed in bulk) rather than with the turn's work."""
    server, paddles = stopped_server
    user, conn = logged_on(server, b"\0loop-hiccups")
    buyer, seller = paddles
    first = 10**7                          # clear of the other test's order ids
    turns = HICCUP_ORDERS // HICCUP_BATCH

    def make(t: int) -> p.Batch:
        requests = []
        for i in range(HICCUP_BATCH):
            n = first + t * HICCUP_BATCH + i
            buy = n % 2 == 1
            requests.append(p.Request(client_id=f"hiccup-{n}", cmd=PlaceOrder(
                session="B", instrument=INSTRUMENT, paddle=buyer if buy else seller, order=n,
                side="buy" if buy else "sell", qty=1, price=1000)))
        return p.Batch(requests=requests)

    times: list[int] = []

    def run() -> None:
        clock = time.perf_counter_ns
        for t in range(turns):
            msg = make(t)                  # built outside the timed part
            start = clock()
            server._on_batch(server.broker, conn, user, msg)
            server._commit()
            server.outbox.clear()
            server._flush()
            server._reserve()
            server._housekeeping()
            times.append(clock() - start)
    benchmark.pedantic(run, rounds=1, iterations=1)
    assert server.failed is None and not server.records
    ordered = sorted(times)
    slow = [(i * HICCUP_BATCH, ns) for i, ns in enumerate(times) if ns > 2_000_000]

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e3
    figures = {"p50_us": pct(0.5), "p99_us": pct(0.99), "p999_us": pct(0.999),
               "max_us": ordered[-1] / 1e3, "turns_over_2ms": len(slow)}
    benchmark.extra_info.update(figures)
    print(f"\ngateway loop, {turns:,} turns of {HICCUP_BATCH} orders: turn p50 "
          f"{figures['p50_us']:,.0f} us, p99 {figures['p99_us']:,.0f}, p99.9 "
          f"{figures['p999_us']:,.0f}, max {figures['max_us']:,.0f} us; "
          f"{len(slow)} turns over 2 ms, the slowest at orders "
          + ", ".join(f"{n:,} ({ns / 1e6:.1f} ms)"
                      for n, ns in sorted(slow, key=lambda s: -s[1])[:8]))
