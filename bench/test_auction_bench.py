"""Bids per second through the whole engine: English with proxy bids, and sealed.

Run: ``.venv/bin/python -m pytest bench/test_auction_bench.py --benchmark-only -s``
(``-s`` prints the bids/second lines). Environment: ``AUCTION_BENCH_BIDS``
(default 20,000 per round), ``AUCTION_BENCH_SEED``.

Each round applies the same pre-built stream of sequenced `PlaceBid`
envelopes to a fresh engine holding one session, 200 approved bidders with
paddles and one open lot (10 % buyer's premium, so every bid passes the
credit check against the bidder's session-wide limit and moves commitments).
The invariant checker is off, as in production.

- English: eBay's 2003 increments; each bid is a paddle's new maximum, drawn
  between the least acceptable bid and twenty increments above it, so the
  stream mixes new leaders, proxies that are outbid at once, and leaders
  raising their own maximum; every bid is accepted.
- Sealed (second price): each bid replaces its paddle's live sealed bid.
"""

from __future__ import annotations

import os
import random

import pytest

from exchange import Engine
from exchange.commands import (CreateLot, CreateSession, Envelope, IssuePaddle, LotTerms,
                               PlaceBid, RegisterParty, ReviewCredit, ScheduleLot, VetLot)
from exchange.english import minimum_bid
from exchange.events import CommandRejected

BIDS = int(os.environ.get("AUCTION_BENCH_BIDS", "20000"))
SEED = int(os.environ.get("AUCTION_BENCH_SEED", "20260101"))
BIDDERS = 200
T0 = 1_767_225_600 * 10**9
DAY = 86_400 * 10**9


def setup_envelopes(mechanism: str) -> list[Envelope]:
    """Session, bidders, paddles and one open lot, as sequenced envelopes."""
    commands = [("op", "operator", CreateSession(session="B", name="bench", currency="USD")),
                ("seller-broker", "broker", RegisterParty(name="Seller"))]
    for index in range(BIDDERS):
        commands.append((f"broker-{index % 10}", "broker", RegisterParty(name=f"Bidder {index}")))
    envelopes: list[Envelope] = []
    seq = 0
    for actor, role, cmd in commands:
        seq += 1
        envelopes.append(Envelope(seq=seq, ts=T0, actor=actor, role=role, cmd=cmd, client_id=""))
    parties = [env.seq for env in envelopes[1:]]
    for party in parties:
        seq += 1
        envelopes.append(Envelope(seq=seq, ts=T0, actor="op", role="operator",
                                  cmd=ReviewCredit(party=party, approved=True,
                                                   credit_limit=10**14, agreement_version="v1"), client_id=""))
    for party in parties[1:]:
        seq += 1
        envelopes.append(Envelope(seq=seq, ts=T0, actor="op", role="operator",
                                  cmd=IssuePaddle(session="B", party=party), client_id=""))
    terms = LotTerms(title="Bench lot", mechanism=mechanism, starting_bid=10_000,
                     increments="ebay2003", opens_at=T0, closes_at=T0 + DAY,
                     buyer_premium_bp=1_000, seller_commission_bp=1_500)
    for actor, role, cmd in (("seller-broker", "broker",
                              CreateLot(serial="X", session="B", seller=parties[0], terms=terms)),
                             ("op", "operator", VetLot(serial="X", score=1, approved=True)),
                             ("op", "operator", ScheduleLot(serial="X"))):
        seq += 1
        envelopes.append(Envelope(seq=seq, ts=T0, actor=actor, role=role, cmd=cmd, client_id=""))
    return envelopes


def fresh_engine(setup: list[Envelope]) -> Engine:
    engine = Engine()
    for env in setup:
        engine.apply(env)
    assert engine.state.lots["X"].status == "open"
    return engine


def bid_stream(mechanism: str, setup: list[Envelope]) -> list[Envelope]:
    """Build ``BIDS`` accepted bids by running them once through an engine."""
    rng = random.Random(SEED)
    engine = fresh_engine(setup)
    lot = engine.state.lots["X"]
    seq = setup[-1].seq
    stream: list[Envelope] = []
    ts = T0 + 1
    while len(stream) < BIDS:
        paddle = 101 + rng.randrange(BIDDERS)
        if mechanism == "english":
            if paddle == lot.leader:
                amount = lot.leader_max + rng.randrange(1, 20) * lot.ladder.at(lot.leader_max)
            else:
                least = minimum_bid(lot)
                amount = least + rng.randrange(0, 20) * lot.ladder.at(least)
        else:
            amount = 10_000 + rng.randrange(0, 1_000_000)
        seq += 1
        ts += 1_000
        env = Envelope(seq=seq, ts=ts, actor=f"broker-{(paddle - 101) % 10}", role="broker",
                       cmd=PlaceBid(serial="X", paddle=paddle, amount=amount), client_id="")
        events = engine.apply(env)
        assert not any(isinstance(event, CommandRejected) for event in events), events
        stream.append(env)
    return stream


@pytest.mark.parametrize("mechanism", ["english", "sealed_second"])
def test_auction_bids_per_second(benchmark, mechanism):
    setup = setup_envelopes(mechanism)
    stream = bid_stream(mechanism, setup)

    def prepare():
        return (fresh_engine(setup),), {}

    def run(engine: Engine) -> None:
        apply = engine.apply
        for env in stream:
            apply(env)

    benchmark.pedantic(run, setup=prepare, rounds=5, iterations=1)
    rate = int(len(stream) / benchmark.stats.stats.mean)
    benchmark.extra_info["bids_per_second"] = rate
    print(f"\n{mechanism}: {len(stream):,} bids, {rate:,} bids/second through Engine.apply")
