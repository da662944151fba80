"""Seeded random stress of auctions and settlement, every invariant on.

Lots of every auction kind sell (auction, Ask, Dutch, negotiated) and
agreement transfers are recorded; then settlement commands, good and bad,
from the right and the wrong senders, in and out of order: payments (part,
full, over), deliveries, receipts, disputes and their resolutions, releases,
defaults with re-award or relisting, answers to re-award offers, due-date
extensions, freezes lifted, publicity and objections, rules changes, with
the clock jumping past due dates and windows. After every command the
engine's invariants run (`Engine.check_invariants`, including settlement's
money conservation per settlement and per currency), and this test checks
independently, from the events alone, that what buyers paid in equals what
sellers, the venue and refunds took out plus the escrow balance; that a
refused command is the envelope's last event and (sampled) changed nothing;
that no party's commitments exceed its limit; and at the end that replaying
the journal (with a snapshot and restore halfway) gives the same events
byte for byte. Set LOTEX_SETTLEMENT_SEED to reproduce a failure (the seed
is in every assertion message) and LOTEX_SETTLEMENT_COMMANDS for the length.
"""

from __future__ import annotations

import os
import random

from exchange import Engine
from exchange.codec import encode
from exchange.commands import (AnswerReaward, BuyAtAsk, ConfirmReceipt, CreateLot, DeclareDefault,
                               ExtendDueDate, LiftFreeze, MarkStateTransfer, PlaceBid, RaiseDispute,
                               RecordAgreementTransfer, RecordDelivery, RecordNegotiatedSale,
                               RecordObjection, RecordPayment, ReleaseFunds, RelistLot,
                               ResolveDispute, ResolveObjection, ScheduleLot, SetSettlementRules,
                               VetLot)
from exchange.events import (CertificateIssued, FundsRefunded, FundsReleased,
                             LotAwarded, PaymentRecorded, SettlementCancelled, SettlementCompleted)
from tests.unit.auctionkit import DAY, HOUR, MINUTE, USD, Market

SEED = int(os.environ.get("LOTEX_SETTLEMENT_SEED", "20260707"))
COMMANDS = int(os.environ.get("LOTEX_SETTLEMENT_COMMANDS", "3000"))
MECHANISMS = ("english", "english", "sealed_first", "sealed_second", "dutch")
NEXT_STEP = {  # status -> the steps that would move it on
    "awaiting_payment": ("pay", "pay", "pay", "default"), "paid": ("deliver", "deliver", "dispute"),
    "delivered": ("confirm", "confirm", "dispute"), "received": ("release",),
    "disputed": ("resolve",), "completed": ("release", "pay"), "cancelled": ("reaward", "pay"),
}


