"""The demo: a whole OTBA-style session with simulated brokers.

The script runs against a `Venue`: either the real exchange through the
gateway (`GatewayVenue`, what ``lotex demo`` does) or an engine in-process
(`InProcessVenue`, for tests). It builds the 45-lot, 1,070-patent catalogue
of `gateway.demo_catalogue`, mixes every mechanism (English with proxy bids
and soft close, sealed first and second price, Dutch, bid-ask patent lots),
adds a reverse tender and a unit-licence book with a primary call auction,
passes some lots on their reserve and sells some of those in negotiation,
and shows amounts in USD and CNY. Every bidder's value and move comes from
a seeded generator, so a run is reproducible but for the wall clock.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from exchange.commands import (AnswerOffer, CreateInstrument, CreateLot, CreateSession,
                               IssuePaddle, IssueUnits, LotTerms, MakeOffer, Patent, PlaceBid,
                               PlaceOrder, RegisterParty, ReviewCredit, ScheduleLot,
                               SetDisplayRate, StartCall, Uncross, BuyAtAsk, CancelOrder,
                               ModifyOrder, ConsumeUnits, VetLot, LowerReserve, SetSettlementRules,
                               RecordPayment, RecordDelivery, ConfirmReceipt, ReleaseFunds,
                               DeclareDefault, AnswerReaward, RecordUnitsPayment, HaltTrading,
                               ResumeTrading, PostNotice, AddDocument, SignNda, OpenDocument,
                               RegisterExpert, DrawPanel, RecordValuation, PublishPriceRange,
                               AppointLiquidityProvider, ReportLiquidity)
from exchange.events import (CertificateIssued, CommandRejected, CreditChanged, Event,
                             LotAwarded, LotPassed, ReawardOffered, SettlementOpened,
                             NoticePosted, TradeExecuted, TradeRecorded, TradingHalted,
                             DocumentAdded, NdaSigned, DocumentReleased, PanelDrawn,
                             PriceRangePublished, LiquidityReport)
from gateway.demo_catalogue import DemoLot, build_catalogue

SECOND = 10**9
USD = 100  # cents per dollar
SESSION = "OT-2017"
LIQUIDITY_PROVIDER = 6               # the bidder who makes the unit-licence book's market
RATE_NUM, RATE_DEN = 66402, 10000  # 1 USD shows as 6.6402 CNY ($30,000 = ¥199,206)
OPERATOR = "operator"
SELLER_BROKER = "broker-seller"
BUYER_BROKERS = ("broker-us", "broker-cn", "broker-eu")
ULR = "ULR-PRINT-2017"


class DemoFailed(Exception):
    """A command the demo relies on was refused, or its exchange did not start."""


class DemoRefused(DemoFailed):
    """The demo's data directory is in use or holds an exchange already:
    nothing was touched."""


def demo_dir_refusal(data_dir: Any) -> str | None:
    """Say why the demo must not run its exchange on ``data_dir``, or None: a
    live server's ``endpoints.json`` is there, or a journal with records (an
    exchange's, or an earlier demo's, whose session the demo would create
    again)."""
    from pathlib import Path

    from gateway.client import server_gone

    data = Path(data_dir)
    if (data / "endpoints.json").exists() and server_gone(data) is None:
        return (f"{data} is the data directory of a running lotex serve (its "
                f"endpoints.json names it): the demo needs a new or empty directory")
    journal = data / "journal"
    try:
        held = journal.is_dir() and any(entry.name != "LOCK" for entry in journal.iterdir())
    except OSError as exc:
        return f"cannot read {journal}: {exc}"
    if held:
        return (f"{data} already holds a journal (an exchange's, or an earlier demo's): the "
                f"demo needs a new or empty directory")
    return None


def _die_with_parent() -> None:
    """In the demo's server child, before exec (Linux): be sent SIGTERM when
    the demo ends, however it ends (SIGKILL included), so that no demo
    exchange outlives its demo."""
    import ctypes
    import os
    import signal

    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:              # the demo ended before the prctl: end too
        os.kill(os.getpid(), signal.SIGTERM)


class Venue:
    """Where the demo sends its commands."""

    lead = 0.5  # demo seconds between the start and the first planned action

    def now(self) -> int:
        """Return the venue's time, int ns UTC."""
        raise NotImplementedError

    def wait_until(self, ts: int) -> None:
        """Return once the venue's time has reached ``ts``."""
        raise NotImplementedError

    def send(self, user: str, cmd: Any) -> list[Event]:
        """Send ``cmd`` as ``user``; return its events as ``user`` sees them.
        A refusal comes back as a `CommandRejected` event."""
        raise NotImplementedError

    def public_events(self) -> list[Event]:
        """Return every public event so far, in order."""
        raise NotImplementedError

    def operator_events(self) -> list[Event]:
        """Return every event so far that the operators were told of, in order."""
        raise NotImplementedError


@dataclass
class Bidder:
    name: str
    country: str
    broker: str
    party: int = 0
    paddle: int = 0


