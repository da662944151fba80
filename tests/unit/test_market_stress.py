"""Seeded random stress of the whole book through the engine, every invariant
checked after every envelope: orders of every kind, cancels, modifies, GTD
expiries, mass cancels, call periods and uncrosses, unit consumption, limits
on resting orders set and changed, with tight credit limits and holdings so
that refusals happen too.

Seed: ``MARKET_STRESS_SEED`` (default 7); a failure names its seed and step.
"""

from __future__ import annotations

import os
import random

from exchange.commands import (CancelOrder, ConsumeUnits, MassCancel, ModifyOrder, PlaceOrder,
                               HaltTrading, RecordUnitsPayment, ResumeTrading, SetOrderLimit,
                               SetPriceRules, StartCall,
                               Uncross)
from exchange.events import CommandRejected, OrderAccepted, OrderModified, TradeExecuted
from tests.unit.test_market import SECOND, Market

SEED = int(os.environ.get("MARKET_STRESS_SEED", "7"))


def test_random_stress_keeps_every_invariant():
    for seed in range(SEED, SEED + 3):
        rnd = random.Random(seed)
        mk = Market(parties=4, limit=60_000, stp=rnd.choice(["cancel_newest", "cancel_oldest",
                                                            "cancel_both"]), units=200,
                    max_orders=rnd.choice([0, 3, 8]))     # the open-order count checked too
        brokers = list(mk.paddle)
        trades = refusals = step = 0
        mk.halted_refusals = 0               # orders and modifies refused while halted
        # 1,500 steps, and on (up to 6,000) until the run has traded and been
        # refused enough, and an order came during a halt, so that any seed
        # exercises all three.
        while step < 1500 or (step < 6000 and (trades <= 50 or refusals <= 50
                                               or not mk.halted_refusals)):
            try:
                got = _step(mk, rnd, brokers)
            except AssertionError as broken:
                raise AssertionError(f"seed {seed} step {step}: {broken}") from broken
            trades += got[0]
            refusals += got[1]
            step += 1
        assert trades > 50 and refusals > 50, \
            f"seed {seed}: {trades} trades, {refusals} refusals in {step} steps"
        assert mk.halted_refusals > 0, f"seed {seed}: no order came while trading was halted"


def _step(mk: Market, rnd: random.Random, brokers: list[str]) -> tuple[int, int]:
    """Send one random command; return (trades, refusals) it caused."""
    broker = rnd.choice(brokers)
    paddle = mk.paddle[broker]
    oid = rnd.randint(1, 15)
    roll = rnd.random()
    phase = mk.state.books["U"].phase
    if roll < 0.5:
        tif = rnd.choice(["gtc", "gtc", "gtd", "ioc", "fok", "market"])
        kw = {}
        if tif == "gtd":
            kw["expires"] = mk.d.ts + rnd.randint(1, 20) * SECOND
        cmd = PlaceOrder(session="S", instrument="U", paddle=paddle, order=oid,
                         side=rnd.choice(["buy", "sell"]), qty=rnd.randint(1, 30),
                         price=0 if tif == "market" else rnd.randint(90, 110), tif=tif,
                         post_only=tif in ("gtc", "gtd") and rnd.random() < 0.1, **kw)
    elif roll < 0.7:
        cmd = CancelOrder(session="S", instrument="U", paddle=paddle, order=oid)
    elif roll < 0.85:
        cmd = ModifyOrder(session="S", instrument="U", paddle=paddle, order=oid,
                          price=rnd.randint(90, 110), qty=rnd.randint(1, 30))
    elif roll < 0.88:
        cmd = MassCancel(session="S", paddle=paddle if rnd.random() < 0.5 else 0)
    elif roll < 0.91:
        cmd = ConsumeUnits(session="S", instrument="U", paddle=paddle,
                           qty=rnd.randint(1, 10))
    elif roll < 0.93:                   # an operator records a payment for units bought
        events = mk.d.send(RecordUnitsPayment(session="S", instrument="U", paddle=paddle,
                                              amount=rnd.randint(1, 3000)),
                           actor="op", role="operator", ts=mk.d.ts + 1000)
        return 0, sum(isinstance(e, CommandRejected) for e in events)
    elif roll < 0.935:                  # the operator changes the resting-order limit
        events = mk.d.send(SetOrderLimit(session="S", instrument="U",
                                         max_orders=rnd.choice([0, 1, 3, 8])),
                           actor="op", role="operator", ts=mk.d.ts + 1000)
        return 0, sum(isinstance(e, CommandRejected) for e in events)
    elif roll < 0.94:                   # ... or the tick and the price band
        events = mk.d.send(SetPriceRules(session="S", instrument="U",
                                         tick=rnd.choice([1, 1, 2, 5]),
                                         band_bp=rnd.choice([0, 0, 500, 2_000])),
                           actor="op", role="operator", ts=mk.d.ts + 1000)
        return 0, sum(isinstance(e, CommandRejected) for e in events)
    elif roll < 0.96:
        if phase == "halted":
            op_cmd: object = ResumeTrading(session="S", instrument="U",
                                           phase=rnd.choice(["continuous", "call"]))
        elif rnd.random() < 0.15:
            op_cmd = HaltTrading(session="S", instrument="U", reason="news pending")
        elif phase == "continuous":
            op_cmd = StartCall(session="S", instrument="U")
        else:
            op_cmd = Uncross(session="S", instrument="U", reference=rnd.choice([0, 100]))
        events = mk.d.send(op_cmd, ts=mk.d.ts + SECOND)
        return sum(isinstance(e, TradeExecuted) for e in events), 0
    else:
        mk.d.tick(mk.d.ts + rnd.randint(1, 5) * SECOND)
        return 0, 0
    inst = mk.state.books["U"]
    held = inst.open_orders.get(paddle, 0)
    try:
        events = mk.d.send(cmd, actor=broker, role="broker", ts=mk.d.ts + 1000)
    except AssertionError as broken:
        raise AssertionError(f"{cmd}: {broken}") from broken
    if phase == "halted" and not isinstance(cmd, (CancelOrder, MassCancel, ConsumeUnits)):
        assert not any(isinstance(e, (OrderAccepted, OrderModified, TradeExecuted))
                       for e in events), f"{cmd}: accepted while trading is halted"
        mk.halted_refusals += 1
    state = mk.state
    for (_, party), found in state.exposure.items():
        assert found.total <= state.parties[party].credit_limit, \
            f"{cmd}: party {party} commits {found.total} over its limit"
    now_held = inst.open_orders.get(paddle, 0)
    assert not inst.max_orders or now_held <= max(held, inst.max_orders), (
        f"{cmd}: paddle {paddle} went from {held} to {now_held} resting orders over the "
        f"limit of {inst.max_orders}")
    return (sum(isinstance(e, TradeExecuted) for e in events),
            sum(isinstance(e, CommandRejected) for e in events))
