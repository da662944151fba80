"""Seeded random stress of everything at once, through the pure engine.

The other stress runs keep the modules apart (auctions; auctions with
settlement; one book). This one mixes them in one engine: several sessions,
opened and closed while their books are live and their lots open; parties
registered by several brokers (and by an operator for a broker), credit
reviews that approve, lower limits and withdraw approval; paddles; lots of
every mechanism created, vetted, scheduled, bid on, closed by the clock,
passed, negotiated, relisted and withdrawn; unit licence books and patent
books of ``bid_ask`` lots with every kind of order, modifies, cancels, mass
cancels, call periods and uncrosses, order limits, unit consumption and
payment; settlement (payments, deliveries, disputes, defaults that freeze a
party, re-awards, publicity) and agreement transfers; closing instruments.

Commands are random but mostly valid; some are invalid on purpose (another
broker's paddle, order, party, lot or settlement, unknown ids, a viewer) and
must be refused without changing the state. After every envelope the
engine's invariants run (`Engine.check_invariants`) and this test checks on
its own that

- no public event (empty ``to``) carries a party id, name or country, a
  reserve, a proxy maximum or a sealed amount (sealed amounts appear only in
  `SealedBidsRevealed`, and only in the envelope that closes the lot), nor
  names a lot never published; a private one goes to the brokers of the
  parties it is about and no other (a bidder's maximum or sealed bid to its
  own broker alone);
- a broker is never told a paddle or party does not exist (another's and
  none look the same), and a broker's accepted command touched its own
  clients' paddles, orders, lots and settlements only;
- no party's exposure rises above its credit limit (a limit the operator
  lowered may leave a party above it, so the rise is compared per envelope),
  and every change of it reaches the party's broker as `CreditChanged` with
  the value it ends at;
- a paddle rests no more orders than an instrument's limit allows (or than
  it held, after `SetOrderLimit` lowered the limit);
- a closed session's books are all closed;
- what the events say is what is: each broker's orders folded from its
  private order events rest as told; the public depth, quote, phase and
  indicative price of every book, and the public status, price, leader,
  sealed-bid count, Dutch clock and close of every published lot, folded
  from the feed, are the engine's;
- money through escrow is conserved, from the events alone; no auction sale
  below its reserve (above its ceiling, for a tender);
- a refusal is the envelope's last event and, where compared (always for the
  invalid commands, else a sample), changed nothing.

At the end the journal is replayed into a fresh engine (events byte for byte
equal, by `exchange.codec.encode`, and the same state), and replayed again
with the engine snapshotted and restored at several points (the same events
and state as without).

``LOTEX_EVERYTHING_SEED`` (one seed) and ``LOTEX_EVERYTHING_STEPS`` set the
run; every assertion message names the seed and step.
"""

from __future__ import annotations

import os
import random
from typing import Any

import msgspec
import pytest

from exchange.book import ANY_PRICE
from exchange import Engine, dataroom, pricing
from exchange.codec import encode
from exchange.commands import (AcceptCounter, AnswerOffer, AnswerReaward, BuyAtAsk, CancelOrder,
                               ChooseOffer, CloseInstrument, CloseSession, ConfirmReceipt,
                               ConsumeUnits, CreateInstrument, CreateLot, CreateSession,
                               DeclareDefault, ExtendDueDate, IssuePaddle, IssueUnits, LiftFreeze,
                               LotTerms, LowerReserve, MakeOffer, MarkStateTransfer, MassCancel,
                               ModifyOrder, Patent, PlaceBid, PlaceOrder, RaiseDispute,
                               RecordAgreementTransfer, RecordDelivery, RecordNegotiatedSale,
                               RecordObjection, RecordPayment, RecordUnitsPayment, RegisterParty,
                               ReleaseFunds, RelistLot, ResolveDispute, ResolveObjection,
                               ReviewCredit, ScheduleLot, SetDisplayRate, SetOrderLimit,
                               SetPriceRules, SetSettlementRules, StartCall, Uncross, VetLot,
                               HaltTrading, ResumeTrading, ExtendLot, PostNotice,
                               AppointLiquidityProvider, EndLiquidityProvider, ReportLiquidity,
                               AddDocument, RemoveDocument, SignNda, OpenDocument, RequireNda,
                               RegisterExpert, RetireExpert, DrawPanel, RecordValuation,
                               PublishPriceRange, CancelPanel,
                               WithdrawBid,
                               WithdrawLot, WithdrawOffer)
from exchange.driver import Driver
from exchange.lots import MECHANISMS as MECHANISM_OF
from exchange.events import (OPERATORS, BidAccepted, BidVoided, CommandRejected, CreditChanged,
                             DepthChanged, DutchPriceChanged, FundsRefunded, FundsReleased,
                             IndicativePrice, InstrumentCreated, LotAwarded, LotClosed,
                             LotExtended, LotOpened, LotPassed, LotRelisted, LotScheduled,
                             LotSettled, LotWithdrawn, OrderAccepted, OrderCancelled,
                             OrderFilled, OrderModified, PaymentRecorded, PhaseChanged,
                             QuoteChanged, SealedBidCounted, SealedBidsRevealed, TradeExecuted)
from tests.unit.auctionkit import (DAY, HOUR, MINUTE, SECOND, T0, USD, bid_amount,
                                   mechanism_terms, state_image)

SEED = int(os.environ.get("LOTEX_EVERYTHING_SEED", "20260315"))
STEPS = int(os.environ.get("LOTEX_EVERYTHING_STEPS", "3000"))

BROKERS = ("b0", "b1", "b2", "b3")
NAME_MARK = "PN~"             # in every party name; never in a public event
MECHANISMS = ("english", "english", "sealed_first", "sealed_second", "dutch", "reverse",
              "bid_ask", "bid_ask")
SEALED = ("sealed_first", "sealed_second", "reverse")
LIMITS = (5_000, 20_000, 100_000, 400_000, 2_000_000)
# Fields no public event may have (at any depth: terms, patents, revealed bids).
IDENTITY_FIELDS = {"party", "buyer", "seller", "name", "country", "buyer_name", "seller_name",
                   "buyer_country", "seller_country", "broker", "reserve", "amount",
                   "leader_max", "maximum", "credit_limit", "exposure", "score", "note",
                   "highest_bid", "counter"}
# ... but for these, where the field is public by design.
PUBLIC_BY_DESIGN = {("SessionCreated", "name"), ("RevealedBid", "amount"),
                    ("DocumentAdded", "name"), ("DocumentRemoved", "name")}
# The public events a sealed-bid lot or a tender may produce.
SEALED_PUBLIC = {"LotScheduled", "LotOpened", "SealedBidCounted", "LotExtended", "LotClosed",
                 "SealedBidsRevealed", "LotAwarded", "LotPassed", "LotWithdrawn",
                 "LotRelisted", "NegotiationEnded", "LotSettled", "SettlementRulesSet",
                 "PublicityStarted", "PublicityEnded", "CertificateIssued", "NoticePosted",
                 "DocumentAdded", "DocumentRemoved", "PriceRangePublished", "NdaRequired"}

Step = tuple  # (command, actor, role, must_refuse)

def _struct_fields(value: Any) -> list[tuple[str, str, Any]]:
    """(struct type name, field name, value) of every field of ``value`` at any depth."""
    found = []
    for name in value.__struct_fields__:
        field = getattr(value, name)
        found.append((type(value).__name__, name, field))
        if isinstance(field, msgspec.Struct):
            found.extend(_struct_fields(field))
        elif isinstance(field, (tuple, list)):
            for item in field:
                if isinstance(item, msgspec.Struct):
                    found.extend(_struct_fields(item))
    return found


# Commands whose ``paddle`` a broker may only name if it is one of its clients'.
OWN_PADDLE = {"PlaceBid", "WithdrawBid", "BuyAtAsk", "MakeOffer", "WithdrawOffer", "AcceptCounter",
              "PlaceOrder", "CancelOrder", "ModifyOrder", "ConsumeUnits", "AnswerReaward",
              "MassCancel"}
# Commands a broker may only send for the lot's seller.
SELLERS_ONLY = {"ChooseOffer", "AnswerOffer", "LowerReserve", "WithdrawLot", "AddDocument",
                "RemoveDocument", "RequireNda"}
# Commands a broker may only send for a party of its own.
OWN_PARTY = {"SignNda", "OpenDocument"}
# Private events that carry a bidder's secret (a maximum, a sealed bid): its broker's alone.
BIDDERS_ONLY = {"BidConfirmed", "BidWithdrawn", "BidVoided"}
PARTY_FIELDS = ("party", "buyer", "seller")


