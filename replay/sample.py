"""A recorded demo session: a deterministic mixed session written into a real journal.

`record_sample(DATA)` drives one OTBA-style session through the real engine
(`replay.journaling.RecordingDriver`) into DATA/journal/ (with a snapshot
half-way in DATA/snapshots/) and returns what it did. The replay tests'
golden values are computed by hand from the figures below; the command
``lotex replay sample DATA`` writes it for anyone who wants to try the
replay commands.

Session S1, USD, buyer's premium 10 %, seller commission 15 %, display rate
1 USD = 6.6402 CNY (OTBA's $30,000 = ¥199,206). Seller Helios (paddle 101);
bidders Acme 102, Bohai 103, Cobalt 104, Delta 105. T0 = 2026-03-02 00:00 UTC;
every lot opens at T0+1h.

======== ============= ======================================================
lot      mechanism     what happens
======== ============= ======================================================
L-ENG    English, soft  starting $30,000, OTBA increment $30,000, reserve
         close          $60,000. 102 max 45k (price 30k), 103 60k (price 60k,
                        reserve met), 102 120k (price 90k), 105 100k refused
                        (least bid 120k), 103 120k at close-5m (ties; 102
                        leads at 120k; close +10m), 104 150k at +3h05
                        (price 150k, close +10m) -> sold to 104 at $150,000:
                        premium 15,000, total 165,000, net 127,500.
L-SF     sealed first   102 25k then 30k, 103 31k, 105 28k -> 103 at $31,000.
L-SS     sealed second  reserve $20,000; 104 50k, 105 42k, 103 15k withdrawn
                        -> 104 pays $42,000.
L-DUT    Dutch          100k down 5k every 10 min; 105 accepts at 85k.
L-PASS   English        reserve $80,000; 103 max 50k -> passed; offer 60k,
                        counter 70k, accepted -> sold in negotiation at $70,000.
L-NOBID  English        no bids -> passed.
L-BA     bid-ask lot    on book PAT-BA: ask 200k; bids 150k, 180k; 104 buys at
                        200k -> sold on the book at $200,000.
ULR-1    units          1,000 units issued to 101; asks 300@$5.00, 200@$5.20;
                        bids 100@$4.80, 150@$5.00 (trades 150@5.00),
                        250@$5.20 (trades 150@5.00, 100@5.20), 50@$4.90;
                        102 cancels -> bid 4.90x50, ask 5.20x100.
======== ============= ======================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from exchange.commands import (AcceptCounter, AnswerOffer, CancelOrder, CreateInstrument,
                               CreateLot, CreateSession, IssuePaddle, IssueUnits, LotTerms,
                               MakeOffer, Patent, PlaceBid, PlaceOrder, RegisterParty,
                               ReviewCredit, ScheduleLot, SetDisplayRate, VetLot, WithdrawBid)
from replay.journaling import open_recording

SECOND = 10**9
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_772_409_600 * SECOND          # 2026-03-02T00:00:00Z
OPEN = T0 + HOUR                     # every lot opens here
SESSION = "S1"
CREDIT = 500_000_000                 # $5,000,000 per party

PARTIES = (  # name, broker, country
    ("Helios Imaging Ltd", "b1", "US"),      # the seller: paddle 101
    ("Acme Devices Inc", "b1", "US"),        # 102
    ("Bohai Technology Co", "b2", "CN"),     # 103
    ("Cobalt Licensing LLC", "b2", "US"),    # 104
    ("Delta Semiconductor KK", "b3", "JP"),  # 105
)
BROKER_OF = {101: "b1", 102: "b1", 103: "b2", 104: "b2", 105: "b3"}


def _patent(number: str, family: str, field_name: str, jurisdiction: str = "US",
            status: str = "granted") -> Patent:
    return Patent(number=number, title=f"{field_name.capitalize()} patent {number}",
                  family_id=family, jurisdiction=jurisdiction, status=status, field=field_name,
                  priority_date=T0 - 3_000 * DAY, expiry_date=T0 + 4_000 * DAY)


PATENTS = {
    "L-ENG": (_patent("US-9000001", "F-100", "printing"),
              _patent("CN-1000001", "F-100", "printing", "CN", "pending")),
    "L-SF": (_patent("US-9000002", "F-200", "networking"),),
    "L-SS": (_patent("US-9000003", "F-100", "printing"),),
    "L-DUT": (_patent("EP-3000001", "F-300", "imaging", "EP"),),
    "L-PASS": (_patent("US-9000004", "F-400", "printing", "US", "pending"),),
    "L-NOBID": (_patent("JP-7000001", "F-500", "gaming", "JP"),),
    "L-BA": (_patent("US-9000005", "F-100", "printing"),),
}

COMMON = dict(currency="USD", increments="otba", buyer_premium_bp=1_000,
              seller_commission_bp=1_500, display_currency="CNY", opens_at=OPEN)

LOTS: dict[str, tuple[LotTerms, int]] = {  # serial -> (terms, secret reserve)
    "L-ENG": (LotTerms(title="Inkjet printing family", mechanism="english",
                       starting_bid=3_000_000, closes_at=OPEN + 2 * HOUR,
                       hard_end=OPEN + 3 * HOUR, soft_window=10 * MINUTE,
                       soft_extend=10 * MINUTE, patents=PATENTS["L-ENG"], **COMMON), 6_000_000),
    "L-SF": (LotTerms(title="Packet switching", mechanism="sealed_first", starting_bid=1_000_000,
                      closes_at=OPEN + HOUR, patents=PATENTS["L-SF"], **COMMON), 0),
    "L-SS": (LotTerms(title="Print head drive", mechanism="sealed_second",
                      starting_bid=1_000_000, closes_at=OPEN + HOUR, patents=PATENTS["L-SS"],
                      **COMMON), 2_000_000),
    "L-DUT": (LotTerms(title="Scanner optics", mechanism="dutch", starting_bid=5_000_000,
                       dutch_start=10_000_000, dutch_step=500_000, dutch_interval=10 * MINUTE,
                       closes_at=OPEN + 2 * HOUR, patents=PATENTS["L-DUT"], **COMMON), 0),
    "L-PASS": (LotTerms(title="Media transport", mechanism="english", starting_bid=2_000_000,
                        closes_at=OPEN + HOUR, negotiation_window=2 * DAY,
                        patents=PATENTS["L-PASS"], **COMMON), 8_000_000),
    "L-NOBID": (LotTerms(title="Game controller", mechanism="english", starting_bid=1_000_000,
                         closes_at=OPEN + HOUR, patents=PATENTS["L-NOBID"], **COMMON), 0),
    "L-BA": (LotTerms(title="Ink supply (bid-ask)", mechanism="bid_ask", closes_at=OPEN + DAY,
                      patents=PATENTS["L-BA"], **COMMON), 0),
}


@dataclass
class SampleSession:
    """What `record_sample` wrote: where, the parties and the sequence marks."""

    data_dir: str
    parties: dict[str, int] = field(default_factory=dict)   # name -> party id
    paddles: dict[str, int] = field(default_factory=dict)   # name -> paddle
    marks: dict[str, int] = field(default_factory=dict)     # moment -> last seq before it
    last_seq: int = 0
    events: int = 0
    snapshot_seq: int = 0


def record_sample(data_dir: str | os.PathLike) -> SampleSession:
    """Write the demo session into ``data_dir`` (which must hold no journal yet)."""
    data_dir = os.fspath(data_dir)
    d = open_recording(data_dir, start_ts=T0)
    out = SampleSession(data_dir=data_dir)
    try:
        _setup(d, out)
        _trading(d, out, data_dir)
        d.commit()
        out.last_seq = d.seq
        out.events = d.events_recorded
    finally:
        d.journal.close()
    return out


def _setup(d, out: SampleSession) -> None:
    d.ok(CreateSession(session=SESSION, name="Spring patent auction", currency="USD",
                       starts_at=T0, ends_at=T0 + 3 * DAY), ts=T0)
    d.ok(SetDisplayRate(base="USD", quote="CNY", num=66_402, den=10_000), ts=T0)
    for name, broker, country in PARTIES:
        party = d.ok(RegisterParty(name=name, country=country), actor=broker, role="broker")[0].party
        d.ok(ReviewCredit(party=party, approved=True, credit_limit=CREDIT, currency="USD",
                          agreement_version="BRA-2026", score=80))
        paddle = d.ok(IssuePaddle(session=SESSION, party=party))[0].paddle
        out.parties[name] = party
        out.paddles[name] = paddle
    seller = out.parties[PARTIES[0][0]]
    for serial, (terms, reserve) in LOTS.items():
        d.ok(CreateLot(serial=serial, session=SESSION, seller=seller, terms=terms, reserve=reserve),
             actor="b1", role="broker")
        d.ok(VetLot(serial=serial, score=75, approved=True, note="auctionable"))
        d.ok(ScheduleLot(serial=serial))
    d.ok(CreateInstrument(session=SESSION, instrument="ULR-1", kind="units"))
    d.ok(IssueUnits(session=SESSION, instrument="ULR-1", paddle=101, qty=1_000))
    out.marks["setup"] = d.seq


def _bid(d, serial: str, paddle: int, amount: int, at: int) -> None:
    d.ok(PlaceBid(serial=serial, paddle=paddle, amount=amount), actor=BROKER_OF[paddle],
         role="broker", ts=at)


def _order(d, instrument: str, paddle: int, order: int, side: str, qty: int, price: int,
           at: int) -> None:
    d.ok(PlaceOrder(session=SESSION, instrument=instrument, paddle=paddle, order=order, side=side,
                    qty=qty, price=price), actor=BROKER_OF[paddle], role="broker", ts=at)


def _trading(d, out: SampleSession, data_dir: str) -> None:
    d.tick(OPEN)                                               # every lot opens
    d.ok(CreateInstrument(session=SESSION, instrument="PAT-BA", kind="patent", lot="L-BA"))
    out.marks["open"] = d.seq
    _bid(d, "L-ENG", 102, 4_500_000, OPEN + 5 * MINUTE)
    _bid(d, "L-SF", 102, 2_500_000, OPEN + 6 * MINUTE)
    _bid(d, "L-SF", 103, 3_100_000, OPEN + 7 * MINUTE)
    _bid(d, "L-SF", 105, 2_800_000, OPEN + 8 * MINUTE)
    _bid(d, "L-SS", 104, 5_000_000, OPEN + 9 * MINUTE)
    _bid(d, "L-ENG", 103, 6_000_000, OPEN + 10 * MINUTE)      # the Dutch clock steps first
    _bid(d, "L-SS", 105, 4_200_000, OPEN + 11 * MINUTE)
    _bid(d, "L-SS", 103, 1_500_000, OPEN + 12 * MINUTE)
    d.ok(WithdrawBid(serial="L-SS", paddle=103), actor="b2", role="broker", ts=OPEN + 13 * MINUTE)
    _bid(d, "L-PASS", 103, 5_000_000, OPEN + 14 * MINUTE)
    _bid(d, "L-SF", 102, 3_000_000, OPEN + 15 * MINUTE)       # replaces 102's sealed bid
    d.tick(OPEN + 20 * MINUTE)                                 # Dutch 9,000,000
    _bid(d, "L-ENG", 102, 12_000_000, OPEN + 20 * MINUTE)
    out.marks["english_at_90k"] = d.seq
    d.refused(PlaceBid(serial="L-ENG", paddle=105, amount=10_000_000), actor="b3", role="broker",
              ts=OPEN + 25 * MINUTE)                           # least bid is 120,000.00
    d.tick(OPEN + 30 * MINUTE)                                 # Dutch 8,500,000
    _bid(d, "L-DUT", 105, 9_000_000, OPEN + 35 * MINUTE)      # takes it at 8,500,000
    _order(d, "ULR-1", 101, 1, "sell", 300, 500, OPEN + 40 * MINUTE)
    _order(d, "ULR-1", 101, 2, "sell", 200, 520, OPEN + 41 * MINUTE)
    _order(d, "ULR-1", 102, 1, "buy", 100, 480, OPEN + 42 * MINUTE)
    _order(d, "ULR-1", 103, 1, "buy", 150, 500, OPEN + 43 * MINUTE)
    _order(d, "ULR-1", 104, 1, "buy", 250, 520, OPEN + 44 * MINUTE)
    _order(d, "ULR-1", 105, 1, "buy", 50, 490, OPEN + 45 * MINUTE)
    _order(d, "PAT-BA", 101, 1, "sell", 1, 20_000_000, OPEN + 46 * MINUTE)
    _order(d, "PAT-BA", 102, 1, "buy", 1, 15_000_000, OPEN + 47 * MINUTE)
    _order(d, "PAT-BA", 103, 1, "buy", 1, 18_000_000, OPEN + 48 * MINUTE)
    d.ok(CancelOrder(session=SESSION, instrument="ULR-1", paddle=102, order=1), actor="b1",
         role="broker", ts=OPEN + 50 * MINUTE)
    _order(d, "PAT-BA", 104, 1, "buy", 1, 20_000_000, OPEN + 55 * MINUTE)
    out.marks["before_first_closes"] = d.seq
    d.tick(OPEN + HOUR)                                        # L-SF, L-SS, L-PASS, L-NOBID close
    out.marks["first_closes"] = d.seq
    d.snapshot(data_dir)
    out.snapshot_seq = d.seq
    d.ok(MakeOffer(serial="L-PASS", paddle=103, amount=6_000_000), actor="b2", role="broker",
         ts=OPEN + HOUR + 5 * MINUTE)
    d.ok(AnswerOffer(serial="L-PASS", paddle=103, action="counter", amount=7_000_000),
         actor="b1", role="broker", ts=OPEN + HOUR + 10 * MINUTE)
    d.ok(AcceptCounter(serial="L-PASS", paddle=103), actor="b2", role="broker",
         ts=OPEN + HOUR + 15 * MINUTE)
    _bid(d, "L-ENG", 103, 12_000_000, OPEN + 2 * HOUR - 5 * MINUTE)   # extends to +2h10
    _bid(d, "L-ENG", 104, 15_000_000, OPEN + 2 * HOUR + 5 * MINUTE)   # extends to +2h20
    out.marks["english_at_150k"] = d.seq
    d.tick(OPEN + 2 * HOUR + 20 * MINUTE)                      # L-ENG closes
    d.tick(OPEN + DAY)                                         # L-BA's close (sold already)
    out.marks["end"] = d.seq
