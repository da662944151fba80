"""The watch board: a session's public state folded from market data, and its
`rich` rendering (`lotex watch`).

`Board.apply(events)` folds public events in feed order (a snapshot's first,
then every Market message above it); `Board.render(now)` draws the lots
(status, current price, leading paddle, reserve met, time left) and the
books (phase, best bid and ask, last trade) and the latest saleroom
notices. Paddle numbers only: the feed carries nothing else.

A board of the whole market (``session`` "") shows the open sessions: it
drops a session's lots and books at its `SessionClosed` and ignores what is
published about it later (settlement), as a whole-market snapshot holds the
open sessions only; a board of one session keeps it to the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text

NS_PER_S = 10**9


def money(amount: int, currency: str = "") -> str:
    """Format minor units with two decimals: 3000000 -> '30,000.00 USD'."""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    text = f"{sign}{amount // 100:,}.{amount % 100:02d}"
    return f"{text} {currency}".strip()


def time_left(until: int, now: int) -> str:
    if not until:
        return ""
    left = (until - now) // NS_PER_S
    if left <= 0:
        return "0s"
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


@dataclass
class LotRow:
    serial: str
    session: str
    title: str = ""
    mechanism: str = ""
    currency: str = ""
    status: str = "scheduled"
    price: int = 0
    leader: int = 0
    reserve_met: bool | None = None
    bids: int = 0
    opens_at: int = 0
    closes_at: int = 0
    display_currency: str = ""
    display_price: int = 0
    result: str = ""
    starting_price: int = 0
    # data room: document name -> (version, bytes, SHA-256)
    documents: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    price_range: tuple[int, int] | None = None                # a pricing panel's (low, high)
    nda: str = ""                                             # the NDA version its room requires


@dataclass
class BookRow:
    instrument: str
    session: str
    kind: str = ""
    currency: str = ""
    phase: str = ""
    bid: int = 0
    bid_qty: int = 0
    ask: int = 0
    ask_qty: int = 0
    last: int = 0
    last_qty: int = 0
    trades: int = 0
    halt_reason: str = ""


NOTICES_SHOWN = 5
"""Saleroom notices the board shows, the latest last (it keeps as many of
each session's, so that a session's closing leaves the others' shown)."""


@dataclass
class Board:
    """Public state of the market (or one session) from the feed."""

    session: str = ""
    lot: str = ""                                             # a lot shown in detail
    sessions: dict[str, str] = field(default_factory=dict)   # id -> name
    lots: dict[str, LotRow] = field(default_factory=dict)
    books: dict[str, BookRow] = field(default_factory=dict)
    notices: list[tuple[str, str, str]] = field(default_factory=list)  # (session, about, text)
    seq: int = 0
    closed: dict[str, None] = field(default_factory=dict)   # sessions dropped (whole market)

    def apply(self, events: Iterable[Any], seq: int = 0) -> None:
        """Fold public events. O(events)."""
        if seq:
            self.seq = seq
        for event in events:
            session = getattr(event, "session", "")
            if self.session and session and session != self.session:
                continue
            if session in self.closed:
                continue
            handler = getattr(self, "_on_" + type(event).__name__, None)
            if handler is not None:
                handler(event)

    # -- sessions and lots ----------------------------------------------------------

    def _on_SessionCreated(self, e: Any) -> None:
        self.sessions[e.session] = e.name

    def _on_SessionClosed(self, e: Any) -> None:
        if self.session:                          # the one session watched: kept to the end
            return
        gone = e.session
        self.closed[gone] = None
        self.sessions.pop(gone, None)
        self.lots = {k: row for k, row in self.lots.items() if row.session != gone}
        self.notices = [n for n in self.notices if n[0] != gone]
        self.books = {k: row for k, row in self.books.items() if row.session != gone}

    def _lot(self, e: Any) -> LotRow:
        row = self.lots.get(e.serial)
        if row is None:
            row = self.lots[e.serial] = LotRow(serial=e.serial, session=e.session)
        return row

    def _on_LotScheduled(self, e: Any) -> None:
        row = self._lot(e)
        t = e.terms
        row.title, row.mechanism, row.currency = t.title, t.mechanism, t.currency
        row.opens_at, row.closes_at = t.opens_at, t.closes_at
        row.display_currency = t.display_currency
        row.price = row.starting_price = (t.dutch_start if t.mechanism == "dutch"
                                          else t.starting_bid)
        row.status, row.leader, row.reserve_met, row.bids, row.result = "scheduled", 0, None, 0, ""

    def _on_LotOpened(self, e: Any) -> None:
        row = self._lot(e)
        row.status, row.price, row.closes_at = "open", e.price, e.closes_at
        row.mechanism = e.mechanism

    def _on_BidAccepted(self, e: Any) -> None:
        row = self._lot(e)
        row.price, row.leader, row.reserve_met = e.price, e.leader, e.reserve_met
        row.bids, row.closes_at = e.bids, e.closes_at
        row.display_currency, row.display_price = e.display_currency, e.display_price

    def _on_BidVoided(self, e: Any) -> None:
        if e.to:                                  # a sealed bid: only its owner hears
            return
        row = self._lot(e)
        row.leader = e.leader
        row.price = e.price if e.leader else row.starting_price
        row.reserve_met = e.reserve_met if e.leader else None
        row.display_price = 0                     # in the lot's own currency until the next bid

    def _on_DutchPriceChanged(self, e: Any) -> None:
        row = self._lot(e)
        row.price = e.price
        row.display_currency, row.display_price = e.display_currency, e.display_price

    def _on_SealedBidCounted(self, e: Any) -> None:
        self._lot(e).bids = e.bids

    def _on_LotExtended(self, e: Any) -> None:
        self._lot(e).closes_at = e.closes_at

    def _on_LotClosed(self, e: Any) -> None:
        row = self._lot(e)
        row.status, row.bids = e.outcome if e.outcome == "choosing" else "closed", e.bids

    def _on_LotAwarded(self, e: Any) -> None:
        row = self._lot(e)
        row.status, row.leader, row.price = "sold", e.paddle, e.hammer
        row.display_currency, row.display_price = e.display_currency, e.display_hammer
        row.result = f"sold to {e.paddle} ({e.how})"

    def _on_LotPassed(self, e: Any) -> None:
        row = self._lot(e)
        row.status, row.result = "passed", e.reason.replace("_", " ")
        if e.reason == "sale_cancelled":          # the award stands no more
            row.leader, row.display_price = 0, 0

    def _on_LotSettled(self, e: Any) -> None:
        self._lot(e).status = "settled"

    def _on_LotWithdrawn(self, e: Any) -> None:
        row = self._lot(e)
        row.status, row.result = "withdrawn", e.reason

    # -- books ------------------------------------------------------------------------

    def _book(self, e: Any) -> BookRow:
        row = self.books.get(e.instrument)
        if row is None:
            row = self.books[e.instrument] = BookRow(instrument=e.instrument, session=e.session)
        return row

    def _on_InstrumentCreated(self, e: Any) -> None:
        row = self._book(e)
        row.kind, row.currency, row.phase = e.kind, e.currency, e.phase

    def _on_PhaseChanged(self, e: Any) -> None:
        self._book(e).phase = e.phase

    def _on_TradingHalted(self, e: Any) -> None:
        self._book(e).halt_reason = e.reason

    def _on_DocumentAdded(self, e: Any) -> None:
        self._lot(e).documents[e.name] = (e.version, e.size, e.digest)

    def _on_PriceRangePublished(self, e: Any) -> None:
        row = self._lot(e)
        row.price_range = (e.low, e.high)
        row.currency = row.currency or e.currency

    def _on_NdaRequired(self, e: Any) -> None:
        self._lot(e).nda = e.nda

    def _on_DocumentRemoved(self, e: Any) -> None:
        self._lot(e).documents.pop(e.name, None)

    def _on_NoticePosted(self, e: Any) -> None:
        notices = self.notices
        notices.append((e.session, e.serial or e.instrument or e.session, e.text))
        theirs = [i for i, n in enumerate(notices) if n[0] == e.session]
        if len(theirs) > NOTICES_SHOWN:           # the session's oldest goes
            del notices[theirs[0]]

    def _on_QuoteChanged(self, e: Any) -> None:
        row = self._book(e)
        row.bid, row.bid_qty, row.ask, row.ask_qty = e.bid, e.bid_qty, e.ask, e.ask_qty

    def _on_TradeExecuted(self, e: Any) -> None:
        row = self._book(e)
        row.last, row.last_qty, row.trades = e.price, e.qty, e.trade

    # -- rendering --------------------------------------------------------------------

    def render(self, now: int) -> Group:
        """Render the tables, time left counted to ``now`` (ns UTC: the feed's
        time, `gateway.client.FeedClient.feed_time`, so that a replayed feed
        shows its own). Texts from users (titles, serials, notices, reasons)
        go in as `Text`, never as console markup."""
        title = f"lotex board  feed seq {self.seq}"
        if self.session:
            title += f"  session {self.session} {self.sessions.get(self.session, '')}".rstrip()
        lots = Table(title=Text(title), expand=True)
        for name, justify in (("lot", "left"), ("title", "left"), ("mechanism", "left"),
                              ("status", "left"), ("price", "right"), ("leader", "right"),
                              ("reserve", "center"), ("bids", "right"), ("docs", "right"),
                              ("panel range", "right"), ("time left", "right"),
                              ("result", "left")):
            lots.add_column(name, justify=justify)  # type: ignore[arg-type]
        for row in self.lots.values():
            price = money(row.price, row.currency) if row.price else ""
            if row.display_currency and row.display_price:
                price += f"\n{money(row.display_price, row.display_currency)}"
            reserve = "" if row.reserve_met is None else ("met" if row.reserve_met else "not met")
            left = time_left(row.closes_at, now) if row.status == "open" else ""
            style = {"open": "bold", "sold": "green", "passed": "yellow"}.get(row.status, "")
            lots.add_row(Text(row.serial), Text(row.title), row.mechanism,
                         Text(row.status, style=style),
                         price, str(row.leader or ""), reserve, str(row.bids or ""),
                         str(len(row.documents) or ""),
                         "" if row.price_range is None else
                         f"{money(row.price_range[0], row.currency)}\n"
                         f"- {money(row.price_range[1], row.currency)}", left, Text(row.result))
        parts: list[Any] = [lots]
        if self.books:
            books = Table(title="books", expand=True)
            for name in ("instrument", "phase", "bid", "ask", "last", "trades"):
                books.add_column(name, justify="left" if name in ("instrument", "phase")
                                 else "right")
            for row in self.books.values():
                bid = f"{row.bid_qty} @ {money(row.bid)}" if row.bid_qty else ""
                ask = f"{row.ask_qty} @ {money(row.ask)}" if row.ask_qty else ""
                last = f"{row.last_qty} @ {money(row.last, row.currency)}" if row.last_qty else ""
                phase = f"halted: {row.halt_reason}" if row.phase == "halted" else row.phase
                books.add_row(Text(row.instrument), Text(phase), bid, ask, last,
                              str(row.trades or ""))
            parts.append(books)
        focus = self.lots.get(self.lot)
        if focus is not None:
            room = Table(title=Text(f"data room of {focus.serial}"
                                    + (f" (NDA required: {focus.nda})" if focus.nda else "")),
                         expand=True)
            for name in ("document", "version", "bytes", "sha256"):
                room.add_column(name, justify="right" if name in ("version", "bytes")
                                else "left")
            for name, (version, size, digest) in focus.documents.items():
                room.add_row(Text(name), str(version), f"{size:,}", digest)
            parts.append(room)
        if self.notices:
            notices = Table(title="saleroom notices", expand=True)
            notices.add_column("about", justify="left")
            notices.add_column("notice", justify="left")
            for _, about, text in self.notices[-NOTICES_SHOWN:]:
                notices.add_row(Text(about), Text(text))
            parts.append(notices)
        return Group(*parts)
