"""Drive an engine as the gateway does: apply, journal the entry, commit."""

from __future__ import annotations

from typing import Any

from exchange.codec import Entry, encode_entry
from exchange.commands import (CreateSession, IssuePaddle, RegisterParty, ReviewCredit, SetDisplayRate)
from exchange.driver import Driver
from recorder.format import KIND_ENTRY

SECOND = 1_000_000_000
T0 = 1_767_225_600 * SECOND        # 2026-01-01T00:00:00Z


class JournaledDriver(Driver):
    """A `Driver` whose every command is journaled (one ENTRY per command)."""

    def __init__(self, journal: Any, **kw: Any) -> None:
        super().__init__(keep_log=True, **kw)
        self.journal = journal

    def send(self, cmd, **kw):  # type: ignore[override]
        events = super().send(cmd, **kw)
        env, _ = self.log[-1]
        seq = self.journal.append(env.ts, KIND_ENTRY, encode_entry(Entry(env, events)))
        assert seq == env.seq, (seq, env.seq)
        self.journal.commit()
        return events


def core_session(d: Driver, parties: int = 6, *, start: int = T0, session: str = "S1") -> list[int]:
    """Create a session, register and review parties, issue paddles, with a
    few refusals on the way; return the party ids. One command a second."""
    ts = start
    d.ok(CreateSession(session=session, name="Spring patents", currency="USD"), ts=ts)
    d.ok(SetDisplayRate(base="USD", quote="CNY", num=664, den=100), ts=ts)
    ids = []
    for i in range(parties):
        ts += SECOND
        broker = f"broker-{i % 3}"
        party = d.ok(RegisterParty(name=f"Party {i}", country="US" if i % 2 else "CN"), actor=broker,
                     role="broker", ts=ts)[0].party
        ids.append(party)
        d.refused(IssuePaddle(session=session, party=party), ts=ts)          # not approved yet
        d.ok(ReviewCredit(party=party, approved=i % 4 != 3, credit_limit=1_000_000 * (i + 1),
                          agreement_version="BRA-2026"), ts=ts)
        if i % 4 != 3:
            d.ok(IssuePaddle(session=session, party=party), ts=ts + 1)
    d.refused(CreateSession(session=session, name="again"), ts=ts + 2)
    return ids


MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
USD = 100


def market_day(d: Driver, *, seed: int = 7, lots: int = 4, bids: int = 120, orders: int = 200,
               start: int = T0, session: str = "S1") -> None:
    """A seeded day of trading: parties and paddles, English and sealed lots
    with bids (some refused), a pass, a units book with orders and trades,
    and the closes. Deterministic for a seed."""
    import random

    from exchange.commands import (CloseSession, CreateInstrument, CreateLot, IssueUnits, LotTerms, Patent,
                                   PlaceBid, PlaceOrder, CancelOrder, ScheduleLot, VetLot)

    rng = random.Random(seed)
    ts = start
    d.ok(CreateSession(session=session, name="Market day", currency="USD"), ts=ts)
    seller = d.ok(RegisterParty(name="Seller Inc"), actor="seller-broker", role="broker", ts=ts)[0].party
    d.ok(ReviewCredit(party=seller, approved=True, credit_limit=0, agreement_version="BRA-2026"), ts=ts)
    d.ok(IssuePaddle(session=session, party=seller), ts=ts)
    brokers: dict[int, str] = {}
    for i in range(6):
        broker = f"broker-{i % 3}"
        party = d.ok(RegisterParty(name=f"Bidder {i}"), actor=broker, role="broker", ts=ts)[0].party
        d.ok(ReviewCredit(party=party, approved=True, credit_limit=10**11, agreement_version="BRA-2026"), ts=ts)
        brokers[d.ok(IssuePaddle(session=session, party=party), ts=ts)[0].paddle] = broker
    paddles = list(brokers)
    serials = []
    for n in range(lots):
        serial = f"{session}-L{n}"
        mechanism = "sealed_second" if n % 3 == 2 else "english"
        terms = LotTerms(title=f"Portfolio {n}", currency="USD", mechanism=mechanism,
                         starting_bid=1_000 * USD, increments="custom", custom_increments=((0, 100 * USD),),
                         opens_at=start + HOUR, closes_at=start + DAY, buyer_premium_bp=1_000,
                         seller_commission_bp=1_500,
                         patents=tuple(Patent(number=f"US{7_000_000 + 10 * n + k}", title=f"Patent {n}.{k}",
                                              family_id=f"F{n}", field="printing") for k in range(1 + n % 3)))
        reserve = 10**9 if n == 1 else 0        # lot 1 passes: reserve not met
        d.ok(CreateLot(serial=serial, session=session, seller=seller, terms=terms, reserve=reserve),
             actor="seller-broker", role="broker", ts=ts)
        d.ok(VetLot(serial=serial, score=80, approved=True), ts=ts)
        d.ok(ScheduleLot(serial=serial), ts=ts)
        serials.append(serial)
    d.tick(start + HOUR)
    instrument = f"{session}-U"
    d.ok(CreateInstrument(session=session, instrument=instrument), ts=start + HOUR)
    for paddle in paddles:
        d.ok(IssueUnits(session=session, instrument=instrument, paddle=paddle, qty=1_000), ts=start + HOUR)
    ts = start + HOUR
    step = (DAY - 2 * HOUR) // max(1, bids + orders)
    live: dict[int, list[int]] = {p: [] for p in paddles}
    next_order = 1
    plan = ["bid"] * bids + ["order"] * orders
    rng.shuffle(plan)
    for what in plan:
        ts += step
        paddle = rng.choice(paddles)
        if what == "bid":
            d.send(PlaceBid(serial=rng.choice(serials), paddle=paddle, amount=rng.randrange(900, 5_000) * USD),
                   actor=brokers[paddle], role="broker", ts=ts)
        elif live[paddle] and rng.random() < 0.2:
            d.send(CancelOrder(session=session, instrument=instrument, paddle=paddle, order=live[paddle].pop(0)),
                   actor=brokers[paddle], role="broker", ts=ts)
        else:
            d.send(PlaceOrder(session=session, instrument=instrument, paddle=paddle, order=next_order,
                              side=rng.choice(("buy", "sell")), qty=rng.randrange(1, 20),
                              price=rng.randrange(95, 106) * USD), actor=brokers[paddle], role="broker", ts=ts)
            live[paddle].append(next_order)
            next_order += 1
    d.tick(start + DAY + MINUTE)
    d.ok(CloseSession(session=session), ts=start + DAY + 2 * MINUTE)