class Stress:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.m = Market(log=True)
        self.sellers = [self.m.seller(f"Seller {i}", broker=f"seller-broker-{i}")
                        for i in range(2)]
        self.paddles = [self.m.bidder(f"Bidder {i}", limit=self.rng.choice(
            (20_000, 60_000, 300_000)) * USD, broker=f"broker-{i % 3}") for i in range(7)]
        self.m.d.ok(SetSettlementRules(session="S1", payment_term=5 * DAY, reaward_window=DAY,
                                       publicity_period=2 * DAY))
        self.brokers = ["broker-0", "broker-1", "broker-2", "seller-broker-0", "seller-broker-1"]
        self.serials: list[str] = []
        self.agreements = 0
        self.paid_in = 0
        self.taken_out = 0
        self.counts: dict[str, int] = {}
        self.rejected = 0

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # ------------------------------------------------------------------ auctions

    def new_lot(self) -> list[tuple]:
        rng, m = self.rng, self.m
        serial = f"L{len(self.serials) + 1:04d}"
        self.serials.append(serial)
        mechanism = rng.choice(MECHANISMS)
        seller = rng.choice(self.sellers)
        start = rng.choice((500, 1_000, 2_000)) * USD
        opens = m.d.ts + rng.randrange(0, HOUR)
        closes = opens + rng.randrange(2 * HOUR, DAY)
        fields: dict = dict(mechanism=mechanism, starting_bid=start, opens_at=opens,
                            closes_at=closes, buyer_premium_bp=rng.choice((0, 1_000, 1_250)),
                            seller_commission_bp=rng.choice((0, 1_500)),
                            negotiation_window=rng.choice((0, DAY)))
        if mechanism != "dutch" and rng.random() < 0.25:
            fields["ask"] = rng.choice((4, 8)) * start
        if mechanism == "dutch":
            fields.update(dutch_start=8 * start, dutch_step=start, dutch_interval=HOUR)
        reserve = rng.choice((0, 0, start, 3 * start))
        broker = f"seller-broker-{self.sellers.index(seller)}"
        return [(CreateLot(serial=serial, session="S1", seller=seller,
                           terms=m.terms(**fields), reserve=reserve), broker, "broker"),
                (VetLot(serial=serial, score=70, approved=True), "op", "operator"),
                (ScheduleLot(serial=serial), "op", "operator")]

    def auction_step(self) -> list[tuple]:
        rng, state = self.rng, self.m.state
        recent = self.serials[-12:]
        live = [s for s in recent if state.lots[s].status in ("open", "scheduled")]
        passed = [s for s in recent if state.lots[s].status == "passed"]
        if len(live) < 3 or rng.random() < 0.05:
            return self.new_lot()
        paddle = rng.choice(self.paddles)
        broker = self.m.brokers[paddle]
        if passed and rng.random() < 0.15:
            lot = state.lots[rng.choice(passed)]
            if rng.random() < 0.3:
                opens = self.m.d.ts
                return [(RelistLot(serial=lot.serial, opens_at=opens, closes_at=opens + DAY),
                         "op", "operator")]
            amount = max(lot.reserve, lot.terms.starting_bid) * rng.randrange(60, 130) // 100
            return [(RecordNegotiatedSale(serial=lot.serial, paddle=paddle, amount=amount or 1),
                     "op", "operator")]
        lot = state.lots[rng.choice(live)]
        if lot.terms.ask and rng.random() < 0.1:
            return [(BuyAtAsk(serial=lot.serial, paddle=paddle), broker, "broker")]
        if lot.mechanism == "english" and lot.leader:
            base = lot.price + lot.ladder.at(lot.price)
        else:
            base = max(lot.clock, lot.terms.starting_bid)
        amount = base + rng.randrange(0, 15) * 100 * USD
        return [(PlaceBid(serial=lot.serial, paddle=paddle, amount=amount), broker, "broker")]

    def agreement(self) -> list[tuple]:
        rng, m = self.rng, self.m
        self.agreements += 1
        buyer = m.parties[rng.choice(self.paddles)]
        seller = rng.choice(self.sellers + [buyer])
        return [(RecordAgreementTransfer(
            session="S1", serial=f"AT{self.agreements:04d}", title="Agreed transfer",
            seller=seller, buyer=buyer, price=rng.randrange(1, 200) * 100 * USD,
            buyer_premium_bp=rng.choice((0, 500)), seller_commission_bp=rng.choice((0, 1_000)),
            state_institution=rng.random() < 0.4), "op", "operator")]

    # ------------------------------------------------------------------ settlement

    def actor(self, right: str, role: str = "broker") -> tuple[str, str]:
        """The right sender mostly, else a wrong broker, an operator or a viewer."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.85:
            return right, role
        if roll < 0.93:
            return rng.choice(self.brokers), "broker"
        if roll < 0.97:
            return "op", "operator"
        return "viewer", "viewer"

    def settlement_step(self) -> list[tuple]:
        rng, state = self.rng, self.m.state
        if not state.settlements:
            return self.auction_step()
        pool = [s for s in state.settlements.values() if s.status not in ("completed", "cancelled")]
        if not pool or rng.random() < 0.08:
            pool = list(state.settlements.values())
        s = rng.choice(pool[:4] if rng.random() < 0.5 else pool[-12:])
        sid = s.id if rng.random() > 0.01 else 10**6
        buyer_broker = state.parties[s.buyer].broker
        seller_broker = state.parties[s.seller].broker
        if state.extra["settlement"].offers and rng.random() < 0.15:
            kind = "reaward"
        elif rng.random() < 0.5:
            kind = rng.choice(NEXT_STEP[s.status])
        else:
            kind = rng.choices(
                ("pay", "deliver", "confirm", "dispute", "resolve", "release", "default", "extend",
                 "reaward", "lift", "publicity", "object", "decide", "rules"),
                weights=(20, 10, 10, 4, 5, 10, 5, 2, 6, 10, 3, 3, 3, 1))[0]
        if kind == "pay":
            outstanding = s.total - s.paid
            amount = rng.choice((outstanding, outstanding, max(1, outstanding // 2),
                                 outstanding + 1, 0))
            return [(RecordPayment(settlement=sid, amount=amount, reference="W"),
                     *self.actor("op", "operator"))]
        if kind == "deliver":
            return [(RecordDelivery(settlement=sid, reference="DOC"), *self.actor(seller_broker))]
        if kind == "confirm":
            return [(ConfirmReceipt(settlement=sid), *self.actor(buyer_broker))]
        if kind == "dispute":
            return [(RaiseDispute(settlement=sid, reason=rng.choice(("late", "missing", ""))),
                     *self.actor(buyer_broker))]
        if kind == "resolve":
            outcome = rng.choice(("release", "refund", "partial_refund"))
            amount = rng.choice((1, s.net // 3, s.net, s.net + 1)) if outcome == "partial_refund" else 0
            return [(ResolveDispute(settlement=sid, outcome=outcome, amount=amount,
                                    reason=rng.choice(("panel", "panel", ""))),
                     *self.actor("op", "operator"))]
        if kind == "release":
            return [(ReleaseFunds(settlement=sid), *self.actor("op", "operator"))]
        if kind == "default":
            if rng.random() < 0.3 and s.status == "awaiting_payment" and not s.overdue:
                self.m.d.ts = max(self.m.d.ts, s.due_at)   # let it fall due first
            return [(DeclareDefault(settlement=sid, reason="unpaid",
                                    next=rng.choice(("reaward", "reaward", "relist"))),
                     *self.actor("op", "operator"))]
        if kind == "extend":
            return [(ExtendDueDate(settlement=sid, due_at=s.due_at + rng.choice((-HOUR, DAY))),
                     *self.actor("op", "operator"))]
        if kind == "reaward":
            offers = list(state.extra["settlement"].offers.values())
            if not offers:
                return self.auction_step()
            offer = rng.choice(offers)
            if rng.random() < 0.3:
                self.m.d.ts = max(self.m.d.ts, offer.expires_at)  # let it expire
            paddle = offer.paddle if rng.random() < 0.9 else rng.choice(self.paddles)
            return [(AnswerReaward(serial=offer.serial, paddle=paddle, accept=rng.random() < 0.6),
                     *self.actor(self.m.brokers[paddle]))]
        if kind == "lift":
            frozen = [party.id for party in state.parties.values() if party.frozen]
            party = rng.choice(frozen) if frozen else s.buyer
            return [(LiftFreeze(party=party, reason="cleared"), *self.actor("op", "operator"))]
        if kind == "publicity":
            return [(MarkStateTransfer(settlement=sid), *self.actor("op", "operator"))]
        if kind == "object":
            if s.publicity == "running" and rng.random() < 0.5:
                self.m.d.ts = max(self.m.d.ts, s.publicity_ends - rng.choice((HOUR, 0)))
            return [(RecordObjection(settlement=sid, objector="staff", reason="price"),
                     *self.actor("op", "operator"))]
        if kind == "decide":
            return [(ResolveObjection(settlement=sid, action=rng.choice(("dismiss", "uphold")),
                                      reason="decided"), *self.actor("op", "operator"))]
        term = rng.choice((HOUR, DAY, 3 * DAY, 0))
        return [(SetSettlementRules(session="S1", payment_term=term, reaward_window=term or HOUR,
                                    publicity_period=2 * term or DAY), "op", "operator")]

    # ------------------------------------------------------------------ run

    def check_after(self, step: int, cmd, events: list) -> None:
        state = self.m.state
        where = f"seed {self.seed}, step {step}, {type(cmd).__name__}"
        for event in events:
            if isinstance(event, PaymentRecorded):
                self.paid_in += event.amount
            elif isinstance(event, FundsReleased):
                self.taken_out += event.to_seller + event.to_venue + event.refunded
                self.count("released")
            elif isinstance(event, FundsRefunded):
                self.taken_out += event.amount
            elif isinstance(event, SettlementCompleted):
                self.count("completed")
            elif isinstance(event, SettlementCancelled):
                self.count(f"cancelled_{event.reason}")
            elif isinstance(event, CertificateIssued):
                self.count(f"certificate_{event.kind}")
            elif isinstance(event, LotAwarded):
                self.count(f"sold_{event.how}")
        escrow = sum(s.escrow for s in state.settlements.values())
        assert self.paid_in == self.taken_out + escrow, \
            f"{where}: paid in {self.paid_in} != taken out {self.taken_out} + escrow {escrow}"
        for (session, party), found in state.exposure.items():
            assert found.total <= state.parties[party].credit_limit, \
                f"{where}: party {party} over its limit"

    def run(self, commands: int, step: int = 0) -> int:
        """Send commands from ``step`` on until ``commands`` were sent; return the count."""
        m, rng = self.m, self.rng
        while step < commands:
            if rng.random() < 0.04:
                m.d.tick(m.d.ts + rng.choice((10 * MINUTE, HOUR, DAY, 4 * DAY)))
            roll = rng.random()
            batch = (self.auction_step() if roll < 0.4 else
                     self.agreement() if roll < 0.45 else self.settlement_step())
            for cmd, actor, role in batch:
                step += 1
                m.d.ts += rng.randrange(0, 10 * MINUTE)
                events, rejection = m.send_checked(cmd, actor, role,
                                                   compare=rng.random() < 0.1,
                                                   where=f"seed {self.seed}, step {step}")
                if rejection is not None:
                    self.rejected += 1
                    self.count(f"refused_{rejection.code}")
                self.check_after(step, cmd, events)
        return step


COVERED = ("completed", "cancelled_default", "sold_reaward", "sold_negotiated",
           "certificate_transaction", "certificate_no_objection", "refused_not_the_seller",
           "refused_not_the_buyer", "refused_overpayment", "refused_not_paid")


def test_random_settlement_stress_keeps_every_invariant_and_conserves_money():
    stress = Stress(SEED)
    counts = stress.counts
    sent = stress.run(COMMANDS)
    # On (up to 4x) until every path was taken once, so that any seed covers them.
    while sent < 4 * COMMANDS and any(counts.get(what, 0) < 1 for what in COVERED):
        sent = stress.run(sent + 500, sent)
    m = stress.m
    m.d.tick(m.d.ts + 30 * DAY)
    stress.check_after(sent, "final tick", m.d.log[-1][1])
    for what in COVERED:
        assert counts.get(what, 0) >= 1, \
            f"seed {SEED}: nothing of {what} in {sent} commands: {counts}"
    statuses = {s.status for s in m.state.settlements.values()}
    assert {"completed", "cancelled"} <= statuses, f"seed {SEED}: {statuses}"

    # Determinism: the journal through a fresh engine, restored from a
    # snapshot halfway, gives the same events byte for byte and the same state.
    log = m.d.log
    engine = Engine()
    half = len(log) // 2
    for index, (env, events) in enumerate(log):
        if index == half:
            engine = Engine.restore(engine.snapshot())
        again = engine.apply(env)
        assert encode(again) == encode(events), f"seed {SEED}: entry {index} ({env.cmd}) differs"
    for name, value in vars(m.state).items():
        assert getattr(engine.state, name) == value, f"seed {SEED}: state.{name} differs"
