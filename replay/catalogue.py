"""One pass over the journal: what every lot and instrument was and became.

`Catalogue.fold` takes the journal's entries in order and keeps, per lot,
its public catalogue entry (terms and patents), status, outcome and sale,
and per instrument its phase and, with ``keep_series`` (comparables), its
quotes and trades over time, a tuple each; with an operator viewer also the
parties behind paddles and the private parts (reserve, parties of a sale).
Results, comparables, history and charts read it. Each fold is O(events of
the entry); the whole pass O(journal), in memory O(lots + instruments),
plus O(quotes + trades) with ``keep_series``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from exchange.codec import Entry
from replay.access import PUBLIC, Viewer


@dataclass
class LotInfo:
    """A lot as the journal tells it (public fields unless said otherwise)."""

    serial: str
    session: str
    title: str = ""
    mechanism: str = ""
    currency: str = ""
    terms: Any = None              # exchange.commands.LotTerms, from LotScheduled
    status: str = "draft"          # last known: scheduled, open, sold, passed, ...
    bids: int = 0                  # public bid count of the current round
    price: int = 0                 # last public price: standing, clock, hammer
    leader: int = 0                # leading paddle (English, public)
    scheduled_ts: int = 0
    opened_ts: int = 0
    closed_ts: int = 0
    rounds: int = 0
    award: Any = None              # LotAwarded
    award_ts: int = 0
    passes: list[tuple[int, Any]] = field(default_factory=list)   # (ts, LotPassed)
    withdrawn: Any = None          # LotWithdrawn
    instrument: str = ""           # the book of a bid_ask lot
    # operator only
    reserve: int | None = None
    seller: int = 0
    sale: Any = None               # LotSold

    @property
    def patents(self) -> tuple[Any, ...]:
        return tuple(self.terms.patents) if self.terms is not None else ()

    @property
    def outcome(self) -> str:
        """"sold", "sold in negotiation", "passed", "withdrawn" or the open status."""
        if self.award is not None:
            return "sold in negotiation" if self.award.how == "negotiated" else "sold"
        if self.withdrawn is not None:
            return "withdrawn"
        return self.status


@dataclass
class InstrumentInfo:
    """A continuous book: its quotes and trades in time order (kept only by a
    `Catalogue` with ``keep_series``; else empty)."""

    id: str
    session: str
    kind: str
    lot: str
    currency: str
    phase: str = ""
    quotes: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    # (ts, bid, bid_qty, ask, ask_qty, seq)
    trades: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    # (ts, price, qty, buy_paddle, sell_paddle, seq)


class Catalogue:
    """Everything `fold` has seen, as seen by ``viewer``; ``keep_series``: keep
    every quote change and trade of every book (`InstrumentInfo.quotes`,
    ``trades``), which only comparables read."""

    def __init__(self, viewer: Viewer = PUBLIC, *, keep_series: bool = False) -> None:
        self.viewer = viewer
        self.keep_series = keep_series
        self.rates: dict[tuple[str, str], tuple[int, int]] = {}
        self.sessions: dict[str, Any] = {}
        self.lots: dict[str, LotInfo] = {}
        self.instruments: dict[str, InstrumentInfo] = {}
        self.parties: dict[int, Any] = {}                 # operator: PartyRegistered
        self.paddles: dict[tuple[str, int], int] = {}     # operator: (session, paddle) -> party
        self.entries = 0
        self.events = 0
        self.last_seq = 0
        self.last_ts = 0

    def fold_all(self, entries: Iterable[tuple[Any, Entry]]) -> "Catalogue":
        for _, entry in entries:
            self.fold(entry)
        return self

    def lot(self, serial: str, session: str = "") -> LotInfo:
        info = self.lots.get(serial)
        if info is None:
            info = self.lots[serial] = LotInfo(serial=serial, session=session)
        return info

    def fold(self, entry: Entry) -> None:
        """Take in one journal entry. O(its events)."""
        env = entry.env
        ts = env.ts
        self.entries += 1
        self.last_seq = env.seq
        self.last_ts = ts
        sees = self.viewer.sees
        for event in entry.events:
            self.events += 1
            if not sees(event):
                continue
            handler = _FOLDS.get(type(event).__name__)
            if handler is not None:
                handler(self, event, ts, env.seq)

    # -- identities (operator view only; empty for the public)

    def party_of(self, session: str, paddle: int) -> Any:
        """The PartyRegistered behind a paddle, or None (always None for the public)."""
        party = self.paddles.get((session, paddle))
        return self.parties.get(party) if party is not None else None

    def who(self, session: str, paddle: int) -> str:
        """"Name (party 9, broker b2)" for an operator; "" for the public."""
        party = self.party_of(session, paddle)
        if party is None:
            return ""
        return f"{party.name} (party {party.party}, broker {party.broker})"

    def instrument_of_lot(self, serial: str) -> InstrumentInfo | None:
        info = self.lots.get(serial)
        if info is not None and info.instrument:
            return self.instruments.get(info.instrument)
        return None


def _session_created(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.sessions[ev.session] = ev


def _rate(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.rates[(ev.base, ev.quote)] = (ev.num, ev.den)


def _party(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.parties[ev.party] = ev


def _paddle(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.paddles[(ev.session, ev.paddle)] = ev.party


def _lot_created(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    info = cat.lot(ev.serial, ev.session)
    info.reserve = ev.reserve
    info.seller = ev.seller
    if info.terms is None:
        _take_terms(info, ev.terms)


def _take_terms(info: LotInfo, terms: Any) -> None:
    info.terms = terms
    info.title = terms.title
    info.mechanism = terms.mechanism
    info.currency = terms.currency


def _lot_scheduled(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    info = cat.lot(ev.serial, ev.session)
    _take_terms(info, ev.terms)
    info.status = "scheduled"
    if not info.scheduled_ts:
        info.scheduled_ts = ts


def _lot_opened(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    info = cat.lot(ev.serial, ev.session)
    info.status = "open"
    info.opened_ts = ts
    info.rounds += 1
    info.bids = 0
    info.price = ev.price
    info.leader = 0


def _bid_accepted(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    info = cat.lot(ev.serial, ev.session)
    info.bids = ev.bids
    info.price = ev.price
    info.leader = ev.leader


def _bid_voided(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    """An English lot's standing bid voided (public): its new price and leader,
    the starting bid again when none is left; a sealed one (private) changes
    nothing public (its count follows as `SealedBidCounted`)."""
    if ev.to:
        return
    info = cat.lot(ev.serial, ev.session)
    info.leader = ev.leader
    info.price = ev.price if ev.leader else (info.terms.starting_bid if info.terms else 0)


def _sealed_count(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.lot(ev.serial, ev.session).bids = ev.bids


def _dutch(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.lot(ev.serial, ev.session).price = ev.price


def _lot_closed(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    info = cat.lot(ev.serial, ev.session)
    if ev.outcome == "choosing":
        info.status = "choosing"
    info.closed_ts = ts
    info.bids = ev.bids


def _awarded(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    info = cat.lot(ev.serial, ev.session)
    info.status = "sold"
    info.award = ev
    info.award_ts = ts
    info.price = ev.hammer


def _sold(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.lot(ev.serial, ev.session).sale = ev


def _passed(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    info = cat.lot(ev.serial, ev.session)
    info.status = "passed"
    info.passes.append((ts, ev))
    if ev.reason == "sale_cancelled":      # the award stands no more (a default, a refund)
        info.award = info.sale = None


def _withdrawn(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    info = cat.lot(ev.serial, ev.session)
    info.status = "withdrawn"
    info.withdrawn = ev


def _relisted(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.lot(ev.serial, ev.session).status = "relisted"


def _settled(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.lot(ev.serial, ev.session).status = "settled"


def _reserve_lowered(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.lot(ev.serial, ev.session).reserve = ev.reserve


def _instrument(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    cat.instruments[ev.instrument] = InstrumentInfo(id=ev.instrument, session=ev.session,
                                                    kind=ev.kind, lot=ev.lot,
                                                    currency=ev.currency, phase=ev.phase)
    if ev.lot:
        cat.lot(ev.lot, ev.session).instrument = ev.instrument


def _phase(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    inst = cat.instruments.get(ev.instrument)
    if inst is not None:
        inst.phase = ev.phase


def _quote(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    inst = cat.instruments.get(ev.instrument) if cat.keep_series else None
    if inst is not None:
        inst.quotes.append((ts, ev.bid, ev.bid_qty, ev.ask, ev.ask_qty, seq))


def _trade(cat: Catalogue, ev: Any, ts: int, seq: int) -> None:
    inst = cat.instruments.get(ev.instrument) if cat.keep_series else None
    if inst is not None:
        inst.trades.append((ts, ev.price, ev.qty, ev.buy_paddle, ev.sell_paddle, seq))


_FOLDS = {
    "SessionCreated": _session_created,
    "DisplayRateSet": _rate,
    "PartyRegistered": _party,
    "PaddleIssued": _paddle,
    "LotCreated": _lot_created,
    "LotScheduled": _lot_scheduled,
    "LotOpened": _lot_opened,
    "BidAccepted": _bid_accepted,
    "BidVoided": _bid_voided,
    "SealedBidCounted": _sealed_count,
    "DutchPriceChanged": _dutch,
    "LotClosed": _lot_closed,
    "LotAwarded": _awarded,
    "LotSold": _sold,
    "LotPassed": _passed,
    "LotWithdrawn": _withdrawn,
    "LotRelisted": _relisted,
    "LotSettled": _settled,
    "ReserveLowered": _reserve_lowered,
    "InstrumentCreated": _instrument,
    "PhaseChanged": _phase,
    "QuoteChanged": _quote,
    "TradeExecuted": _trade,
}