@dataclass
class Action:
    at: int               # offset from the start, ns
    order: int            # tie-break among actions at one time
    user: str
    make: Callable[[], Any]
    tolerate: tuple[str, ...] = ()   # reason codes that are part of the story


@dataclass
class DemoReport:
    lots: list[dict[str, Any]] = field(default_factory=list)
    trades: int = 0
    units_traded: int = 0
    halts: int = 0                   # trading halts of the unit-licence book
    notices: int = 0                 # saleroom notices
    documents: int = 0               # documents listed in the lots' data rooms
    ndas: int = 0                    # NDAs signed for data rooms
    documents_opened: int = 0        # documents released to NDA signers
    valued: int = 0                  # lots listed with an expert panel's price range
    settled: int = 0
    certificates: int = 0
    defaults: int = 0
    reawarded: int = 0
    units_payers: int = 0            # buyers of units whose payment was recorded
    units_paid: int = 0              # and what they paid (minor units)
    # the unit-licence book's liquidity provider's report before the close
    liquidity: LiquidityReport | None = None
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (command, code, text)


BIDDERS = (
    ("Pacific Imaging Inc.", "US", "broker-us"),
    ("Lakeside Devices LLC", "US", "broker-us"),
    ("Shenzhen Optics Co.", "CN", "broker-cn"),
    ("Hangzhou Print Tech", "CN", "broker-cn"),
    ("Beijing Mobile Ltd.", "CN", "broker-cn"),
    ("Rhein Sensorik GmbH", "DE", "broker-eu"),
    ("Nordic Photonics AB", "SE", "broker-eu"),
    ("Atlantic Networks plc", "GB", "broker-eu"),
)

# Refusals that are part of a live market's story: a bid below the current
# price, a credit limit reached, a lot sold at its Ask before a bid arrived,
# an order already filled when its cancel arrives. The demo counts them.
BIDDING_RISKS = ("below_minimum", "below_increment", "below_current_price", "not_above_own_max",
                 "over_credit_limit", "lot_not_open", "lot_closed", "no_ask", "above_budget",
                 "not_acceptable")
TRADING_RISKS = ("over_credit_limit", "insufficient_units", "instrument_closed", "order_filled",
                 "order_cancelled", "unknown_order", "lot_not_trading", "wrong_phase",
                 "instrument_halted")
NEGOTIATION_RISKS = ("over_credit_limit", "not_in_negotiation", "no_offer", "not_lower",
                     "lot_closed", "bad_status")

# The exchange's pool of valuation experts (no field: any).
EXPERTS = (
    ("Dr. Chen Jing", ("printing", "imaging")), ("Prof. Mark Ellison", ()),
    ("Dr. Ingrid Sorensen", ("networking", "communications")), ("Dr. Rahul Mehta", ()),
    ("Prof. Liu Yang", ("mobile phones and tablets", "sensors and RFID")),
    ("Dr. Sarah Okafor", ()), ("Dr. Kenji Watanabe", ("projectors", "imaging")),
    ("Prof. Elena Rossi", ()), ("Dr. Wang Lei", ("computer systems", "gaming")),
)

# The mechanism of each of the 45 lots, by position.
PLAN = (["english"] * 22 + ["sealed_first"] * 7 + ["sealed_second"] * 7 + ["dutch"] * 5
        + ["bid_ask"] * 3 + ["english"])


def _ok(user: str, cmd: Any, events: list[Event], tolerate: Iterable[str] = ()) -> list[Event]:
    for event in events:
        if isinstance(event, CommandRejected) and event.code not in tolerate:
            raise DemoFailed(f"{user}: {type(cmd).__name__} refused: {event.code}: {event.text}")
    return events


