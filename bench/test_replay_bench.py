"""Replay speed: rebuild the engine from a journal of >= 1,000,000 recorded events.

Run: ``make bench`` or
``.venv/bin/python -m pytest bench/test_replay_bench.py --benchmark-only -p no:cacheprovider -s``
(``-s`` shows the figures). Environment: ``REPLAY_BENCH_EVENTS`` (default
1,000,000), ``REPLAY_BENCH_SEED``.

The journal is built once per bench session in a temporary directory (not
timed): a session with 300 paddles trading one units instrument (new orders
near a wandering mid, 15 % of them immediate-or-cancel through the mid so
they trade, cancels and modifies of earlier orders, the stalest orders
cancelled beyond 5,000 live ones) and 5 % of commands bids on 20 English
and sealed lots open throughout; every command is journaled with all its
events as the gateway does (`replay.journaling`), until the journal holds
the events asked for (about 3.8 events per command, ~170 MiB for 1,000,000).

Measured in the same run, on the same journal:

- ``scan``: read every record (CRC and sequence checked), no decoding: what
  reading costs;
- ``scan + decode``: the same and `decode_entry` of each record (envelope and
  events): what `rebuild` reads before the engine starts;
- ``engine only``: `Engine.apply` of every envelope, decoded beforehand
  (untimed): what the engine costs by itself;
- ``rebuild``: `recorder.recovery.rebuild(use_snapshot=False)`, the one
  recovery path, end to end (read, decode, `Engine.apply` of every command).

And ``lotex serve`` start-up on the same journal (a copy): from the journal
alone, then with the engine and gateway snapshots its first close wrote.

Events per second = recorded events / seconds. The goal for ``rebuild`` is
300,000 events/s; the ratio rebuild/scan shows what the engine costs on top
of reading. No timed assertion: the figures are printed and kept in the
benchmark's extra_info.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from exchange.codec import decode_entry
from exchange.engine import Engine
from exchange.commands import (CancelOrder, CreateInstrument, CreateLot, CreateSession,
                               IssuePaddle, IssueUnits, LotTerms, ModifyOrder, PlaceBid,
                               PlaceOrder, RegisterParty, ReviewCredit, ScheduleLot, VetLot)
from exchange.errors import MAX_INT
from recorder import layout
from recorder.journal import Journal
from recorder.recovery import rebuild
from replay.journaling import open_recording

EVENTS = int(os.environ.get("REPLAY_BENCH_EVENTS", "1000000"))
SEED = int(os.environ.get("REPLAY_BENCH_SEED", "20260302"))
SECOND = 10**9
T0 = 1_772_409_600 * SECOND
PADDLES = 300
MAX_COMMANDS = 2_000_000          # a bound whatever the mix gives
RESTING = 5_000                   # live orders tracked; older ones get cancelled


def build_journal(data_dir, events: int, seed: int) -> dict:
    """Record commands until the journal holds at least ``events`` events."""
    rng = random.Random(seed)
    d = open_recording(data_dir, start_ts=T0, commit_every=4096, durability="none")
    try:
        d.ok(CreateSession(session="B", name="bench", currency="USD"), ts=T0)
        broker_of: dict[int, str] = {}
        for i in range(PADDLES):
            broker = f"b{i % 10}"
            party = d.ok(RegisterParty(name=f"p{i}"), actor=broker, role="broker")[0].party
            d.ok(ReviewCredit(party=party, approved=True, credit_limit=MAX_INT,
                              agreement_version="v"))
            broker_of[d.ok(IssuePaddle(session="B", party=party))[0].paddle] = broker
        paddles = list(broker_of)
        d.ok(CreateInstrument(session="B", instrument="U", kind="units"))
        for paddle in paddles:
            d.ok(IssueUnits(session="B", instrument="U", paddle=paddle, qty=10**9))
        seller_party = d.engine.state.sessions["B"].paddles[paddles[0]]
        lots = []
        for n in range(20):
            serial = f"L{n}"
            d.ok(CreateLot(serial=serial, session="B", seller=seller_party, terms=LotTerms(
                title=serial, mechanism=("english", "sealed_first", "sealed_second")[n % 3],
                starting_bid=100_000, increments="ebay2003", opens_at=T0 + SECOND,
                closes_at=T0 + 10**6 * SECOND)), actor=broker_of[paddles[0]], role="broker")
            d.ok(VetLot(serial=serial, score=1, approved=True))
            d.ok(ScheduleLot(serial=serial))
            lots.append(serial)
        ts = T0 + SECOND
        mid = 10_000
        live: list[tuple[int, int]] = []
        next_id = {paddle: 0 for paddle in paddles}
        bid_level = {serial: 100_000 for serial in lots}
        while d.events_recorded < events and d.seq < MAX_COMMANDS:
            ts += rng.randrange(1, 50) * 1_000_000
            mid = max(100, mid + rng.choice((-1, 0, 0, 1)))
            paddle = rng.choice(paddles[1:])
            broker = broker_of[paddle]
            roll = rng.random()
            if roll < 0.55 or not live:
                next_id[paddle] += 1
                side = rng.choice(("buy", "sell"))
                aggressive = rng.random() < 0.15
                offset = int(rng.expovariate(0.2)) + 1
                if aggressive:
                    price = mid + offset if side == "buy" else max(1, mid - offset)
                else:
                    price = mid - offset if side == "buy" else mid + offset
                d.send(PlaceOrder(session="B", instrument="U", paddle=paddle,
                                  order=next_id[paddle], side=side, qty=rng.randrange(1, 500),
                                  price=max(1, price), tif="ioc" if aggressive else "gtc"),
                       actor=broker, role="broker", ts=ts)
                if not aggressive:
                    live.append((paddle, next_id[paddle]))
            elif roll < 0.80:
                owner, order = live.pop(rng.randrange(len(live)))
                d.send(CancelOrder(session="B", instrument="U", paddle=owner, order=order),
                       actor=broker_of[owner], role="broker", ts=ts)
            elif roll < 0.95:
                owner, order = live[rng.randrange(len(live))]
                d.send(ModifyOrder(session="B", instrument="U", paddle=owner, order=order,
                                   price=max(1, mid + rng.randrange(-20, 21)),
                                   qty=rng.randrange(1, 500)),
                       actor=broker_of[owner], role="broker", ts=ts)
            else:
                serial = rng.choice(lots)
                bid_level[serial] += rng.randrange(1_000, 20_000)
                d.send(PlaceBid(serial=serial, paddle=paddle, amount=bid_level[serial]),
                       actor=broker, role="broker", ts=ts)
            if len(live) > RESTING:            # traders cancel their stalest orders
                owner, order = live.pop(0)
                d.send(CancelOrder(session="B", instrument="U", paddle=owner, order=order),
                       actor=broker_of[owner], role="broker", ts=ts)
        d.commit()
        return {"entries": d.seq, "events": d.events_recorded}
    finally:
        d.journal.close()


@pytest.fixture(scope="session")
def journal(tmp_path_factory):
    data = tmp_path_factory.mktemp("replay-bench")
    started = time.perf_counter()
    counts = build_journal(data, EVENTS, SEED)
    counts["build_s"] = time.perf_counter() - started
    counts["bytes"] = sum(p.stat().st_size for p in layout.journal_dir(data).glob("*.seg"))
    counts["dir"] = data
    assert counts["events"] >= EVENTS
    print(f"\nreplay bench journal: {counts['entries']:,} entries, {counts['events']:,} events, "
          f"{counts['bytes'] / 2**20:,.1f} MiB, built in {counts['build_s']:.1f} s")
    return counts


def _scan(path) -> int:
    n = 0
    for _ in Journal.open_readonly(path).read():
        n += 1
    return n


def _scan_decode(path) -> int:
    n = 0
    for rec in Journal.open_readonly(path).read():
        n += len(decode_entry(rec.payload).events)
    return n


def test_replay_rebuild_vs_scan(benchmark, journal):
    path = layout.journal_dir(journal["dir"])
    events = journal["events"]
    figures = {}
    started = time.perf_counter()
    assert _scan(path) == journal["entries"]
    figures["scan"] = time.perf_counter() - started
    started = time.perf_counter()
    assert _scan_decode(path) == events
    figures["scan + decode"] = time.perf_counter() - started
    envelopes = [decode_entry(rec.payload).env for rec in Journal.open_readonly(path).read()]
    fresh = Engine()
    apply = fresh.apply
    started = time.perf_counter()
    for env in envelopes:
        apply(env)
    figures["engine only"] = time.perf_counter() - started
    del envelopes, fresh, apply

    engine = benchmark.pedantic(lambda: rebuild(journal_dir=path, use_snapshot=False),
                                rounds=3, iterations=1, warmup_rounds=0)
    assert engine.state.last_seq == journal["entries"]
    figures["rebuild"] = benchmark.stats.stats.min
    lines = []
    for name, seconds in figures.items():
        rate = events / seconds
        benchmark.extra_info[f"{name} events/s"] = round(rate)
        lines.append(f"{name:>14}: {seconds:6.2f} s  {rate:>12,.0f} events/s  "
                     f"{journal['entries'] / seconds:>10,.0f} entries/s")
    ratio = figures["rebuild"] / figures["scan"]
    benchmark.extra_info["rebuild/scan"] = round(ratio, 2)
    benchmark.extra_info["events"] = events
    print(f"\nreplay of {events:,} events ({journal['entries']:,} entries):\n" + "\n".join(lines)
          + f"\n  rebuild / scan time: {ratio:.1f}x; goal 300,000 events/s end to end")


def test_server_start_with_and_without_snapshots(benchmark, journal, tmp_path):
    """`lotex serve` start-up (recovery of the engine and of the gateway's
    feed, view and client ids) on the same journal: from the journal alone,
    then with the engine and gateway snapshots its first close wrote."""
    import shutil

    from gateway.config import Config
    from gateway.keys import initialise
    from gateway.server import Server

    data = tmp_path / "data"
    shutil.copytree(layout.journal_dir(journal["dir"]), layout.journal_dir(data))
    initialise(data)
    config = Config(broker_port=0, operator_port=0, feed_port=0, data_port=0)
    figures = {}

    def start() -> float:
        started = time.perf_counter()
        server = Server(data, config)
        server.start()
        took = time.perf_counter() - started
        assert server.durable_seq == journal["entries"]
        server.close()                   # the first close writes both snapshots
        return took

    figures["journal only"] = start()
    assert list(layout.gateway_snapshot_dir(data).glob("*.snap"))
    benchmark.pedantic(start, rounds=3, iterations=1, warmup_rounds=0)
    figures["with snapshots"] = benchmark.stats.stats.min
    for name, seconds in figures.items():
        benchmark.extra_info[f"{name} s"] = round(seconds, 3)
    ratio = figures["journal only"] / figures["with snapshots"]
    print(f"\nserver start on {journal['entries']:,} entries: journal only "
          f"{figures['journal only']:.2f} s, with snapshots {figures['with snapshots']:.2f} s "
          f"({ratio:.0f}x)")
