"""Recorded sessions for the replay tests: the demo session and seeded random streams.

`record_random` drives a seeded random mix of commands (bids of every kind,
withdrawals, Ask purchases, offers after a pass, orders of every time in
force, modifies, cancels, mass cancels, call auctions, clock ticks) through
the real engine into a real journal, as the stress tests do; many commands
are refused, which is part of the record too.
"""

from __future__ import annotations

import random
from pathlib import Path

from exchange.commands import (BuyAtAsk, CancelOrder, CreateInstrument, CreateLot, CreateSession,
                               IssuePaddle, IssueUnits, LotTerms, MakeOffer, MassCancel,
                               ModifyOrder, Patent, PlaceBid, PlaceOrder, RegisterParty,
                               ReviewCredit, ScheduleLot, SetDisplayRate, StartCall, Uncross,
                               VetLot, WithdrawBid)
from replay.journaling import open_recording

SECOND = 10**9
MINUTE = 60 * SECOND
T0 = 1_767_225_600 * SECOND        # 2026-01-01T00:00:00Z
MECHANISMS = ("english", "english", "sealed_first", "sealed_second", "dutch")


def record_random(data_dir: Path, seed: int, commands: int, *, snapshot_every: int = 0,
                  segment_bytes: int = 64 << 20) -> dict:
    """Record ``commands`` seeded random commands (after a setup) into ``data_dir``.
    Return counts: entries and events."""
    rng = random.Random(seed)
    d = open_recording(data_dir, start_ts=T0, commit_every=64, segment_bytes=segment_bytes)
    brokers = ("b1", "b2", "b3")
    paddle_broker: dict[int, str] = {}
    try:
        d.ok(CreateSession(session="R", name="random", currency="USD"), ts=T0)
        d.ok(SetDisplayRate(base="USD", quote="EUR", num=92, den=100))
        for i in range(8):
            broker = brokers[i % 3]
            party = d.ok(RegisterParty(name=f"party {i}"), actor=broker, role="broker")[0].party
            d.ok(ReviewCredit(party=party, approved=True, credit_limit=rng.randrange(10**6, 10**9),
                              agreement_version="v1"))
            paddle = d.ok(IssuePaddle(session="R", party=party))[0].paddle
            paddle_broker[paddle] = broker
        seller_paddle = 101
        seller = d.engine.state.sessions["R"].paddles[seller_paddle]
        serials = []
        for n in range(12):
            serial = f"R-{n}"
            mechanism = MECHANISMS[n % len(MECHANISMS)]
            opens = T0 + rng.randrange(1, 600) * MINUTE
            closes = opens + rng.randrange(120, 3_000) * MINUTE
            soft = n % 3 == 0 and mechanism == "english"     # the only one with a soft close
            terms = LotTerms(title=f"lot {n}", mechanism=mechanism, starting_bid=10_000,
                             increments="ebay2003", opens_at=opens, closes_at=closes,
                             hard_end=closes + 30 * MINUTE,
                             soft_window=5 * MINUTE if soft else 0,
                             soft_extend=5 * MINUTE if soft else 0,
                             ask=900_000 if n % 4 == 1 and mechanism != "dutch" else 0,
                             buyer_premium_bp=1_000, seller_commission_bp=1_500,
                             negotiation_window=120 * MINUTE, display_currency="EUR",
                             dutch_start=2_000_000, dutch_step=50_000, dutch_interval=2 * MINUTE,
                             patents=(Patent(number=f"US-{8_000_000 + n}", title="p",
                                             family_id=f"F{n % 4}", field="imaging"),))
            d.send(CreateLot(serial=serial, session="R", seller=seller, terms=terms,
                             reserve=rng.choice((0, 0, 50_000, 400_000))),
                   actor=paddle_broker[seller_paddle], role="broker")
            d.send(VetLot(serial=serial, score=50, approved=n != 7))
            d.send(ScheduleLot(serial=serial))
            serials.append(serial)
        d.ok(CreateInstrument(session="R", instrument="U", kind="units"))
        for paddle in list(paddle_broker)[:4]:
            d.ok(IssueUnits(session="R", instrument="U", paddle=paddle, qty=5_000))
        ts = T0
        order_ids = {paddle: 0 for paddle in paddle_broker}
        for _ in range(commands):
            ts += rng.randrange(0, 40) * SECOND
            paddle = rng.choice(list(paddle_broker))
            broker = paddle_broker[paddle]
            kind = rng.random()
            serial = rng.choice(serials)
            if kind < 0.30:
                d.send(PlaceBid(serial=serial, paddle=paddle,
                                amount=rng.randrange(5_000, 2_500_000)),
                       actor=broker, role="broker", ts=ts)
            elif kind < 0.33:
                d.send(WithdrawBid(serial=serial, paddle=paddle), actor=broker, role="broker",
                       ts=ts)
            elif kind < 0.35:
                d.send(BuyAtAsk(serial=serial, paddle=paddle), actor=broker, role="broker", ts=ts)
            elif kind < 0.38:
                d.send(MakeOffer(serial=serial, paddle=paddle, amount=rng.randrange(5_000, 500_000)),
                       actor=broker, role="broker", ts=ts)
            elif kind < 0.70:
                order_ids[paddle] += 1
                tif = rng.choice(("gtc", "gtc", "gtc", "ioc", "fok", "gtd", "market"))
                d.send(PlaceOrder(session="R", instrument="U", paddle=paddle,
                                  order=order_ids[paddle], side=rng.choice(("buy", "sell")),
                                  qty=rng.randrange(1, 300),
                                  price=0 if tif == "market" else rng.randrange(90, 111),
                                  tif=tif, expires=ts + rng.randrange(1, 30) * MINUTE
                                  if tif == "gtd" else 0,
                                  post_only=tif == "gtc" and rng.random() < 0.1),
                       actor=broker, role="broker", ts=ts)
            elif kind < 0.80:
                d.send(CancelOrder(session="R", instrument="U", paddle=paddle,
                                   order=rng.randrange(1, order_ids[paddle] + 2)),
                       actor=broker, role="broker", ts=ts)
            elif kind < 0.88:
                d.send(ModifyOrder(session="R", instrument="U", paddle=paddle,
                                   order=rng.randrange(1, order_ids[paddle] + 2),
                                   price=rng.randrange(90, 111), qty=rng.randrange(1, 300)),
                       actor=broker, role="broker", ts=ts)
            elif kind < 0.89:
                d.send(MassCancel(session="R", instrument="U"), actor=broker, role="broker", ts=ts)
            elif kind < 0.90:
                d.send(StartCall(session="R", instrument="U"), ts=ts)
            elif kind < 0.92:
                d.send(Uncross(session="R", instrument="U"), ts=ts)
            else:
                ts += rng.randrange(1, 20) * MINUTE
                d.tick(ts)
            if snapshot_every and d.seq % snapshot_every == 0:
                d.snapshot(data_dir)
        d.tick(ts + 24 * 60 * MINUTE)
        d.commit()
        return {"entries": d.seq, "events": d.events_recorded}
    finally:
        d.journal.close()