class DemoSession:
    """Build and run the demo session on a venue. ``pace`` is how many ns of
    venue time one demo second lasts."""

    def __init__(self, venue: Venue, *, seed: int = 2017, pace: int = SECOND,
                 say: Callable[[str], None] = lambda line: None) -> None:
        self.venue = venue
        self.rng = random.Random(seed)
        self.room_rng = random.Random(seed + 1)   # data rooms: apart, the bidding as before
        self.pace = pace
        self.say = say
        self.catalogue = build_catalogue(seed)
        self.bidders = [Bidder(name, country, broker) for name, country, broker in BIDDERS]
        self.seller = 0
        self.seller_paddle = 0
        self.seeker = 0
        self.experts: list[int] = []             # the pool of valuation experts
        self.issuer_paddle = 0
        self.start = 0
        self.values: dict[str, int] = {}       # lot serial -> market value (minor units)
        self.reserves: dict[str, int] = {}
        self.actions: list[Action] = []
        self.rejected: list[tuple[str, str, str]] = []
        self.settled = self.defaults = self.reawarded = 0
        self.units_payers = self.units_paid = 0
        self.liquidity: LiquidityReport | None = None

    # ------------------------------------------------------------------ helpers

    def t(self, seconds: float) -> int:
        """Return venue time ``seconds`` demo seconds after the start."""
        return self.start + int(seconds * 1000) * self.pace // 1000

    def send(self, user: str, cmd: Any, tolerate: Iterable[str] = ()) -> list[Event]:
        events = self.venue.send(user, cmd)
        for event in events:
            if isinstance(event, CommandRejected):
                self.rejected.append((type(cmd).__name__, event.code, event.text))
        return _ok(user, cmd, events, tolerate)

    def plan(self, seconds: float, user: str, make: Callable[[], Any],
             tolerate: tuple[str, ...] = ()) -> None:
        self.actions.append(Action(self.t(seconds), len(self.actions), user, make, tolerate))

    def run_actions(self, until: float | None = None) -> None:
        """Send the planned actions in time order, waiting for each one's time."""
        self.actions.sort(key=lambda action: (action.at, action.order))
        limit = None if until is None else self.t(until)
        while self.actions and (limit is None or self.actions[0].at <= limit):
            action = self.actions.pop(0)
            self.venue.wait_until(action.at)
            self.send(action.user, action.make(), action.tolerate)
        if limit is not None:
            self.venue.wait_until(limit)

    # ------------------------------------------------------------------ the story

    def run(self) -> DemoReport:
        self.start = self.venue.now() + int(self.venue.lead * self.pace)
        self.setup_participants()
        self.setup_lots()
        self.setup_tender()
        self.setup_units_book()
        first = self.catalogue[0]
        self.send(OPERATOR, PostNotice(
            session=SESSION, serial=first.serial,
            text=f"saleroom notice: {first.patents[0].number} in lot {first.serial} is "
                 f"subject to a terminal disclaimer; bids stand"))
        self.say(f"catalogue: {len(self.catalogue)} lots, "
                 f"{sum(len(lot.patents) for lot in self.catalogue)} patents; bidding opens")
        self.run_actions(until=18.5)
        self.report_liquidity()
        self.negotiate_passed_lots()
        self.run_actions(until=31)
        self.settle()
        return self.report()

    def setup_participants(self) -> None:
        self.send(OPERATOR, CreateSession(session=SESSION, name="Patent auction, autumn 2017",
                                          currency="USD", starts_at=self.start,
                                          ends_at=self.t(3600)))
        self.send(OPERATOR, SetDisplayRate(base="USD", quote="CNY", num=RATE_NUM, den=RATE_DEN))
        self.send(OPERATOR, SetSettlementRules(session=SESSION, payment_term=30 * self.pace,
                                               reaward_window=10 * self.pace,
                                               publicity_period=15 * self.pace))
        self.seller = self.register(SELLER_BROKER, "Hewlett-Packard Company", "US", 0)
        self.seller_paddle = self.paddle(self.seller)
        for bidder in self.bidders:
            limit = self.rng.randint(4, 9) * 1_000_000 * USD
            bidder.party = self.register(bidder.broker, bidder.name, bidder.country, limit)
            bidder.paddle = self.paddle(bidder.party)
        self.seeker = self.register("broker-us", "Midwest Medical Devices", "US",
                                    1_000_000 * USD)
        issuer = self.register(SELLER_BROKER, "ULR Issuer Trust (printing pool)", "US", 0)
        self.issuer_paddle = self.paddle(issuer)
        self.say(f"{len(self.bidders)} bidders qualified; paddles "
                 f"{', '.join(str(b.paddle) for b in self.bidders)}")

    def register(self, broker: str, name: str, country: str, limit: int) -> int:
        party = self.send(broker, RegisterParty(name=name, country=country))[0].party
        self.send(OPERATOR, ReviewCredit(party=party, approved=True, credit_limit=limit,
                                         currency="USD", agreement_version="BRA-2017-03",
                                         score=self.rng.randint(70, 99)))
        return party

    def paddle(self, party: int) -> int:
        return self.send(OPERATOR, IssuePaddle(session=SESSION, party=party))[0].paddle

    def terms(self, lot: DemoLot, mechanism: str, value: int, index: int) -> LotTerms:
        close = 12 + (index % 8) * 0.5
        patents = tuple(Patent(number=p.number, title=p.title, family_id=p.family_id,
                               jurisdiction=p.jurisdiction, status=p.status, field=p.field,
                               priority_date=p.priority_date, expiry_date=p.expiry_date)
                        for p in lot.patents)
        common = dict(title=lot.title, patents=patents, currency="USD", mechanism=mechanism,
                      opens_at=self.t(2), closes_at=self.t(close), buyer_premium_bp=1000,
                      seller_commission_bp=1500, display_currency="CNY",
                      negotiation_window=12 * self.pace)
        if mechanism == "english":
            common.update(starting_bid=30_000 * USD, increments="otba",
                          soft_window=2 * self.pace, soft_extend=2 * self.pace,
                          hard_end=self.t(close + 6))
            if index % 9 == 4:
                common["ask"] = value * 13 // 10 // (30_000 * USD) * (30_000 * USD)
        elif mechanism in ("sealed_first", "sealed_second"):
            common.update(starting_bid=30_000 * USD)
        elif mechanism == "dutch":
            common.update(dutch_start=value * 2, dutch_step=max(value // 20, 5_000 * USD),
                          dutch_interval=self.pace * 3 // 10, closes_at=self.t(16))
        elif mechanism == "bid_ask":
            common.update(closes_at=self.t(20))
        return LotTerms(**common)

    def setup_lots(self) -> None:
        self.experts = [self.send(OPERATOR, RegisterExpert(name=name, fields=fields))[0].expert
                        for name, fields in EXPERTS]
        for index, (lot, mechanism) in enumerate(zip(self.catalogue, PLAN)):
            value = self.rng.randint(3, 30) * 30_000 * USD
            reserve = value * self.rng.choice((6, 7, 8, 8, 9, 13)) // 10
            self.values[lot.serial] = value
            self.reserves[lot.serial] = reserve
            terms = self.terms(lot, mechanism, value, index)
            self.send(SELLER_BROKER, CreateLot(serial=lot.serial, session=SESSION,
                                               seller=self.seller, terms=terms, reserve=reserve))
            self.send(OPERATOR, VetLot(serial=lot.serial, score=self.rng.randint(60, 98),
                                       approved=True, note="auctionable"))
            self.fill_data_room(lot)
            if index % 5 == 2:
                self.value_by_panel(lot, value)
            self.send(OPERATOR, ScheduleLot(serial=lot.serial))
            self.plan_bidding(lot.serial, mechanism, terms, value, index)

    def value_by_panel(self, lot: DemoLot, value: int) -> None:
        """An inquiry panel of three experts drawn at random values the lot
        before it is listed; each gives a range around what it is worth."""
        drawn = self.send(OPERATOR, DrawPanel(serial=lot.serial, size=3))
        panel = next(e for e in drawn if isinstance(e, PanelDrawn)).experts
        rng = self.room_rng
        for expert in panel:
            low = value * rng.randint(50, 90) // 100 // (1_000 * USD) * (1_000 * USD)
            high = value * rng.randint(110, 160) // 100 // (1_000 * USD) * (1_000 * USD)
            self.send(OPERATOR, RecordValuation(serial=lot.serial, expert=expert, low=low,
                                                high=high))
        self.send(OPERATOR, PublishPriceRange(serial=lot.serial))

    def fill_data_room(self, lot: DemoLot) -> None:
        """The seller indexes the lot's claim charts and file histories before
        the lot is published (publication lists them); some bidders sign the
        lot's NDA and open the claim charts before bidding opens."""
        for name in ("claim-charts.pdf", "file-histories.zip"):
            content = f"{lot.serial} {name}: " + ", ".join(p.number for p in lot.patents)
            self.send(SELLER_BROKER, AddDocument(
                serial=lot.serial, name=name, digest=hashlib.sha256(content.encode()).hexdigest(),
                size=len(content) * 997, location=f"vdr://ot-2017/{lot.serial}/{name}"))
        rng = self.room_rng
        for bidder in rng.sample(self.bidders, rng.randint(1, 3)):
            when = rng.uniform(0.6, 1.7)
            self.plan(when, bidder.broker, _sign_nda(lot.serial, bidder.party))
            self.plan(when + 0.1, bidder.broker, _open_document(lot.serial, bidder.party,
                                                                "claim-charts.pdf"))

    def interested(self) -> list[Bidder]:
        return self.rng.sample(self.bidders, self.rng.randint(2, 5))

    def plan_bidding(self, serial: str, mechanism: str, terms: LotTerms, value: int,
                     index: int) -> None:
        close = (terms.closes_at - self.start) / self.pace
        rng = self.rng
        if mechanism == "english":
            for bidder in self.interested():
                worth = value * rng.randint(50, 125) // 100
                when = rng.uniform(2.2, close - 2.5)
                if rng.random() < 0.25:
                    when = close - rng.uniform(0.2, 1.5)  # a late bid: the close extends
                self.plan(when, bidder.broker, _bid(serial, bidder.paddle, worth),
                          tolerate=BIDDING_RISKS)
            if terms.ask:
                buyer = rng.choice(self.bidders)
                self.plan(rng.uniform(2.5, 6), buyer.broker, _buy_at_ask(serial, buyer.paddle),
                          tolerate=BIDDING_RISKS)
        elif mechanism in ("sealed_first", "sealed_second"):
            for bidder in self.interested():
                worth = value * rng.randint(50, 125) // 100
                shade = 85 if mechanism == "sealed_first" else 100
                amount = max(30_000 * USD, worth * shade // 100 // USD * USD)
                self.plan(rng.uniform(2.2, close - 1), bidder.broker,
                          _bid(serial, bidder.paddle, amount),
                          tolerate=BIDDING_RISKS)
        elif mechanism == "dutch":
            bidder = rng.choice(self.bidders)
            target = value * rng.randint(70, 110) // 100
            steps = max(0, -(-(terms.dutch_start - target) // terms.dutch_step))
            when = 2 + (steps * terms.dutch_interval + self.pace // 10) / self.pace
            self.plan(min(when, 15.5), bidder.broker, _bid(serial, bidder.paddle, target),
                      tolerate=BIDDING_RISKS)
        elif mechanism == "bid_ask":
            instrument = f"BA-{serial}"
            self.plan(2.1, OPERATOR, lambda: CreateInstrument(session=SESSION, instrument=instrument,
                                                              kind="patent", lot=serial))
            ask = value * 11 // 10
            self.plan(2.3, SELLER_BROKER, _order(instrument, self.seller_paddle, 1, "sell", 1, ask))
            for number, bidder in enumerate(self.interested()[:3], start=1):
                price = value * rng.randint(80, 115) // 100 // USD * USD
                self.plan(rng.uniform(3, 10), bidder.broker,
                          _order(instrument, bidder.paddle, number, "buy", 1, price),
                          tolerate=TRADING_RISKS)

    def setup_tender(self) -> None:
        serial = "RT-2017-001"
        terms = LotTerms(title="Need: low-cost microfluidic assay licence", currency="USD",
                         mechanism="reverse", starting_bid=250_000 * USD, opens_at=self.t(2),
                         closes_at=self.t(13), buyer_premium_bp=0, seller_commission_bp=1000,
                         display_currency="CNY")
        self.send("broker-us", CreateLot(serial=serial, session=SESSION, seller=self.seeker,
                                         terms=terms, reserve=220_000 * USD))
        self.send(OPERATOR, VetLot(serial=serial, score=80, approved=True, note="tender"))
        self.send(OPERATOR, ScheduleLot(serial=serial))
        for bidder in self.rng.sample(self.bidders, 3):
            offer = self.rng.randint(150, 260) * 1_000 * USD
            self.plan(self.rng.uniform(3, 11), bidder.broker, _bid(serial, bidder.paddle, offer),
                      tolerate=BIDDING_RISKS)

    def setup_units_book(self) -> None:
        """IPXI-style unit licence rights: a primary call auction at $5, then trading."""
        self.send(OPERATOR, CreateInstrument(session=SESSION, instrument=ULR, kind="units",
                                             call=True, reference=5 * USD))
        self.send(OPERATOR, IssueUnits(session=SESSION, instrument=ULR,
                                       paddle=self.issuer_paddle, qty=750_000))
        self.plan(2.0, SELLER_BROKER, _order(ULR, self.issuer_paddle, 1, "sell", 500_000, 5 * USD))
        for number, bidder in enumerate(self.bidders, start=1):
            qty = self.rng.randint(20, 90) * 1_000
            price = self.rng.randint(470, 540)
            self.plan(self.rng.uniform(2.5, 5.5), bidder.broker,
                      _order(ULR, bidder.paddle, number, "buy", qty, price))
        self.plan(6.0, OPERATOR, lambda: Uncross(session=SESSION, instrument=ULR))
        provider = self.bidders[LIQUIDITY_PROVIDER]
        self.send(OPERATOR, IssueUnits(session=SESSION, instrument=ULR, paddle=provider.paddle,
                                       qty=20_000))      # its allotment for making the market
        self.plan(6.1, OPERATOR, lambda: AppointLiquidityProvider(
            session=SESSION, instrument=ULR, paddle=provider.paddle, max_spread=10,
            min_qty=500, presence_bp=7_500))
        order_id = 100
        mid = 5 * USD
        for step in range(160):
            when = 6.2 + step * 0.05
            if step % 5 == 0:
                self.plan_quote(provider, step // 5, when)
            bidder = self.rng.choice(self.bidders)
            mid = max(300, mid + self.rng.randint(-3, 3))
            order_id += 1
            side = self.rng.choice(("buy", "sell"))
            price = mid + (self.rng.randint(-4, 1) if side == "buy" else self.rng.randint(-1, 4))
            qty = self.rng.randint(1, 20) * 100
            tif = "ioc" if self.rng.random() < 0.15 else "gtc"
            self.plan(when, bidder.broker,
                      _order(ULR, bidder.paddle, order_id, side, qty, price, tif),
                      tolerate=TRADING_RISKS)
            roll = self.rng.random()
            if tif == "gtc" and roll < 0.3:
                self.plan(when + 0.5, bidder.broker, _cancel(ULR, bidder.paddle, order_id),
                          tolerate=TRADING_RISKS)
            elif tif == "gtc" and roll < 0.45:
                self.plan(when + 0.3, bidder.broker,
                          _modify(ULR, bidder.paddle, order_id, price, max(100, qty // 2)),
                          tolerate=TRADING_RISKS)
        # news on a licensed patent: the operator halts the book, then reopens
        # it with a call auction
        self.plan(10.0, OPERATOR, lambda: HaltTrading(
            session=SESSION, instrument=ULR,
            reason="ex parte reexamination ordered on a licensed patent"))
        self.plan(10.8, OPERATOR, lambda: ResumeTrading(session=SESSION, instrument=ULR,
                                                        phase="call"))
        self.plan(11.3, OPERATOR, lambda: Uncross(session=SESSION, instrument=ULR))
        consumer = self.bidders[0]
        self.plan(17.0, consumer.broker, lambda: ConsumeUnits(session=SESSION, instrument=ULR,
                                                              paddle=consumer.paddle, qty=1_000),
                  tolerate=TRADING_RISKS)

    def plan_quote(self, provider: Bidder, n: int, when: float) -> None:
        """The liquidity provider replaces its quote around the offering price:
        2,000 units each side, 10 cents wide."""
        ids = (9_000 + 2 * n, 9_001 + 2 * n)
        if n:
            for old in (ids[0] - 2, ids[1] - 2):
                self.plan(when - 0.01, provider.broker, _cancel(ULR, provider.paddle, old),
                          tolerate=TRADING_RISKS)
        for oid, side, price in ((ids[0], "buy", 5 * USD - 5), (ids[1], "sell", 5 * USD + 5)):
            self.plan(when, provider.broker, _order(ULR, provider.paddle, oid, side, 2_000, price),
                      tolerate=TRADING_RISKS)

    def report_liquidity(self) -> None:
        """The operator asks how long the book's liquidity provider quoted."""
        events = self.send(OPERATOR, ReportLiquidity(session=SESSION, instrument=ULR))
        self.liquidity = next(e for e in events if isinstance(e, LiquidityReport))
        self.say(f"liquidity provider paddle {self.liquidity.paddle}: quoted for "
                 f"{_percent(self.liquidity.presence_bp)} of the trading time "
                 f"(obligation {_percent(self.liquidity.required_bp)})")

    def negotiate_passed_lots(self) -> None:
        """After the closes: bidders make private offers on passed lots; the
        seller accepts the best ones or lowers the reserve."""
        passed = [event.serial for event in self.venue.public_events()
                  if isinstance(event, LotPassed) and event.serial in self.reserves
                  and event.mechanism != "bid_ask"]
        self.say(f"{len(passed)} lots passed their reserve; negotiation opens")
        now = (self.venue.now() - self.start) / self.pace
        for number, serial in enumerate(passed):
            bidder = self.rng.choice(self.bidders)
            reserve = self.reserves[serial]
            offer = reserve * self.rng.choice((85, 95, 100)) // 100 // USD * USD
            when = now + 0.3 + number * 0.05
            self.plan(when, bidder.broker, _offer(serial, bidder.paddle, offer),
                      tolerate=NEGOTIATION_RISKS)
            if number % 3 == 0:
                self.plan(when + 1.0, SELLER_BROKER,
                          _answer(serial, bidder.paddle, "accept"),
                          tolerate=NEGOTIATION_RISKS)
            elif number % 3 == 1:
                self.plan(when + 1.5, SELLER_BROKER, _lower(serial, offer),
                          tolerate=NEGOTIATION_RISKS)

    def settle(self) -> None:
        """Escrow: the buyers of the first sales pay in, the seller delivers the
        assignment deeds, the buyers confirm, the operator releases the funds
        and a certificate is issued. Buyers of licence units pay for them and
        the operator records it, freeing their credit. One buyer never pays:
        it is declared in default and the lot goes to the runner-up at its own
        last bid."""
        self.pay_for_units()
        brokers = {bidder.paddle: bidder.broker for bidder in self.bidders}
        opened = [event for event in self.venue.operator_events()
                  if isinstance(event, SettlementOpened) and event.serial in self.reserves]
        defaulter = next((event for event in opened if event.mechanism == "english"
                          and event.how == "auction"), None)
        paying = [event for event in opened if event is not defaulter][:8]
        self.say(f"{len(opened)} settlements open; {len(paying)} buyers pay into escrow")
        for event in paying:
            number = event.settlement
            self.send(OPERATOR, RecordPayment(settlement=number, amount=event.total,
                                              reference=f"wire {number:05d}"))
            self.send(SELLER_BROKER, RecordDelivery(settlement=number,
                                                    reference=f"assignment deed {event.serial}"))
            self.send(brokers[event.buyer_paddle], ConfirmReceipt(settlement=number))
            self.send(OPERATOR, ReleaseFunds(settlement=number))
            self.settled += 1
        if defaulter is None:
            return
        self.venue.wait_until(max(self.venue.now(), defaulter.due_at + self.pace // 10))
        self.send(OPERATOR, DeclareDefault(settlement=defaulter.settlement,
                                           reason="payment not received by the due date"))
        self.defaults += 1
        offers = [event for event in self.venue.operator_events()
                  if isinstance(event, ReawardOffered) and event.serial == defaulter.serial]
        if offers:
            offer = offers[-1]
            self.send(brokers[offer.paddle], AnswerReaward(serial=offer.serial,
                                                           paddle=offer.paddle, accept=True))
            self.reawarded += 1
        self.say(f"paddle {defaulter.buyer_paddle} defaulted on {defaulter.serial}; "
                 + (f"re-awarded to paddle {offers[-1].paddle}" if offers else "no runner-up"))

    def pay_for_units(self) -> None:
        """Each buyer of units pays what it owes for them (from the operators'
        trade records); the operator records the payments."""
        owed: dict[int, int] = {}
        for event in self.venue.operator_events():
            if isinstance(event, TradeRecorded) and event.instrument == ULR:
                owed[event.buy_paddle] = owed.get(event.buy_paddle, 0) + event.price * event.qty
        for paddle, amount in owed.items():
            events = self.send(OPERATOR, RecordUnitsPayment(
                session=SESSION, instrument=ULR, paddle=paddle, amount=amount,
                reference=f"units wire {paddle}"))
            if any(isinstance(event, CreditChanged) for event in events):
                self.units_payers += 1
                self.units_paid += amount
        self.say(f"{self.units_payers} buyers of licence units paid "
                 f"${self.units_paid // USD:,}; their credit is free again")

    def report(self) -> DemoReport:
        report = DemoReport(rejected=self.rejected, settled=self.settled,
                            defaults=self.defaults, reawarded=self.reawarded,
                            units_payers=self.units_payers, units_paid=self.units_paid,
                            liquidity=self.liquidity)
        awards: dict[str, LotAwarded] = {}
        passes: dict[str, LotPassed] = {}
        for event in self.venue.public_events():
            if isinstance(event, LotAwarded):
                awards[event.serial] = event
            elif isinstance(event, LotPassed):
                passes.setdefault(event.serial, event)
            elif isinstance(event, CertificateIssued):
                report.certificates += 1
            elif isinstance(event, TradeExecuted) and event.instrument == ULR:
                report.trades += 1                 # the unit-licence book's (lot books apart)
                report.units_traded += event.qty
            elif isinstance(event, TradingHalted) and event.instrument == ULR:
                report.halts += 1
            elif isinstance(event, NoticePosted):
                report.notices += 1
            elif isinstance(event, DocumentAdded):
                report.documents += 1
            elif isinstance(event, PriceRangePublished):
                report.valued += 1
        for event in self.venue.operator_events():
            if isinstance(event, NdaSigned):
                report.ndas += 1
            elif isinstance(event, DocumentReleased):
                report.documents_opened += 1
        serials = [lot.serial for lot in self.catalogue] + ["RT-2017-001"]
        mechanisms = dict(zip(serials, PLAN + ["reverse"]))
        for serial in serials:
            award = awards.get(serial)
            row: dict[str, Any] = {"serial": serial, "mechanism": mechanisms[serial]}
            if award is not None:
                row.update(outcome="sold in negotiation" if award.how == "negotiated" and
                           serial in passes else f"sold ({award.how})",
                           paddle=award.paddle, hammer=award.hammer, premium=award.premium,
                           total=award.total, net=award.net, display_total=award.display_total,
                           display_currency=award.display_currency)
            elif serial in passes:
                row.update(outcome="passed")
            else:
                row.update(outcome="unsold")
            report.lots.append(row)
        return report


def _sign_nda(serial: str, party: int) -> Callable[[], Any]:
    return lambda: SignNda(serial=serial, party=party, nda="OT-NDA-2017-03")


def _open_document(serial: str, party: int, name: str) -> Callable[[], Any]:
    return lambda: OpenDocument(serial=serial, party=party, name=name)


def _bid(serial: str, paddle: int, amount: int) -> Callable[[], Any]:
    return lambda: PlaceBid(serial=serial, paddle=paddle, amount=amount)


def _buy_at_ask(serial: str, paddle: int) -> Callable[[], Any]:
    return lambda: BuyAtAsk(serial=serial, paddle=paddle)


def _offer(serial: str, paddle: int, amount: int) -> Callable[[], Any]:
    return lambda: MakeOffer(serial=serial, paddle=paddle, amount=amount)


def _answer(serial: str, paddle: int, action: str) -> Callable[[], Any]:
    return lambda: AnswerOffer(serial=serial, paddle=paddle, action=action)


def _lower(serial: str, reserve: int) -> Callable[[], Any]:
    return lambda: LowerReserve(serial=serial, reserve=reserve)


def _order(instrument: str, paddle: int, order: int, side: str, qty: int, price: int,
           tif: str = "gtc") -> Callable[[], Any]:
    return lambda: PlaceOrder(session=SESSION, instrument=instrument, paddle=paddle, order=order,
                              side=side, qty=qty, price=price, tif=tif)


def _percent(bp: int) -> str:
    return f"{bp // 100}.{bp % 100:02d} %"


def _cancel(instrument: str, paddle: int, order: int) -> Callable[[], Any]:
    return lambda: CancelOrder(session=SESSION, instrument=instrument, paddle=paddle, order=order)


def _modify(instrument: str, paddle: int, order: int, price: int, qty: int) -> Callable[[], Any]:
    return lambda: ModifyOrder(session=SESSION, instrument=instrument, paddle=paddle, order=order,
                               price=price, qty=qty)


# ---------------------------------------------------------------------- venues

class InProcessVenue(Venue):
    """The engine in this process; time moves only when the demo waits."""

    ROLES = {OPERATOR: "operator"}

    def __init__(self, start: int = 1_509_494_400 * SECOND) -> None:
        from exchange.driver import Driver
        self.driver = Driver(start_ts=start, keep_log=True)
        self._public: list[Event] = []
        self._operators: list[Event] = []

    def now(self) -> int:
        return self.driver.ts

    def wait_until(self, ts: int) -> None:
        if ts > self.driver.ts:
            self._collect(self.driver.tick(ts))

    def send(self, user: str, cmd: Any) -> list[Event]:
        role = self.ROLES.get(user, "broker")
        events = self.driver.send(cmd, actor=user, role=role)
        self._collect(events)
        return [event for event in events
                if not event.to or user in event.to or (role == "operator" and "@operators" in event.to)]

    def _collect(self, events: list[Event]) -> None:
        self._public.extend(event for event in events if not event.to)
        self._operators.extend(event for event in events if "@operators" in event.to)

    def public_events(self) -> list[Event]:
        return list(self._public)

    def operator_events(self) -> list[Event]:
        return list(self._operators)


DEMO_USERS = ((OPERATOR, "operator"), (SELLER_BROKER, "broker"), ("broker-us", "broker"),
              ("broker-cn", "broker"), ("broker-eu", "broker"), ("demo-viewer", "viewer"))


class GatewayVenue(Venue):
    """The real exchange: a ``lotex serve`` process on ``data_dir``, reached
    through the gateway with each demo user's own CURVE key, and the public
    feed read as a subscriber would."""

    lead = 5  # demo seconds to create the catalogue before the first lot opens

    def __init__(self, data_dir: str, *, timeout: float = 20.0) -> None:
        import os
        import subprocess
        import sys
        import threading
        import time
        from pathlib import Path

        from gateway.keys import initialise

        self.data_dir = Path(data_dir)
        refusal = demo_dir_refusal(self.data_dir)      # before anything is touched
        if refusal:
            raise DemoRefused(refusal)
        store, _ = initialise(self.data_dir)
        known = store.users()
        for user, role in DEMO_USERS:
            if user not in known:
                store.add_user(user, role)
        (self.data_dir / "endpoints.json").unlink(missing_ok=True)   # a dead server's
        self.clients: dict[str, Any] = {}
        self.feed: Any = None
        self.process: Any = None
        log = open(self.data_dir / "server.log", "ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--data", str(self.data_dir),
                 "--random-ports", "--log-json"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=dict(os.environ),
                # (the parent-death signal follows the thread that forks: main only)
                preexec_fn=_die_with_parent if sys.platform.startswith("linux")
                and threading.current_thread() is threading.main_thread() else None)
        finally:
            log.close()
        try:                         # whatever fails or interrupts from here stops the server
            endpoints = self.data_dir / "endpoints.json"
            deadline = time.monotonic() + timeout
            while not endpoints.exists():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise DemoFailed(f"the server did not start; see "
                                     f"{self.data_dir / 'server.log'}")
                time.sleep(0.05)
            from gateway.client import Client, FeedClient
            for user, role in DEMO_USERS:
                if role != "viewer":
                    self.clients[user] = Client.from_data_dir(self.data_dir, user,
                                                              timeout=timeout)
            self.feed = FeedClient.from_data_dir(self.data_dir, "demo-viewer", timeout=timeout)
            self.feed.start()
        except BaseException:
            self.close()
            raise
        self._public: list[Event] = []
        self._operators: list[Event] = []

    def now(self) -> int:
        import time
        return time.time_ns()

    def wait_until(self, ts: int) -> None:
        import time
        while True:
            left = ts - time.time_ns()
            self._drain(max(0.0, min(left / 1e9, 0.05)))
            if left <= 0:
                return

    def _drain(self, wait: float) -> None:
        for market in self.feed.updates(timeout=wait):
            self._public.extend(market.events)
            wait = 0.0
        self._take_notices()

    def _take_notices(self) -> None:
        """Read the operator's private notices (and keep every client's session
        alive), so that no client falls behind its high-water mark."""
        for user, client in self.clients.items():
            notices = client.notices()
            if user == OPERATOR:
                for notice in notices:
                    self._operators.extend(notice.events)

    def send(self, user: str, cmd: Any) -> list[Event]:
        result = self.clients[user].request(cmd)
        if user == OPERATOR:
            self._operators.extend(event for event in result.events if "@operators" in event.to)
        if result.accepted:
            return list(result.events)
        rejected = [event for event in result.events if isinstance(event, CommandRejected)]
        return rejected or [CommandRejected(to=(user,), ref=result.seq, code=result.code,
                                            text=result.text)]

    def public_events(self) -> list[Event]:
        self._drain(0.3)
        return list(self._public)

    def operator_events(self) -> list[Event]:
        self.clients[OPERATOR].poll(0.3)
        self._take_notices()
        return list(self._operators)

    def close(self) -> None:
        """Close the clients and the feed, and stop the server (SIGTERM: a
        clean stop); each step runs even if one before it fails."""
        import signal
        try:
            for client in getattr(self, "clients", {}).values():
                client.close()
            if getattr(self, "feed", None) is not None:
                self.feed.close()
        finally:
            if getattr(self, "process", None) is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=15)
                except Exception:
                    self.process.kill()
                    self.process.wait()