class Views:
    """What the feed and the private events tell, folded as a client would,
    to compare with the engine's state after every envelope: each broker's
    own orders, the public book (depth, quote, indicative price, phase) and
    the public state of every published lot."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, int, int], int] = {}      # (instrument, paddle, order) -> open
        self.depth: dict[str, dict[tuple[str, int], tuple[int, int]]] = {}
        self.quote: dict[str, tuple[int, int, int, int]] = {}
        self.indicative: dict[str, tuple[int, int, int]] = {}
        self.phase: dict[str, str] = {}
        self.lots: dict[str, dict[str, Any]] = {}               # serial -> what the public knows

    def fold(self, events: list, where: str) -> None:
        for e in events:
            kind = type(e)
            if kind is OrderAccepted:
                self.orders[(e.instrument, e.paddle, e.order)] = e.qty
            elif kind is OrderFilled or kind is OrderModified or kind is OrderCancelled:
                key = (e.instrument, e.paddle, e.order)
                assert key in self.orders, f"{where}: {kind.__name__} of an order never seen: {e}"
                if kind is OrderFilled:
                    self.orders[key] = e.leaves
                elif kind is OrderModified:
                    self.orders[key] = e.qty
                else:
                    assert self.orders[key] == e.qty, \
                        f"{where}: {e} cancels {e.qty}, the order had {self.orders[key]} open"
                    self.orders[key] = 0
                if not self.orders[key]:
                    del self.orders[key]
            if e.to:
                continue
            if kind is DepthChanged:
                levels = self.depth.setdefault(e.instrument, {})
                if e.qty:
                    levels[(e.side, e.price)] = (e.qty, e.orders)
                else:
                    levels.pop((e.side, e.price), None)
            elif kind is QuoteChanged:
                self.quote[e.instrument] = (e.bid, e.bid_qty, e.ask, e.ask_qty)
            elif kind is IndicativePrice:
                self.indicative[e.instrument] = (e.price, e.volume, e.imbalance)
            elif kind is PhaseChanged or kind is InstrumentCreated:
                self.phase[e.instrument] = e.phase
            elif kind is LotScheduled:
                self.lots[e.serial] = dict(status="scheduled")
            elif kind is LotOpened:
                self.lots[e.serial] = dict(status="open", price=0, leader=0, bids=0,
                                           clock=e.price, closes_at=e.closes_at)
            elif kind is BidAccepted or kind is BidVoided:    # (public: English only)
                self.lots[e.serial].update(price=e.price, leader=e.leader)
            elif kind is SealedBidCounted:
                self.lots[e.serial]["bids"] = e.bids
            elif kind is DutchPriceChanged:
                self.lots[e.serial]["clock"] = e.price
            elif kind is LotExtended:
                self.lots[e.serial]["closes_at"] = e.closes_at
            elif kind is LotClosed:
                self.lots[e.serial]["status"] = "choosing" if e.outcome == "choosing" else "closed"
            elif kind is LotAwarded:
                self.lots[e.serial]["status"] = "sold"
            elif kind is LotPassed:
                self.lots[e.serial]["status"] = "passed"
            elif kind is LotWithdrawn:
                self.lots.setdefault(e.serial, {})["status"] = "withdrawn"
            elif kind is LotSettled:
                self.lots[e.serial]["status"] = "settled"
            elif kind is LotRelisted:
                self.lots[e.serial]["status"] = "relisted"

    def check(self, state, where: str) -> None:
        # each broker's orders, as its private events tell them, rest as they say
        resting = {(inst.id, paddle, oid): order.qty for inst in state.books.values()
                   for (paddle, oid), order in inst.book.orders.items()}
        if resting != self.orders:
            diff = {k: (self.orders.get(k), resting.get(k))
                    for k in set(resting) | set(self.orders) if resting.get(k) != self.orders.get(k)}
            raise AssertionError(f"{where}: orders as told (told, resting): {diff}")
        # the public book
        for inst in state.books.values():
            bids, asks = inst.book.levels
            actual = {("buy", lv.price): (lv.qty, lv.n) for lv in bids.values()}
            actual.update({("sell", lv.price): (lv.qty, lv.n) for lv in asks.values()})
            told = self.depth.get(inst.id, {})
            assert told == actual, f"{where}: public depth of {inst.id} {told} != book {actual}"
            assert self.phase.get(inst.id) == inst.phase, \
                f"{where}: public phase of {inst.id} {self.phase.get(inst.id)} != {inst.phase}"
            phase = inst.halted_from if inst.phase == "halted" else inst.phase
            if phase == "call":
                reference = inst.reference or inst.last_price
                now = inst.book.equilibrium(reference, inst.tick, ANY_PRICE)     # rules 3
                told_ip = self.indicative.get(inst.id, (0, 0, 0))
                assert told_ip == now, \
                    f"{where}: public indicative price of {inst.id} {told_ip} != uncross now {now}"
            else:
                bid = inst.book.best_bid() or 0
                ask = inst.book.best_ask() or 0
                now_q = (bid, bids[bid].qty if bid else 0, ask, asks[-ask].qty if ask else 0)
                told_q = self.quote.get(inst.id, (0, 0, 0, 0))
                assert told_q == now_q, f"{where}: public quote of {inst.id} {told_q} != {now_q}"
        # the public state of every lot
        for serial, lot in state.lots.items():
            told = self.lots.get(serial)
            if told is None:
                assert lot.status in ("draft", "vetted", "rejected", "withdrawn"), \
                    f"{where}: lot {serial} is {lot.status}; the public never heard of it"
                continue
            status = lot.status
            assert told["status"] == status, \
                f"{where}: the public holds lot {serial} {told['status']}, it is {status}"
            if status != "open":
                continue
            assert told["closes_at"] == lot.closes_at, f"{where}: {serial} closes at {lot.closes_at}"
            if lot.mechanism == "english":
                assert (told["price"], told["leader"]) == (lot.price, lot.leader), \
                    f"{where}: public price of {serial} {told} != {lot.price} led by {lot.leader}"
            elif lot.mechanism in SEALED:
                assert told["bids"] == len(lot.live), f"{where}: public count of {serial} {told}"
            elif lot.mechanism == "dutch":
                assert told["clock"] == lot.clock, f"{where}: public clock of {serial} {told}"


class Everything:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.d = Driver(start_ts=T0, keep_log=True)
        self.d.engine.check_invariants = True
        self.step = 0
        self.parties_made = 0
        self.sessions_made = 0
        self.lots_made = 0
        self.instruments_made = 0
        self.agreements_made = 0
        self.serials: list[str] = []
        self.paid_in = 0
        self.taken_out = 0
        self.counts: dict[str, int] = {}
        self.views = Views()

    @property
    def state(self):
        return self.d.engine.state

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    # ------------------------------------------------------------------ lookups

    def open_sessions(self) -> list[str]:
        return [sid for sid, s in self.state.sessions.items() if s.open]

    def paddles(self, session: str) -> list[int]:
        return list(self.state.sessions[session].paddles)

    def party_of(self, session: str, paddle: int) -> int:
        return self.state.sessions[session].paddles[paddle]

    def broker_of(self, party: int) -> str:
        return self.state.parties[party].broker

    def paddle_broker(self, session: str, paddle: int) -> str:
        party = self.state.sessions[session].paddles.get(paddle)
        return self.broker_of(party) if party is not None else self.rng.choice(BROKERS)

    def other_broker(self, broker: str) -> str:
        return self.rng.choice([b for b in BROKERS if b != broker])

    def usable_paddle(self, session: str, currency: str = "") -> int | None:
        """A paddle of the session whose party may act (approved, not frozen, its
        limit in ``currency``) mostly."""
        state = self.state
        paddles = list(state.sessions[session].paddles.items())
        if not paddles:
            return None
        good = [p for p, party in paddles if state.parties[party].approved
                and not state.parties[party].frozen
                and (not currency or state.parties[party].currency == currency)]
        paddles = [p for p, _ in paddles]
        if good and self.rng.random() < 0.92:
            return self.rng.choice(good)
        return self.rng.choice(paddles)

    def recent_lots(self, *statuses: str, mechanisms: tuple = ()) -> list:
        lots = self.state.lots
        found = [lots[s] for s in self.serials[-80:] if lots[s].status in statuses]
        if mechanisms:
            found = [lot for lot in found if lot.mechanism in mechanisms]
        return found

    def live_instruments(self, kind: str | None = None) -> list:
        state = self.state
        return [inst for inst in state.books.values() if inst.phase != "closed"
                and (kind is None or inst.kind == kind)]

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        for _ in range(3):
            self.run_steps(self.new_session())
        for n in range(12):
            self.run_steps(self.new_party(BROKERS[n % len(BROKERS)], approve=True))
        for session in self.open_sessions():
            self.run_steps(self.fill_session(session))

    def new_session(self) -> list[Step]:
        rng = self.rng
        self.sessions_made += 1
        sid = f"S{self.sessions_made}"
        ends = 0 if rng.random() < 0.7 else self.d.ts + rng.choice((4, 12)) * DAY
        term = rng.choice((6 * HOUR, DAY, 2 * DAY))
        currency = "USD" if rng.random() < 0.8 else "EUR"
        return [(CreateSession(session=sid, name=f"Session {sid}", currency=currency,
                               ends_at=ends), "op", "operator", False),
                (SetSettlementRules(session=sid, payment_term=term,
                                    reaward_window=rng.choice((6 * HOUR, DAY)),
                                    publicity_period=rng.choice((DAY, 3 * DAY))),
                 "op", "operator", False)]

    def fill_session(self, session: str) -> list[Step]:
        """Paddles for every approved party, a units book with holdings."""
        state = self.state
        steps: list[Step] = []
        for party in state.parties.values():
            if party.approved and not party.frozen and party.id not in state.sessions[session].by_party:
                steps.append((IssuePaddle(session=session, party=party.id), "op", "operator", False))
        return steps + self.new_units(session)

    def new_units(self, session: str) -> list[Step]:
        rng = self.rng
        self.instruments_made += 1
        inst = f"U{self.instruments_made}"

        def holdings() -> list[Step]:
            return [(IssueUnits(session=session, instrument=inst, paddle=paddle,
                                qty=rng.choice((50, 100, 300))), "op", "operator", False)
                    for paddle in self.paddles(session) if rng.random() < 0.8]
        return [(CreateInstrument(session=session, instrument=inst,
                                  stp=rng.choice(("cancel_newest", "cancel_oldest", "cancel_both")),
                                  call=rng.random() < 0.3, reference=rng.choice((0, 100 * USD)),
                                  max_orders=rng.choice((0, 0, 3, 6))), "op", "operator", False),
                holdings]

    def new_party(self, broker: str, approve: bool) -> list[Step]:
        self.parties_made += 1
        n = self.parties_made
        name = f"{NAME_MARK}{n} {self.rng.choice(('Acme', 'Borealis', 'Cygnus', 'Dynamo'))} Ltd"
        by_op = self.rng.random() < 0.3
        steps = [(RegisterParty(name=name, country=self.rng.choice(("DE", "JP", "BR")),
                                broker=broker if by_op else ""),
                  "op" if by_op else broker, "operator" if by_op else "broker", False)]
        if approve:
            # the party id is the RegisterParty's seq: the next one
            steps.append(lambda: (ReviewCredit(party=self.d.seq, approved=True,
                                               credit_limit=self.rng.choice(LIMITS) * USD,
                                               agreement_version="BRA-2026"),
                                  "op", "operator", False))
        return steps

    # ------------------------------------------------------------------ participants

    def participants_step(self) -> list[Step]:
        rng, state = self.rng, self.state
        roll = rng.random()
        parties = list(state.parties.values())
        sessions = self.open_sessions()
        if roll < 0.1 and len(parties) < 40:
            return self.new_party(rng.choice(BROKERS), approve=rng.random() < 0.7)
        if roll < 0.45:
            party = rng.choice(parties)
            kind = rng.choices(("approve", "lower", "withdraw", "no_agreement"),
                               weights=(6, 3, 1.2, 0.4))[0]
            if kind == "approve":
                return [(ReviewCredit(party=party.id, approved=True,
                                      credit_limit=rng.choice(LIMITS) * USD,
                                      currency=party.currency if rng.random() < 0.9
                                      else rng.choice(("USD", "EUR")),
                                      agreement_version="BRA-2026", score=rng.randrange(100)),
                         "op", "operator", False)]
            if kind == "lower" and party.approved:
                return [(ReviewCredit(party=party.id, approved=True,
                                      credit_limit=party.credit_limit // rng.choice((2, 5, 50)),
                                      currency=party.currency,
                                      agreement_version="BRA-2026"), "op", "operator", False)]
            if kind == "withdraw":
                resting = [state.sessions[inst.session].paddles[paddle]
                           for inst in state.books.values() for paddle, _ in inst.book.orders]
                if resting and rng.random() < 0.6:    # one with orders to cancel, mostly
                    party = state.parties[rng.choice(resting)]
                return [(ReviewCredit(party=party.id, approved=False), "op", "operator", False)]
            return [(ReviewCredit(party=party.id, approved=True, credit_limit=10 * USD),
                     "op", "operator", True)]                     # no agreement version
        if roll < 0.8 and sessions:
            session = rng.choice(sessions)
            by_party = state.sessions[session].by_party
            missing = [p for p in parties if p.id not in by_party]
            if missing:
                party = rng.choice(missing)
                return [(IssuePaddle(session=session, party=party.id), "op", "operator", False)]
        if roll < 0.92:
            frozen = [p for p in parties if p.frozen]
            if frozen:
                return [(LiftFreeze(party=rng.choice(frozen).id, reason="cleared"),
                         "op", "operator", False)]
        if roll < 0.95:
            return [(SetDisplayRate(base="USD", quote="EUR", num=rng.randrange(85, 95), den=100),
                     "op", "operator", False)]
        return []

    def session_step(self) -> list[Step]:
        """Close a session with live books and open lots, open another."""
        sessions = self.open_sessions()
        steps: list[Step] = []
        if len(sessions) >= 2:
            # the busiest one: most resting orders and open lots
            def load(sid: str) -> int:
                orders = sum(len(i.book.orders) for i in self.state.books.values()
                             if i.session == sid)
                lots = sum(1 for lot in self.state.lots.values()
                           if lot.session == sid and lot.status in ("open", "scheduled"))
                return orders + lots
            target = max(sessions, key=load)
            self.count("closed_session_live", 1 if load(target) else 0)
            steps.append((CloseSession(session=target), "op", "operator", False))
        steps += self.new_session()
        steps.append(lambda: self.fill_session(f"S{self.sessions_made}"))
        return steps

    # ------------------------------------------------------------------ lots

    def terms(self, **fields: Any) -> LotTerms:
        base: dict[str, Any] = dict(
            title="Portfolio", currency="USD", mechanism="english", starting_bid=1_000 * USD,
            increments="custom", custom_increments=((0, 100 * USD), (5_000 * USD, 250 * USD)),
            patents=(Patent(number=f"US{7_000_000 + self.lots_made}", title="Nozzle array",
                            family_id=f"F{self.lots_made}", field="printing"),))
        base.update(fields)
        return LotTerms(**base)

    def new_lot(self) -> list[Step]:
        rng, state = self.rng, self.state
        sessions = self.open_sessions()
        if not sessions:
            return []
        roomy = [sid for sid in sessions if not state.sessions[sid].ends_at
                 or state.sessions[sid].ends_at > self.d.ts + 3 * DAY]
        session = rng.choice(roomy if roomy and rng.random() < 0.95 else sessions)
        sellers = [p for p in state.parties.values() if p.approved and not p.frozen]
        if not sellers:
            return []
        mechanism = rng.choice(MECHANISMS)
        if mechanism == "bid_ask":     # its seller needs a paddle there to sell
            with_paddle = [p for p in sellers if p.id in state.sessions[session].by_party]
            sellers = with_paddle or sellers
        seller = rng.choice(sellers)
        self.lots_made += 1
        serial = f"L{self.lots_made:04d}"
        self.serials.append(serial)
        start = rng.choice((500, 1_000, 2_000)) * USD
        reserve = rng.choice((0, 0, start, 2 * start, 4 * start))
        opens = self.d.ts + rng.randrange(0, 2 * HOUR)
        closes = opens + rng.randrange(2 * HOUR, 2 * DAY)
        fields: dict = dict(title=f"Portfolio {serial}", mechanism=mechanism, starting_bid=start,
                            opens_at=opens, closes_at=closes,
                            buyer_premium_bp=rng.choice((0, 1_000, 1_250)),
                            seller_commission_bp=rng.choice((0, 1_500)),
                            tie_break=rng.choice(("earliest", "lottery")),
                            negotiation_window=rng.choice((0, DAY)),
                            display_currency=rng.choice(("", "", "EUR")),
                            currency=state.sessions[session].currency if rng.random() < 0.9
                            else rng.choice(("USD", "EUR")))
        fields.update(mechanism_terms(rng, mechanism, start, reserve, closes))
        if mechanism == "reverse":
            fields.update(starting_bid=5 * start, reverse_choice=rng.choice(("lowest", "buyer")),
                          choice_window=DAY)
            reserve = rng.choice((0, 3 * start, 4 * start))
        if MECHANISM_OF[mechanism].ties(self.terms(**fields)):
            fields["tie_break"] = "earliest"    # a lottery it would not apply is refused
        if mechanism == "bid_ask":
            reserve = 0
        actor, role = (self.broker_of(seller.id), "broker") if rng.random() < 0.85 \
            else ("op", "operator")
        steps = [(CreateLot(serial=serial, session=session, seller=seller.id,
                            terms=self.terms(**fields), reserve=reserve), actor, role, False)]
        if rng.random() < 0.8:          # vetted and scheduled at once, mostly
            steps.append((VetLot(serial=serial, score=70, approved=rng.random() < 0.95),
                          "op", "operator", False))
            steps.append((ScheduleLot(serial=serial), "op", "operator", False))
        return steps

    def amount_for(self, lot) -> int:
        rng = self.rng
        if rng.random() < 0.03:
            return rng.choice((0, -1, 10**16))
        return bid_amount(rng, lot)

    def lots_step(self) -> list[Step]:
        rng, state = self.rng, self.state
        live = self.recent_lots("open", "scheduled")
        if (len([lot for lot in live if state.sessions[lot.session].open]) < 10
                and rng.random() < 0.25 or not self.serials):
            return self.new_lot()
        op = rng.choices(("vet", "schedule", "bid", "withdraw_bid", "ask", "negotiate", "choose",
                          "withdraw_lot", "lot_rules", "extend", "notice", "room", "panel"),
                         weights=(6, 6, 60, 5, 4, 14, 3, 2, 0.5, 1, 0.3, 16, 6))[0]
        if op == "panel":
            return self.panel_step()
        if op == "room":
            kind = rng.choices(("add", "remove", "sign", "open", "require"),
                               weights=(4, 2, 3, 4, 0.5))[0]
            rooms = self.recent_lots(*(dataroom.TAKES_DOCUMENTS
                                       if kind in ("add", "remove", "require")
                                       else dataroom.OPEN_TO_SIGNERS))
            if rng.random() < 0.9:
                rooms = [lot for lot in rooms if state.sessions[lot.session].open] or rooms
            made = dataroom.rooms(state)
            kept = [lot for lot in rooms if lot.serial in made and (
                kind not in ("open", "remove") or made[lot.serial].documents) and (
                kind != "open" or made[lot.serial].ndas)]
            if kept and rng.random() < 0.8:
                rooms = kept
            return self.room_step(rng.choice(rooms) if rooms and rng.random() < 0.9
                                  else state.lots[rng.choice(self.serials[-30:])], kind)
        if op == "extend":
            opened = self.recent_lots("open")
            if opened:
                lot = rng.choice(opened)
                closes = lot.closes_at + rng.randrange(1, 2 * HOUR)
                hard = rng.choice((0, 0, closes, closes + HOUR))
                return [(ExtendLot(serial=lot.serial, closes_at=closes, hard_end=hard,
                                   reason="outage"), "op", "operator", False)]
        if op == "notice":
            lot = state.lots[rng.choice(self.serials[-30:])]
            return [(PostNotice(session=lot.session, serial=lot.serial, text="notice"),
                     "op", "operator", False)]
        if op == "vet":
            drafts = self.recent_lots("draft")
            if drafts:
                return [(VetLot(serial=rng.choice(drafts).serial, score=rng.randrange(100),
                                approved=rng.random() < 0.9), "op", "operator", False)]
        if op == "schedule":
            ready = self.recent_lots("vetted", "rejected", "scheduled")
            if ready:
                lot = rng.choice(ready)
                opens = self.d.ts + rng.randrange(0, 30 * MINUTE)
                closes = opens + rng.randrange(HOUR, 10 * HOUR)
                hard = closes + HOUR if lot.terms.soft_window else 0
                return [(ScheduleLot(serial=lot.serial, opens_at=opens, closes_at=closes,
                                     hard_end=hard), "op", "operator", False)]
        if op == "lot_rules":
            lot = state.lots[rng.choice(self.serials[-30:])]
            return [(SetSettlementRules(session=lot.session, lot=lot.serial,
                                        payment_term=rng.choice((6 * HOUR, DAY)),
                                        reaward_window=DAY, publicity_period=DAY),
                     "op", "operator", False)]
        if op == "negotiate":
            passed = self.recent_lots("passed")
            talking = [lot for lot in passed if lot.negotiation_ends > self.d.ts]
            if talking and rng.random() < 0.8:
                passed = talking
            if passed:
                return self.negotiate(rng.choice(passed))
        if op == "choose":
            choosing = self.recent_lots("choosing")
            if choosing:
                lot = rng.choice(choosing)
                offers = list(lot.live) or self.paddles(lot.session)
                return [(ChooseOffer(serial=lot.serial, paddle=rng.choice(offers)),
                         self.broker_of(lot.seller), "broker", False)]
        if op == "withdraw_lot":
            lots = self.recent_lots("draft", "vetted", "scheduled", "open", "passed", "choosing")
            if lots:
                lot = rng.choice(lots)
                if rng.random() < 0.5:
                    return [(WithdrawLot(serial=lot.serial, reason="stress"),
                             self.broker_of(lot.seller), "broker", False)]
                return [(WithdrawLot(serial=lot.serial, reason="stress"), "op", "operator", False)]
        # bids: on a live auction lot (not a book lot, mostly) of an open session (mostly)
        auction = [lot for lot in live if lot.mechanism != "bid_ask" or rng.random() < 0.03]
        if rng.random() < 0.9:
            auction = [lot for lot in auction if state.sessions[lot.session].open] or auction
        opened = [lot for lot in auction if lot.status == "open"]
        pool = opened if opened and rng.random() < 0.85 else auction
        if not pool:
            return self.new_lot()
        lot = rng.choice(pool)
        paddle = self.usable_paddle(lot.session, lot.currency)
        if paddle is None:
            return []
        broker = self.paddle_broker(lot.session, paddle)
        if op == "withdraw_bid":
            return [(WithdrawBid(serial=lot.serial, paddle=paddle), broker, "broker", False)]
        if op == "ask":
            asks = [other for other in pool if other.terms.ask]
            if asks:                        # the Ask of a lot that has one, mostly
                lot = rng.choice(asks)
                paddle = self.usable_paddle(lot.session, lot.currency) or paddle
                broker = self.paddle_broker(lot.session, paddle)
            return [(BuyAtAsk(serial=lot.serial, paddle=paddle), broker, "broker", False)]
        return [(PlaceBid(serial=lot.serial, paddle=paddle, amount=self.amount_for(lot)),
                 broker, "broker", False)]

    def panel_step(self) -> list[Step]:
        """Pricing: grow the pool, draw panels, value, publish; now and then a
        broker tries (refused)."""
        rng, state = self.rng, self.state
        found = pricing.pool(state)
        active = [e for e in found.experts.values() if e.active]
        fields = ("printing", "imaging", "")
        if len(active) < 6 or rng.random() < 0.05:
            field = rng.choice(fields)
            return [(RegisterExpert(name=f"{NAME_MARK}expert {len(found.experts)}",
                                    fields=(field,) if field else ()),
                     "op", "operator", False)]
        if rng.random() < 0.03:
            return [(RetireExpert(expert=rng.choice(active).id), "op", "operator", False)]
        open_panels = [(serial, p) for serial, p in found.panels.items()
                       if p.open and state.lots[serial].status in pricing.PRICED]
        if open_panels and rng.random() < 0.7:
            serial, panel = rng.choice(open_panels)
            if 2 * len(panel.valuations) >= len(panel.experts) and rng.random() < 0.4:
                return [(PublishPriceRange(serial=serial), "op", "operator", False)]
            if rng.random() < 0.04:
                return [(CancelPanel(serial=serial, reason="no answer"), "op", "operator",
                         False)]
            low = rng.randrange(1, 10**7)
            cmd = RecordValuation(serial=serial, expert=rng.choice(panel.experts), low=low,
                                  high=low + rng.randrange(0, 10**7))
            if rng.random() < 0.1:
                return [(cmd, self.broker_of(state.lots[serial].seller), "broker", True)]
            return [(cmd, "op", "operator", False)]
        priced = self.recent_lots(*pricing.PRICED)
        unlisted = [lot for lot in priced if lot.status in ("draft", "vetted", "passed")]
        if unlisted and rng.random() < 0.7:     # lots not about to open: time to value them
            priced = unlisted
        if not priced:
            return []
        return [(DrawPanel(serial=rng.choice(priced).serial, size=rng.randrange(1, 6),
                           field=rng.choice(fields)), "op", "operator", False)]

    def room_step(self, lot, kind: str) -> list[Step]:
        """A data-room command (``kind``) on ``lot``: by the right broker
        mostly, else by an operator or (refused) another broker."""
        rng = self.rng
        room = dataroom.rooms(self.state).get(lot.serial, dataroom.Room())
        name = rng.choice(("claims.pdf", "file-history.zip", "licences.xlsx"))
        if room.documents and rng.random() < 0.7:
            name = rng.choice(list(room.documents))
        seller_broker = self.broker_of(lot.seller)
        if kind == "require":
            cmd = RequireNda(serial=lot.serial, nda=rng.choice(("", "N1", "N2")))
            right = seller_broker
        elif kind in ("add", "remove"):
            cmd = (AddDocument(serial=lot.serial, name=name, digest=rng.randbytes(32).hex(),
                               size=rng.randrange(1, 10**8), location=f"vdr://{lot.serial}/{name}")
                   if kind == "add" else RemoveDocument(serial=lot.serial, name=name))
            right = seller_broker
        else:
            paddles = self.paddles(lot.session)
            signed = list(room.ndas)
            usable = self.usable_paddle(lot.session) if rng.random() < 0.8 else None
            if kind == "open" and signed and rng.random() < 0.7:
                party = rng.choice(signed)
            elif usable is not None:
                party = self.party_of(lot.session, usable)
            elif paddles:
                party = self.party_of(lot.session, rng.choice(paddles))
            else:
                party = rng.choice(list(self.state.parties))
            cmd = (SignNda(serial=lot.serial, party=party, nda=rng.choice(("N1", "N2")))
                   if kind == "sign" else OpenDocument(serial=lot.serial, party=party, name=name))
            right = self.broker_of(party)
        roll = rng.random()
        if roll < 0.15:
            return [(cmd, "op", "operator", False)]
        if roll < 0.25:
            return [(cmd, self.other_broker(right), "broker", True)]
        return [(cmd, right, "broker", False)]

    def negotiate(self, lot) -> list[Step]:
        rng = self.rng
        serial = lot.serial
        seller_broker = self.broker_of(lot.seller)
        paddle = self.usable_paddle(lot.session, lot.currency)
        if paddle is None:
            return []
        broker = self.paddle_broker(lot.session, paddle)
        offers = list(lot.offers)
        target = rng.choice(offers) if offers and rng.random() < 0.8 else paddle
        target_broker = self.paddle_broker(lot.session, target)
        amount = max(lot.reserve, lot.terms.starting_bid) * rng.randrange(40, 110) // 100 or 1
        kind = rng.choices(range(8), weights=(8, 1, 3, 2, 2, 1, 3, 1))[0]
        if kind == 0:
            return [(MakeOffer(serial=serial, paddle=paddle, amount=amount), broker, "broker", False)]
        if kind == 1:
            return [(WithdrawOffer(serial=serial, paddle=target), target_broker, "broker", False)]
        if kind == 2:
            action = rng.choice(("accept", "decline", "counter", "counter"))
            return [(AnswerOffer(serial=serial, paddle=target, action=action,
                                 amount=amount + 50 * USD if action == "counter" else 0),
                     seller_broker, "broker", False)]
        if kind == 3:
            return [(AcceptCounter(serial=serial, paddle=target), target_broker, "broker", False)]
        if kind == 4:
            return [(LowerReserve(serial=serial, reserve=lot.reserve * rng.randrange(50, 100) // 100),
                     seller_broker, "broker", False)]
        if kind == 5:
            return [(RecordNegotiatedSale(serial=serial, paddle=paddle, amount=amount),
                     "op", "operator", False)]
        if kind == 6:
            opens = self.d.ts + rng.randrange(0, HOUR)
            closes = opens + rng.randrange(2 * HOUR, DAY)
            return [(RelistLot(serial=serial, opens_at=opens, closes_at=closes,
                               hard_end=closes + HOUR if lot.terms.soft_window else 0,
                               reserve=rng.choice((None, lot.reserve // 2))),
                     "op", "operator", False)]
        return [(MakeOffer(serial=serial, paddle=paddle, amount=amount * 2), broker, "broker", False)]

    # ------------------------------------------------------------------ books

    def book_step(self) -> list[Step]:
        rng, state = self.rng, self.state
        sessions = self.open_sessions()
        # a patent book for a book lot that has none
        if rng.random() < 0.15:
            statuses = ("scheduled", "open") if rng.random() < 0.9 else ("draft", "vetted")
            for lot in self.recent_lots(*statuses, mechanisms=("bid_ask",)):
                if state.sessions[lot.session].open and not any(
                        inst.lot == lot.serial and inst.phase != "closed"
                        for inst in state.books.values()):
                    self.instruments_made += 1
                    return [(CreateInstrument(session=lot.session,
                                              instrument=f"P{self.instruments_made}",
                                              kind="patent", lot=lot.serial,
                                              stp=rng.choice(("cancel_newest", "cancel_oldest")),
                                              call=rng.random() < 0.25,
                                              max_orders=rng.choice((0, 2))),
                             "op", "operator", False)]
        live = [inst for inst in self.live_instruments() if state.sessions[inst.session].open]
        if sessions and (not [i for i in live if i.kind == "units"] or rng.random() < 0.004):
            return self.new_units(rng.choice(sessions))
        if not live or rng.random() < 0.03:
            pool = list(state.books.values())
            if not pool:
                return []
            inst = rng.choice(pool)          # maybe closed: refusals
        else:
            patents = [i for i in live if i.kind == "patent"]
            trading = [i for i in patents if state.lots[i.lot].status == "open"]
            if trading and rng.random() < 0.9:
                patents = trading
            units = [i for i in live if i.kind == "units"]
            inst = rng.choice(patents if patents and rng.random() < 0.3 or not units else units)
        paddle = self.usable_paddle(inst.session, inst.currency)
        if paddle is None:
            return []
        broker = self.paddle_broker(inst.session, paddle)
        if inst.kind == "patent":
            return self.patent_order(inst, paddle, broker)
        s, i = inst.session, inst.id
        oid = rng.randint(1, 12)
        roll = rng.random()
        if 0.52 <= roll < 0.76 and inst.book.orders and rng.random() < 0.75:
            paddle, oid = rng.choice(list(inst.book.orders))     # a resting order, mostly
            broker = self.paddle_broker(s, paddle)
        if roll < 0.06:
            return [(IssueUnits(session=s, instrument=i, paddle=paddle,
                                qty=rng.choice((10, 50, 200))), "op", "operator", False)]
        if roll < 0.52:
            tif = rng.choice(("gtc", "gtc", "gtc", "gtd", "ioc", "fok", "market"))
            expires = self.d.ts + rng.randint(1, 90) * MINUTE if tif == "gtd" else 0
            return [(PlaceOrder(session=s, instrument=i, paddle=paddle, order=oid,
                                side=rng.choice(("buy", "sell")), qty=rng.randint(1, 30),
                                price=0 if tif == "market" else rng.randint(94, 106) * USD,
                                tif=tif, post_only=tif in ("gtc", "gtd") and rng.random() < 0.1,
                                expires=expires), broker, "broker", False)]
        if roll < 0.64:
            return [(CancelOrder(session=s, instrument=i, paddle=paddle, order=oid),
                     broker, "broker", False)]
        if roll < 0.76:
            return [(ModifyOrder(session=s, instrument=i, paddle=paddle, order=oid,
                                 price=rng.randint(94, 106) * USD, qty=rng.randint(1, 30)),
                     broker, "broker", False)]
        if roll < 0.79:
            kind = rng.randrange(5)
            if kind == 0:
                return [(MassCancel(session=s, instrument=i, paddle=paddle), broker, "broker", False)]
            if kind == 1:
                return [(MassCancel(session=s), broker, "broker", False)]
            if kind == 2:
                return [(MassCancel(session=s, broker=rng.choice(BROKERS)), "op", "operator", False)]
            if kind == 3:
                return [(MassCancel(session=s, instrument=i), "op", "operator", False)]
            return [(MassCancel(session=s, instrument=i, broker=broker), broker, "broker", False)]
        if roll < 0.84:
            return [(ConsumeUnits(session=s, instrument=i, paddle=paddle, qty=rng.randint(1, 10)),
                     broker, "broker", False)]
        if roll < 0.88:
            owing = [p for p, party in state.sessions[s].paddles.items() if self.owed(inst, party)]
            if owing and rng.random() < 0.8:
                paddle = rng.choice(owing)
            owed = self.owed(inst, self.party_of(s, paddle))
            amount = rng.choice((owed, max(1, owed // 2), owed + 1)) if owed else rng.randint(1, 99)
            return [(RecordUnitsPayment(session=s, instrument=i, paddle=paddle, amount=amount,
                                        reference="WIRE"), "op", "operator", False)]
        if roll < 0.89:
            return [(SetOrderLimit(session=s, instrument=i, max_orders=rng.choice((0, 1, 3, 8))),
                     "op", "operator", False)]
        if roll < 0.90:
            return [(SetPriceRules(session=s, instrument=i, tick=rng.choice((1, 1, USD, 5 * USD)),
                                   band_bp=rng.choice((0, 0, 300, 1_000))),
                     "op", "operator", False)]
        if roll < 0.95:
            return self.phase_step(inst, (0, 100 * USD))
        if roll < 0.953:
            return [(CloseInstrument(session=s, instrument=i), "op", "operator", False)]
        if roll < 0.965:
            return self.liquidity_step(inst, paddle)
        return [(PlaceOrder(session=s, instrument=i, paddle=paddle, order=oid, side="buy",
                            qty=rng.randint(50, 400), price=rng.randint(95, 105) * USD),
                 broker, "broker", False)]   # a big buy: credit refusals

    def liquidity_step(self, inst, paddle: int) -> list[Step]:
        """The operator appoints a liquidity provider, ends one or asks for
        their reports."""
        rng, s, i = self.rng, inst.session, inst.id
        providers = list(inst.providers)
        kind = rng.randrange(4)
        if kind == 0 or not providers:
            return [(AppointLiquidityProvider(
                session=s, instrument=i, paddle=paddle,
                max_spread=rng.choice((1, 2 * USD, 12 * USD)), min_qty=rng.choice((1, 5, 20)),
                presence_bp=rng.choice((1, 5_000, 10_000))), "op", "operator", False)]
        if kind == 1:
            return [(EndLiquidityProvider(session=s, instrument=i, paddle=rng.choice(providers)),
                     "op", "operator", False)]
        return [(ReportLiquidity(session=s, instrument=i, reset=rng.random() < 0.3),
                 "op", "operator", False)]

    def phase_step(self, inst, references: tuple[int, int]) -> list[Step]:
        """The operator moves a book's phase: resume a halt, halt it now and
        then, else start a call period or uncross one."""
        rng, s, i = self.rng, inst.session, inst.id
        if inst.phase == "halted":
            return [(ResumeTrading(session=s, instrument=i,
                                   phase=rng.choice(("continuous", "call"))),
                     "op", "operator", False)]
        if rng.random() < 0.05:
            return [(HaltTrading(session=s, instrument=i, reason="news pending"),
                     "op", "operator", False)]
        if inst.phase == "continuous":
            return [(StartCall(session=s, instrument=i), "op", "operator", False)]
        return [(Uncross(session=s, instrument=i, reference=rng.choice(references)),
                 "op", "operator", False)]

    def owed(self, inst, party: int) -> int:
        found = self.state.exposure.get((inst.session, party))
        return 0 if found is None else found.items.get(("bought", inst.id), 0)

    def patent_order(self, inst, paddle: int, broker: str) -> list[Step]:
        rng, state = self.rng, self.state
        lot = state.lots[inst.lot]
        s, i = inst.session, inst.id
        seller_paddle = state.sessions[s].by_party.get(lot.seller)
        start = lot.terms.starting_bid
        roll = rng.random()
        if roll < 0.04:
            return self.phase_step(inst, (0, start))
        if roll < 0.05:
            return [(SetOrderLimit(session=s, instrument=i, max_orders=rng.choice((0, 1, 2))),
                     "op", "operator", False)]
        if roll < 0.3 and seller_paddle is not None:
            seller_broker = self.broker_of(lot.seller)
            oid = rng.randint(1, 3)
            if rng.random() < 0.3:
                return [(ModifyOrder(session=s, instrument=i, paddle=seller_paddle, order=oid,
                                     price=start * rng.randrange(90, 200) // 100, qty=1),
                         seller_broker, "broker", False)]
            return [(PlaceOrder(session=s, instrument=i, paddle=seller_paddle, order=oid,
                                side="sell", qty=1,
                                price=start * rng.randrange(100, 250) // 100),
                     seller_broker, "broker", False)]
        oid = rng.randint(1, 4)
        if 0.3 <= roll < 0.5 and inst.book.orders and rng.random() < 0.7:
            paddle, oid = rng.choice(list(inst.book.orders))
            broker = self.paddle_broker(s, paddle)
        if roll < 0.4:
            return [(CancelOrder(session=s, instrument=i, paddle=paddle, order=oid),
                     broker, "broker", False)]
        if roll < 0.5:
            return [(ModifyOrder(session=s, instrument=i, paddle=paddle, order=oid,
                                 price=start * rng.randrange(80, 220) // 100, qty=1),
                     broker, "broker", False)]
        tif = rng.choice(("gtc", "gtc", "ioc", "fok", "market", "gtd"))
        return [(PlaceOrder(session=s, instrument=i, paddle=paddle, order=oid, side="buy",
                            qty=1 if rng.random() < 0.97 else 2,
                            price=0 if tif == "market" else start * rng.randrange(70, 220) // 100,
                            tif=tif, expires=self.d.ts + HOUR if tif == "gtd" else 0),
                 broker, "broker", False)]

    # ------------------------------------------------------------------ settlement

    def settlement_actor(self, right: str, role: str = "broker") -> tuple[str, str]:
        roll = self.rng.random()
        if roll < 0.9:
            return right, role
        if roll < 0.96:
            return self.rng.choice(BROKERS), "broker"
        return "op", "operator"

    def settlement_step(self) -> list[Step]:
        rng, state = self.rng, self.state
        desk = state.extra.get("settlement")
        if desk is not None and desk.offers and rng.random() < 0.25:
            offer = rng.choice(list(desk.offers.values()))
            if rng.random() < 0.2:
                self.d.ts = max(self.d.ts, offer.expires_at)     # let it expire
            return [(AnswerReaward(serial=offer.serial, paddle=offer.paddle,
                                   accept=rng.random() < 0.7),
                     *self.settlement_actor(self.paddle_broker(offer.session, offer.paddle)),
                     False)]
        if rng.random() < 0.06 or not state.settlements:
            return self.agreement()
        pool = [s for s in state.settlements.values() if s.status not in ("completed", "cancelled")]
        if not pool or rng.random() < 0.05:
            pool = list(state.settlements.values())
        s = rng.choice(pool)
        sid = s.id
        buyer_broker = self.broker_of(s.buyer)
        seller_broker = self.broker_of(s.seller)
        nexts = {"awaiting_payment": ("pay", "pay", "pay", "pay", "default"),
                 "paid": ("deliver", "deliver", "dispute"),
                 "delivered": ("confirm", "confirm", "dispute"), "received": ("release",),
                 "disputed": ("resolve",), "completed": ("release",), "cancelled": ("pay",)}
        kind = rng.choice(nexts[s.status]) if rng.random() < 0.75 else rng.choice(
            ("pay", "deliver", "confirm", "dispute", "resolve", "release", "default", "extend",
             "publicity", "object", "decide"))
        if kind == "pay":
            outstanding = s.total - s.paid
            amount = rng.choice((outstanding, outstanding, max(1, outstanding // 2),
                                 outstanding + 1))
            return [(RecordPayment(settlement=sid, amount=amount, reference="W"),
                     "op", "operator", False)]
        if kind == "deliver":
            return [(RecordDelivery(settlement=sid, reference="DOC"),
                     *self.settlement_actor(seller_broker), False)]
        if kind == "confirm":
            return [(ConfirmReceipt(settlement=sid), *self.settlement_actor(buyer_broker), False)]
        if kind == "dispute":
            return [(RaiseDispute(settlement=sid, reason="late"),
                     *self.settlement_actor(buyer_broker), False)]
        if kind == "resolve":
            outcome = rng.choice(("release", "refund", "partial_refund"))
            amount = max(1, s.net // 3) if outcome == "partial_refund" else 0
            return [(ResolveDispute(settlement=sid, outcome=outcome, amount=amount,
                                    reason="panel"), "op", "operator", False)]
        if kind == "release":
            return [(ReleaseFunds(settlement=sid), "op", "operator", False)]
        if kind == "default":
            if s.status == "awaiting_payment" and not s.overdue and rng.random() < 0.5:
                self.d.ts = max(self.d.ts, s.due_at)           # let it fall due
            return [(DeclareDefault(settlement=sid, reason="unpaid",
                                    next=rng.choice(("reaward", "reaward", "relist"))),
                     "op", "operator", False)]
        if kind == "extend":
            return [(ExtendDueDate(settlement=sid, due_at=s.due_at + DAY), "op", "operator", False)]
        if kind == "publicity":
            return [(MarkStateTransfer(settlement=sid), "op", "operator", False)]
        if kind == "object":
            return [(RecordObjection(settlement=sid, objector="staff", reason="price"),
                     "op", "operator", False)]
        return [(ResolveObjection(settlement=sid, action=rng.choice(("dismiss", "uphold")),
                                  reason="decided"), "op", "operator", False)]

    def agreement(self) -> list[Step]:
        rng, state = self.rng, self.state
        sessions = self.open_sessions()
        approved = [p.id for p in state.parties.values() if p.approved]
        if not sessions or len(approved) < 2:
            return []
        self.agreements_made += 1
        buyer, seller = rng.sample(approved, 2)
        return [(RecordAgreementTransfer(
            session=rng.choice(sessions), serial=f"AT{self.agreements_made:04d}",
            title="Agreed transfer", seller=seller, buyer=buyer,
            price=rng.randrange(1, 200) * 100 * USD, buyer_premium_bp=rng.choice((0, 500)),
            seller_commission_bp=rng.choice((0, 1_000)),
            state_institution=rng.random() < 0.3), "op", "operator", False)]

    # ------------------------------------------------------------------ invalid on purpose

    def invalid_step(self) -> list[Step]:
        """A command that must be refused and change nothing."""
        rng, state = self.rng, self.state
        sessions = list(state.sessions)
        session = rng.choice(sessions)
        paddles = self.paddles(session)
        broker = rng.choice(BROKERS)
        theirs = [p for p in paddles if self.paddle_broker(session, p) != broker]
        their_paddle = rng.choice(theirs) if theirs else 999
        kind = rng.randrange(16)
        lots = [state.lots[s] for s in self.serials[-30:] if state.lots[s].session == session]
        insts = [inst for inst in state.books.values() if inst.session == session]
        if kind == 0 and lots:                      # another broker's paddle on a lot
            lot = rng.choice(lots)
            return [(PlaceBid(serial=lot.serial, paddle=their_paddle,
                              amount=lot.terms.starting_bid * 2), broker, "broker", True)]
        if kind == 1 and insts:                     # ... on a book
            inst = rng.choice(insts)
            return [(PlaceOrder(session=session, instrument=inst.id, paddle=their_paddle,
                                order=1, side="buy", qty=1, price=100 * USD),
                     broker, "broker", True)]
        if kind == 2 and insts:                     # cancel another broker's order
            inst = rng.choice(insts)
            keys = [k for k in inst.book.orders if self.paddle_broker(session, k[0]) != broker]
            paddle, oid = rng.choice(keys) if keys else (their_paddle, 1)
            return [(CancelOrder(session=session, instrument=inst.id, paddle=paddle, order=oid),
                     broker, "broker", True)]
        if kind == 3 and insts:
            inst = rng.choice(insts)
            keys = [k for k in inst.book.orders if self.paddle_broker(session, k[0]) != broker]
            paddle, oid = rng.choice(keys) if keys else (their_paddle, 1)
            return [(ModifyOrder(session=session, instrument=inst.id, paddle=paddle, order=oid,
                                 price=100 * USD, qty=1), broker, "broker", True)]
        if kind == 4:                               # another broker's party as a seller
            others = [p.id for p in state.parties.values() if p.broker != broker]
            seller = rng.choice(others) if others else 10**7
            self.lots_made += 1
            serial = f"L{self.lots_made:04d}"       # never created: not in self.serials
            return [(CreateLot(serial=serial, session=session, seller=seller,
                               terms=self.terms(title="Stolen")), broker, "broker", True)]
        if kind == 5:                               # a party for another broker
            return [(RegisterParty(name=f"{NAME_MARK}x", broker=self.other_broker(broker)),
                     broker, "broker", True)]
        if kind == 6:                               # another broker's orders
            return [(MassCancel(session=session, broker=self.other_broker(broker)),
                     broker, "broker", True)]
        if kind == 7 and lots:                      # another broker's lot
            lot = rng.choice(lots)
            if self.broker_of(lot.seller) != broker:
                return [(WithdrawLot(serial=lot.serial), broker, "broker", True)]
        if kind == 8:
            return [(PlaceBid(serial="NO-SUCH-LOT", paddle=rng.choice(paddles or [101]),
                              amount=100), broker, "broker", True)]
        if kind == 9:
            return [(PlaceOrder(session=session, instrument="NO-SUCH-BOOK",
                                paddle=rng.choice(paddles or [101]), order=1, side="buy", qty=1,
                                price=1), broker, "broker", True)]
        if kind == 10:
            return [(rng.choice((RecordPayment(settlement=10**6, amount=1),
                                 ReleaseFunds(settlement=10**6),
                                 IssuePaddle(session=session, party=10**7),
                                 ReviewCredit(party=10**7, approved=True, credit_limit=1,
                                              agreement_version="X"),
                                 CreateLot(serial="X-NOSESSION", session="NO-SUCH-SESSION",
                                           seller=1, terms=self.terms()),
                                 CancelOrder(session="NO-SUCH-SESSION", instrument="U1",
                                             paddle=101, order=1))), "op", "operator", True)]
        if kind == 11:                              # a viewer may do nothing
            cmd = rng.choice((PlaceOrder(session=session, instrument="U1", paddle=101, order=1,
                                         side="buy", qty=1, price=1),
                              PlaceBid(serial=self.serials[-1] if self.serials else "L", paddle=101,
                                       amount=1),
                              MassCancel(session=session)))
            return [(cmd, "viewer", "viewer", True)]
        if kind == 12 and state.settlements:        # a settlement step by a stranger
            s = rng.choice(list(state.settlements.values()))
            strangers = [b for b in BROKERS if b not in (self.broker_of(s.buyer),
                                                         self.broker_of(s.seller))]
            if strangers:
                return [(rng.choice((RecordDelivery(settlement=s.id, reference="D"),
                                     ConfirmReceipt(settlement=s.id),
                                     RaiseDispute(settlement=s.id, reason="x"))),
                         rng.choice(strangers), "broker", True)]
        if kind == 13 and insts:                    # consume with another broker's paddle
            inst = rng.choice(insts)
            return [(ConsumeUnits(session=session, instrument=inst.id, paddle=their_paddle, qty=1),
                     broker, "broker", True)]
        if kind == 14:                              # an unknown paddle (numbers are per session)
            paddle = max(paddles, default=100) + rng.randint(1, 50)
            cmd = rng.choice([PlaceBid(serial=lot.serial, paddle=paddle, amount=10**6)
                              for lot in lots[:1]]
                             + [CancelOrder(session=session, instrument=inst.id, paddle=paddle,
                                            order=1) for inst in insts[:1]]
                             + [MassCancel(session=session, paddle=paddle)])
            return [(cmd, broker, "broker", True)]
        unfrozen = [p.id for p in state.parties.values() if not p.frozen]
        if unfrozen:
            return [(LiftFreeze(party=rng.choice(unfrozen)), "op", "operator", True)]
        return []

    # ------------------------------------------------------------------ sending and checks

    def pick(self) -> list:
        rng = self.rng
        roll = rng.random()
        if roll < 0.0025:
            return self.session_step()
        if roll < 0.055:
            return self.participants_step()
        if roll < 0.37:
            return self.lots_step()
        if roll < 0.75:
            return self.book_step()
        if roll < 0.91:
            return self.settlement_step()
        return self.invalid_step()

    def where(self) -> str:
        return f"seed {self.seed}, step {self.step}, seq {self.d.seq}"

    def image(self) -> bytes:
        return state_image(self.d.engine)

    def run_steps(self, steps: list) -> None:
        for step in steps:
            if callable(step):
                more = step()
                self.run_steps(more if isinstance(more, list) else [more])
                continue
            cmd, actor, role, must_refuse = step
            self.send(cmd, actor, role, must_refuse)

    def before(self) -> tuple:
        state = self.state
        totals = {key: found.total for key, found in state.exposure.items()}
        return totals, self.resting()

    def resting(self) -> dict[str, dict[int, int]]:
        """instrument -> paddle -> its resting orders, from the books."""
        counts: dict[str, dict[int, int]] = {}
        for inst in self.state.books.values():
            if inst.book.orders:
                mine = counts[inst.id] = {}
                for paddle, _ in inst.book.orders:
                    mine[paddle] = mine.get(paddle, 0) + 1
        return counts

    def send(self, cmd, actor: str, role: str, must_refuse: bool = False,
             compare: bool | None = None) -> list:
        rng = self.rng
        if compare is None:
            compare = must_refuse or rng.random() < 0.05
        if compare:
            self.checked(None, "clock", "system")   # fire what is due, so only the command is compared
            image = self.image()
        events = self.checked(cmd, actor, role)
        rejected = [e for e in events if isinstance(e, CommandRejected)]
        name = type(cmd).__name__
        if rejected:
            self.count(f"refused_{rejected[0].code}")
            # PROTOCOL: to a broker another's paddle (party) and none look the same
            assert role != "broker" or rejected[0].code not in ("unknown_party", "unknown_paddle"), \
                f"{self.where()}: {cmd} from {actor} refused {rejected[0].code!r}"
            assert len(rejected) == 1 and events[-1] is rejected[0], \
                f"{self.where()}: a refusal is the envelope's last event: {events}"
            assert not compare or self.image() == image, \
                f"{self.where()}: refused {cmd} ({rejected[0].code}) changed the state"
        else:
            self.count(f"done_{name}")
            assert not must_refuse, f"{self.where()}: {cmd} from {actor} ({role}) was accepted: " \
                                    f"{events}"
            if role == "broker":
                self.broker_check(cmd, actor, events)
        return events

    def broker_check(self, cmd, actor: str, events: list) -> None:
        """A broker's accepted command touched its own clients' paddles, lots,
        settlements and orders only."""
        state = self.state
        name = type(cmd).__name__
        where = f"{self.where()}: {actor}'s {cmd}"
        lot = state.lots.get(getattr(cmd, "serial", ""))
        session = lot.session if lot is not None else getattr(cmd, "session", "")
        if name in OWN_PADDLE and getattr(cmd, "paddle", 0):
            party = state.sessions[session].paddles.get(cmd.paddle)
            assert party is not None and self.broker_of(party) == actor, \
                f"{where} was accepted with another's paddle"
        if name in OWN_PARTY:
            assert self.broker_of(cmd.party) == actor, f"{where} was accepted for another's party"
        if name in SELLERS_ONLY or name == "CreateLot":
            seller = lot.seller if lot is not None else cmd.seller
            assert self.broker_of(seller) == actor, f"{where} was accepted for another's lot"
        if name == "RecordDelivery":
            assert self.broker_of(state.settlements[cmd.settlement].seller) == actor, where
        if name in ("ConfirmReceipt", "RaiseDispute"):
            assert self.broker_of(state.settlements[cmd.settlement].buyer) == actor, where
        for event in events:
            if isinstance(event, OrderCancelled) and event.reason in ("requested", "mass_cancel"):
                assert self.broker_of(event.party) == actor, \
                    f"{where} cancelled another's order: {event}"
            if isinstance(event, OrderModified):
                assert self.broker_of(event.party) == actor, f"{where} modified {event}"

    def checked(self, cmd, actor: str, role: str) -> list:
        """Send one envelope (``cmd`` None: a clock tick) and check what it did."""
        before = self.before()
        try:
            if cmd is None:
                events = self.d.tick(self.d.ts)
            else:
                events = self.d.send(cmd, actor=actor, role=role)
        except AssertionError as broken:
            raise AssertionError(f"{self.where()}, {cmd}: invariant broken: {broken}") from broken
        self.after(cmd, events, before)
        return events

    def after(self, cmd, events: list, before: tuple) -> None:
        state = self.state
        where = f"{self.where()}, {type(cmd).__name__ if cmd is not None else 'Tick'}"
        # -- public events: paddles only, nothing secret
        closed_here = {e.serial for e in events if isinstance(e, LotClosed)}
        for event in events:
            kind = type(event).__name__
            self.count(f"event_{kind}")
            if event.to != ():
                continue
            for owner, field, value in _struct_fields(event):
                assert field not in IDENTITY_FIELDS or (owner, field) in PUBLIC_BY_DESIGN, \
                    f"{where}: public {kind} carries {owner}.{field}: {event}"
            assert NAME_MARK.encode() not in encode(event), \
                f"{where}: public {kind} carries a party name: {event}"
            serial = getattr(event, "serial", None) or getattr(event, "lot", None)
            lot = state.lots.get(serial) if serial else None
            if lot is None:
                continue
            assert lot.opens_at, f"{where}: public {kind} names lot {serial}, never published: " \
                                 f"{event}"
            if lot.mechanism in SEALED:
                assert kind in SEALED_PUBLIC and not isinstance(event, BidVoided), \
                    f"{where}: public {kind} on sealed lot {serial}: {event}"
            if isinstance(event, SealedBidsRevealed):
                assert serial in closed_here, f"{where}: {serial}'s bids revealed without its close"
        # -- credit: no rise above a limit
        totals, counts = before
        for key, found in state.exposure.items():
            limit = state.parties[key[1]].credit_limit
            if found.total > limit and found.total > totals.get(key, 0):
                raise AssertionError(
                    f"{where}: party {key[1]} in {key[0]} rose from {totals.get(key, 0)} to "
                    f"{found.total}, over its limit of {limit}: {cmd}; {found.items}")
        # -- resting-order limits
        resting = self.resting()
        for inst in state.books.values():
            if inst.max_orders and inst.id in resting:
                held = counts.get(inst.id, {})
                for paddle, now_held in resting[inst.id].items():
                    assert now_held <= max(held.get(paddle, 0), inst.max_orders), \
                        f"{where}: paddle {paddle} rests {now_held} orders on {inst.id}, " \
                        f"limit {inst.max_orders}, had {held.get(paddle, 0)}"
        # -- a closed session trades no more
        for inst in state.books.values():
            if not state.sessions[inst.session].open:
                assert inst.phase == "closed" and not inst.book.orders, \
                    f"{where}: book {inst.id} of closed session {inst.session} is {inst.phase}"
        # -- money, from the events alone; sales
        for event in events:
            if isinstance(event, PaymentRecorded):
                self.paid_in += event.amount
            elif isinstance(event, FundsReleased):
                self.taken_out += event.to_seller + event.to_venue + event.refunded
            elif isinstance(event, FundsRefunded):
                self.taken_out += event.amount
            elif isinstance(event, LotAwarded):
                self.count(f"sold_{event.how}_{event.mechanism}")
                lot = state.lots[event.serial]
                if event.how == "auction" and lot.mechanism in ("english", "sealed_first",
                                                                "sealed_second", "dutch"):
                    assert event.hammer >= max(lot.reserve, lot.terms.starting_bid), \
                        f"{where}: {event} below the reserve {lot.reserve}"
                if event.how == "auction" and lot.mechanism == "reverse":
                    assert event.hammer <= (lot.reserve or lot.terms.starting_bid), \
                        f"{where}: {event} above the ceiling"
                assert event.total - event.net == event.premium + event.commission, where
            elif isinstance(event, OrderCancelled):
                self.count(f"cancelled_{event.reason}")
            elif isinstance(event, TradeExecuted):
                self.count("trades")
        escrow = sum(s.escrow for s in state.settlements.values())
        assert self.paid_in == self.taken_out + escrow, \
            f"{where}: paid in {self.paid_in} != taken out {self.taken_out} + escrow {escrow}"
        # -- private events reach their owners only
        for event in events:
            if event.to and not isinstance(event, CommandRejected):
                self.audience_check(event, where)
        # -- brokers hear of every change of their clients' exposure, and its last value
        told: dict[tuple[str, int], CreditChanged] = {}
        for event in events:
            if isinstance(event, CreditChanged):
                told[(event.session, event.party)] = event
        for key, found in state.exposure.items():
            if found.total != totals.get(key, 0) or key in told:
                last = told.get(key)
                assert last is not None and last.exposure == found.total, \
                    f"{where}: party {key[1]}'s exposure in {key[0]} went from " \
                    f"{totals.get(key, 0)} to {found.total}; its broker was told {last}"
                reviewed = any(type(e).__name__ == "CreditReviewed" and e.party == key[1]
                               for e in events[next(i for i, e in enumerate(events)
                                                    if e is last):])
                assert reviewed or last.credit_limit == state.parties[key[1]].credit_limit, \
                    f"{where}: {last}"
        # -- what the feed and the private events say is what is
        self.views.fold(events, where)
        self.views.check(state, where)

    def audience_check(self, event, where: str) -> None:
        """A private event goes to the brokers of the parties it is about, no other."""
        state = self.state
        kind = type(event).__name__
        brokers = {user for user in event.to if user != OPERATORS}
        if not brokers:
            return
        parties = [getattr(event, f) for f in PARTY_FIELDS if isinstance(getattr(event, f, None), int)]
        session = getattr(event, "session", "")
        serial = getattr(event, "serial", "") or getattr(event, "lot", "")
        lot = state.lots.get(serial)
        if lot is not None:
            session = lot.session
        paddle_brokers = set()
        for field in ("paddle", "buyer_paddle", "seller_paddle"):
            paddle = getattr(event, field, 0)
            if paddle and session in state.sessions:
                party = state.sessions[session].paddles.get(paddle)
                if party is not None:
                    paddle_brokers.add(self.broker_of(party))
        if parties:
            allowed = {self.broker_of(p) for p in parties if p in state.parties}
        elif kind in BIDDERS_ONLY:
            allowed = paddle_brokers
        else:
            allowed = set(paddle_brokers)
            if lot is not None:
                allowed.add(self.broker_of(lot.seller))
            sid = getattr(event, "settlement", 0)
            desk = state.extra.get("settlement")
            if not sid and desk is not None and serial in desk.agreements:
                sid = desk.agreements[serial]
            if sid in state.settlements:
                s = state.settlements[sid]
                allowed |= {self.broker_of(s.buyer), self.broker_of(s.seller)}
        assert brokers <= allowed, f"{where}: private {kind} goes to {sorted(brokers - allowed)}, " \
                                   f"not only to {sorted(allowed)}: {event}"

    # ------------------------------------------------------------------ run

    def run(self, steps: int) -> None:
        rng = self.rng
        while self.step < steps:
            self.step += 1
            if rng.random() < 0.03:
                self.d.ts += rng.choice((10 * MINUTE, HOUR, 3 * HOUR, 12 * HOUR))
                self.checked(None, "clock", "system")
            self.d.ts += rng.randrange(0, 2 * MINUTE)
            self.run_steps(self.pick())


def plain(value: Any) -> Any:
    """``value`` as plain lists and dicts, for comparing states: a snapshot's
    bytes tell object sharing apart too (a string held twice or once), which a
    restore need not keep."""
    if isinstance(value, (int, str, bytes, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [plain(item) for item in value]]
    if isinstance(value, dict):
        return ["dict", [(plain(k), plain(v)) for k, v in value.items()]]
    if isinstance(value, msgspec.Struct):
        return [type(value).__name__, [(f, plain(getattr(value, f))) for f in value.__struct_fields__]]
    fields = dict(getattr(value, "__dict__", {}))
    for cls in type(value).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(value, slot):
                fields[slot] = getattr(value, slot)
    return [type(value).__name__, {name: plain(field) for name, field in fields.items()}]


def replay_checks(seed: int, log: list, live: Engine) -> None:
    """The journal through a fresh engine gives the same events, byte for byte,
    and the same state; so does a replay snapshotted and restored at several
    points."""
    engine = Engine()
    for index, (env, events) in enumerate(log):
        assert encode(engine.apply(env)) == encode(events), \
            f"seed {seed}: replay of entry {index} ({env.cmd}) differs"
    state = plain(vars(live.state))
    assert plain(vars(engine.state)) == state, f"seed {seed}: the replayed state differs"
    rng = random.Random(seed)
    points = set(rng.sample(range(1, len(log)), min(6, len(log) - 1)))
    engine = Engine()
    for index, (env, events) in enumerate(log):
        if index in points:
            engine = Engine.restore(engine.snapshot())
        assert encode(engine.apply(env)) == encode(events), \
            f"seed {seed}: entry {index} ({env.cmd}) differs after a snapshot and restore"
    assert plain(vars(engine.state)) == state, f"seed {seed}: the state differs after restores"


# What every run must have done at least once (it runs on, up to three times
# its length, until it has): the mix this test is for.
COVERED = (
    "trades", "done_Uncross", "done_ModifyOrder", "done_MassCancel", "cancelled_expired",
    "cancelled_session_closed", "cancelled_party_frozen", "cancelled_approval_withdrawn",
    "refused_too_many_orders", "refused_over_credit_limit", "refused_wrong_currency",
    "closed_session_live", "sold_book_bid_ask", "sold_auction_english", "sold_auction_dutch",
    "sold_auction_reverse", "event_SealedBidsRevealed", "sold_negotiated", "sold_reaward",
    "sold_ask", "event_LotRelisted", "event_LotWithdrawn", "event_PartyFrozen",
    "event_BidVoided", "event_SettlementCompleted", "event_SettlementCancelled",
    "event_CertificateIssued", "done_CloseInstrument", "done_RecordUnitsPayment",
    "done_AddDocument", "done_RemoveDocument", "done_SignNda", "done_OpenDocument",
    "refused_nda_required", "done_DrawPanel", "done_RecordValuation", "done_PublishPriceRange",
    "done_AppointLiquidityProvider", "done_EndLiquidityProvider", "done_ReportLiquidity",
)


def missing(counts: dict[str, int]) -> list[str]:
    return [what for what in COVERED
            if not any(key == what or key.startswith(what + "_") for key in counts)]


@pytest.fixture(scope="module")
def run() -> Everything:
    stress = Everything(SEED)
    stress.setup()
    stress.run(STEPS)
    while stress.step < 3 * STEPS and missing(stress.counts):
        stress.run(stress.step + 250)
    stress.d.ts += 40 * DAY                      # everything closes, falls due, expires
    stress.checked(None, "clock", "system")
    return stress


def test_everything_mixed_keeps_every_invariant(run):
    counts = run.counts
    print(f"seed {SEED}: {run.step} steps, {run.d.seq} envelopes; " + ", ".join(
        f"{k}={v}" for k, v in sorted(counts.items()) if not k.startswith("event_")))
    assert not missing(counts), f"seed {SEED}: nothing of {missing(counts)} in {run.step} steps"


def test_everything_replays_byte_for_byte(run):
    replay_checks(SEED, run.d.log, run.d.engine)
