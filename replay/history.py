"""A lot's complete bid and order history, in journal order.

``history(source, "L-ENG")`` walks the journal once and returns one row per
event about the lot (``serial``) or its book (``instrument``; a units
instrument's id works as well), with the time in the viewer's zone and each
amount also in the display currency at the display rate in force at that
moment (the lot's ``display_currency``, or the one asked for).

The public view has what the live feed showed: paddle numbers, standing
prices (after a bid, and after an English bid the exchange voided),
sealed-bid counts, revealed bids after the close, awards, trades
and book levels. An operator's view adds every private event about the lot
(proxy maxima, sealed amounts as bid, orders, offers, reserves, the parties
of a sale) and the refused commands, each with the party behind the paddle.
O(journal).
"""

from __future__ import annotations

import datetime
import itertools
from typing import Any, Callable, Iterator

from exchange.events import CommandRejected
from replay.access import PUBLIC, Viewer
from replay.catalogue import Catalogue
from replay.source import (UTC, ReplayError, Source, currency_code, display_amount, duration,
                           format_time, money)

COLUMNS = ["seq", "time", "event", "paddle", "side", "qty", "amount", "currency",
           "display_amount", "display_currency", "detail"]
OPERATOR_COLUMNS = ["party"]
MONEY = ("amount", "display_amount")

Row = dict[str, Any]


def history(source: Source, serial: str, *, viewer: Viewer = PUBLIC,
            tz: datetime.tzinfo = UTC, currency: str | None = None) -> tuple[list[str], list[Row]]:
    """Return the columns and rows of ``serial``'s history (a lot or an instrument).

    A lot the viewer never saw an event of (unknown, or never public) is
    refused the same way; ``currency`` must be a code with a display rate."""
    columns, rows = history_rows(source, serial, viewer=viewer, tz=tz, currency=currency)
    return columns, list(rows)


def history_rows(source: Source, serial: str, *, viewer: Viewer = PUBLIC,
                 tz: datetime.tzinfo = UTC, currency: str | None = None
                 ) -> tuple[list[str], Iterator[Row]]:
    """Return the columns of ``serial``'s history and its rows as they are
    found, one pass over the journal in constant memory besides the
    catalogue. The first row is found before this returns, so an unknown
    lot raises `ReplayError` here; a ``currency`` without a display rate
    raises at the end of the rows."""
    if currency is not None:
        currency = currency_code(currency)
    rows = _history_rows(source, serial, viewer, tz, currency)
    first = next(rows, None)           # raises ReplayError for a lot never seen
    columns = COLUMNS + (OPERATOR_COLUMNS if viewer.operator else [])
    return columns, itertools.chain(() if first is None else (first,), rows)


def _history_rows(source: Source, serial: str, viewer: Viewer, tz: datetime.tzinfo,
                  currency: str | None) -> Iterator[Row]:
    cat = Catalogue(viewer)
    cx = _Context(cat, tz)
    keys = {serial}
    found = False
    for _, entry in source.entries(label=f"history of {serial}"):
        cat.fold(entry)
        info = cat.lots.get(serial)
        if info is not None and info.instrument:
            keys.add(info.instrument)
        inst = cat.instruments.get(serial)
        if inst is not None and inst.lot:
            keys.add(inst.lot)
        env = entry.env
        for event in entry.events:
            if not _about(event, keys):
                if not (viewer.operator and type(event) is CommandRejected and event.ref == env.seq
                        and _command_about(env.cmd, keys)):
                    continue
            if not viewer.sees(event):
                continue
            found = True
            for row in _rows(event, env, cx):
                row["seq"] = env.seq
                row["time"] = format_time(env.ts, tz)
                row["ts"] = env.ts
                _add_display(row, cat, serial, currency)
                if viewer.operator and row.get("paddle"):
                    session = getattr(event, "session", "") or _session_of(cat, serial)
                    row["party"] = cat.who(session, row["paddle"])
                yield row
    if not found:
        raise ReplayError(f"no lot or instrument {serial!r} in the journal")
    if currency is not None:
        _check_rate(cat, serial, currency)


def _about(event: Any, keys: set[str]) -> bool:
    return bool(_names(event, ("serial", "instrument")) & keys)


def _command_about(cmd: Any, keys: set[str]) -> bool:
    return bool(_names(cmd, ("serial", "instrument", "lot")) & keys)


def _names(item: Any, fields: tuple[str, ...]) -> set[str]:
    """The non-empty lot and instrument names ``item`` carries."""
    return {value for value in (getattr(item, name, None) for name in fields)
            if isinstance(value, str) and value}


def _check_rate(cat: Catalogue, serial: str, quote: str) -> None:
    """Refuse a second currency the journal holds no display rate for."""
    base, _ = _currency_of(cat, serial)
    if not base or base == quote or (base, quote) in cat.rates:
        return
    known = ", ".join(sorted(q for b, q in cat.rates if b == base)) or "none"
    raise ReplayError(f"no display rate from {base} to {quote} in the journal "
                      f"(rates from {base}: {known})")


def _session_of(cat: Catalogue, serial: str) -> str:
    info = cat.lots.get(serial)
    if info is not None:
        return info.session
    inst = cat.instruments.get(serial)
    return inst.session if inst is not None else ""


def _currency_of(cat: Catalogue, serial: str) -> tuple[str, str]:
    """(currency, display currency) of a lot or instrument."""
    info = cat.lots.get(serial)
    if info is None:
        inst = cat.instruments.get(serial)
        if inst is None:
            return "", ""
        info = cat.lots.get(inst.lot) if inst.lot else None
        if info is None:
            return inst.currency, ""
    shown = info.terms.display_currency if info.terms is not None else ""
    return info.currency, shown


def _add_display(row: Row, cat: Catalogue, serial: str, asked: str | None) -> None:
    base, shown = _currency_of(cat, serial)
    base = row.get("currency") or base
    row["currency"] = base or None
    quote = asked if asked is not None else shown
    amount = row.get("amount")
    if quote and amount is not None and base and quote != base:
        converted = display_amount(cat.rates, amount, base, quote)
        if converted is not None:
            row["display_amount"] = converted
            row["display_currency"] = quote


# --------------------------------------------------------------------------
# one event -> rows
# --------------------------------------------------------------------------

def _rows(event: Any, env: Any, cx: "_Context") -> list[Row]:
    maker = _MAKERS.get(type(event).__name__)
    if maker is None:
        return [_generic(event)]
    made = maker(event, env, cx)
    return made if isinstance(made, list) else [made]


def _generic(event: Any) -> Row:
    """A row for an event type this module does not know (e.g. a newer module's)."""
    fields = [(name, getattr(event, name)) for name in event.__struct_fields__
              if name not in ("to", "serial", "session", "instrument")]
    detail = ", ".join(f"{name} {value}" for name, value in fields)
    paddle = getattr(event, "paddle", None) or getattr(event, "buyer_paddle", None)
    return dict(event=type(event).__name__, paddle=paddle if isinstance(paddle, int) else None,
                detail=detail if len(detail) <= 160 else detail[:157] + "...")


class _Context:
    """What the row makers need besides the event: the viewer's zone."""

    __slots__ = ("cat", "tz")

    def __init__(self, cat: Catalogue, tz: datetime.tzinfo) -> None:
        self.cat = cat
        self.tz = tz


def _t(cx: _Context, ts: int) -> str:
    return format_time(ts, cx.tz) if ts else ""


def _m(amount: int) -> str:
    return money(amount)


def _scheduled(ev, env, cx) -> Row:
    t = ev.terms
    return dict(event="scheduled", amount=t.starting_bid or None,
                detail=f"{t.mechanism}, opens {_t(cx, t.opens_at)}, closes {_t(cx, t.closes_at)}"
                       + (f", Ask {_m(t.ask)}" if t.ask else "")
                       + (f", soft close {duration(t.soft_window)} (extends "
                          f"{duration(t.soft_extend)})" if t.soft_window else ""))


def _created(ev, env, cx) -> Row:
    return dict(event="created (private)", amount=ev.reserve or None,
                detail=f"seller party {ev.seller}, reserve {_m(ev.reserve)}")


def _vetted(ev, env, cx) -> Row:
    return dict(event="vetted (private)", detail=f"score {ev.score}, "
                f"{'approved' if ev.approved else 'rejected'} {ev.note}".rstrip())


def _opened(ev, env, cx) -> Row:
    return dict(event="opened", amount=ev.price,
                detail=f"closes {_t(cx, ev.closes_at)}, hard end {_t(cx, ev.hard_end)}")


def _bid_accepted(ev, env, cx) -> Row:
    return dict(event="bid", paddle=ev.paddle, amount=ev.price,
                detail=f"standing price; leader {ev.leader}; reserve "
                       f"{'met' if ev.reserve_met else 'not met'}; {ev.bids} bids")


def _bid_voided(ev, env, cx) -> Row:
    """A standing bid the exchange voided. English (public): a price change
    like a bid's, with the new standing price and leader recomputed from the
    maxima left (the starting bid when none is left, as the board shows it).
    Sealed (private): the bid is gone; nothing public changes but the count."""
    if ev.to:
        return dict(event="bid voided (private)", paddle=ev.paddle, detail=ev.reason)
    if ev.leader:
        amount, leader = ev.price, f"leader {ev.leader}"
    else:
        info = cx.cat.lots.get(ev.serial)
        amount = info.terms.starting_bid if info is not None and info.terms is not None else None
        leader = "no bid left: the starting bid"
    return dict(event="bid voided", paddle=ev.paddle, amount=amount,
                detail=f"standing price; {leader}; reserve "
                       f"{'met' if ev.reserve_met else 'not met'}; paddle {ev.paddle}'s bid "
                       f"voided: {ev.reason}")


def _bid_confirmed(ev, env, cx) -> Row:
    return dict(event="bid as made (private)", paddle=ev.paddle, amount=ev.amount,
                detail="leading" if ev.leading else "")


def _sealed_count(ev, env, cx) -> Row:
    return dict(event="sealed bids", detail=f"{ev.bids} live")


def _withdrawn_bid(ev, env, cx) -> Row:
    return dict(event="bid withdrawn (private)", paddle=ev.paddle)


def _extended(ev, env, cx) -> Row:
    return dict(event="close extended", detail=f"closes {_t(cx, ev.closes_at)}, "
                                               f"hard end {_t(cx, ev.hard_end)}")


def _dutch(ev, env, cx) -> Row:
    return dict(event="clock", amount=ev.price, detail="at its floor" if ev.at_floor else "")


def _closed(ev, env, cx) -> Row:
    return dict(event="closed", detail=f"{ev.outcome}, {ev.bids} bids")


def _revealed(ev, env, cx) -> list[Row]:
    return [dict(event="sealed bid revealed", paddle=bid.paddle, amount=bid.amount,
                 detail=f"rank {n}") for n, bid in enumerate(ev.bids, 1)]


def _awarded(ev, env, cx) -> Row:
    return dict(event="awarded", paddle=ev.paddle, amount=ev.hammer, currency=ev.currency,
                detail=f"{ev.how}; premium {_m(ev.premium)}, total {_m(ev.total)}, commission "
                       f"{_m(ev.commission)}, net {_m(ev.net)}"
                       + (f"; tie-break {ev.tie_break}" if ev.tie_break != "none" else ""))


def _sold(ev, env, cx) -> Row:
    return dict(event="sold (private)", paddle=ev.paddle, amount=ev.total, currency=ev.currency,
                detail=f"buyer party {ev.buyer} pays {_m(ev.total)}; seller party {ev.seller} "
                       f"receives {_m(ev.net)}")


def _passed(ev, env, cx) -> Row:
    return dict(event="passed", detail=f"{ev.reason}, {ev.bids} bids"
                + (f", negotiation until {_t(cx, ev.negotiation_ends)}" if ev.negotiation_ends
                   else ""))


def _passed_detail(ev, env, cx) -> Row:
    return dict(event="pass detail (private)", paddle=ev.highest_paddle or None,
                amount=ev.highest_bid or None, detail=f"highest bid; reserve {_m(ev.reserve)}")


def _offer(ev, env, cx) -> Row:
    return dict(event="offer (private)", paddle=ev.paddle, amount=ev.amount)


def _offer_answered(ev, env, cx) -> Row:
    return dict(event=f"offer {ev.action} (private)", paddle=ev.paddle, amount=ev.amount or None)


def _offer_withdrawn(ev, env, cx) -> Row:
    return dict(event="offer ended (private)", paddle=ev.paddle, detail=ev.reason)


def _reserve_lowered(ev, env, cx) -> Row:
    return dict(event="reserve lowered (private)", amount=ev.reserve)


def _simple(name: str, field: str = "") -> Callable[..., Row]:
    def make(ev, env, cx) -> Row:
        return dict(event=name, detail=str(getattr(ev, field)) if field else "")
    return make


def _document(ev, env, cx) -> Row:
    return dict(event="document added" if ev.to == () else "document added (private)",
                detail=f"{ev.name} v{ev.version}, {ev.size:,} bytes, sha256 {ev.digest[:12]}")


def _document_removed(ev, env, cx) -> Row:
    return dict(event="document removed" if ev.to == () else "document removed (private)",
                detail=f"{ev.name} v{ev.version}")


def _nda(ev, env, cx) -> Row:
    return dict(event="NDA signed (private)", detail=f"party {ev.party}, {ev.nda}")


def _released(ev, env, cx) -> Row:
    return dict(event="document opened (private)",
                detail=f"party {ev.party}: {ev.name} v{ev.version}")


def _interest(ev, env, cx) -> Row:
    return dict(event="data room interest (private)",
                detail=f"{ev.ndas} NDAs, {ev.readers} readers, {ev.opened} openings")


def _panel(ev, env, cx) -> Row:
    return dict(event="panel drawn (private)",
                detail=f"round {ev.round}: experts {', '.join(map(str, ev.experts))}"
                       + (f" ({ev.field})" if ev.field else ""))


def _valuation(ev, env, cx) -> Row:
    return dict(event="valuation (private)", amount=ev.low,
                detail=f"round {ev.round}, expert {ev.expert}: {_m(ev.low)} to {_m(ev.high)}")


def _price_range(ev, env, cx) -> Row:
    return dict(event="price range" if ev.to == () else "price range (private)", amount=ev.low,
                currency=ev.currency,
                detail=f"{_m(ev.low)} to {_m(ev.high)}, from {ev.valuations} of {ev.panel} "
                       f"experts (round {ev.round})")


def _relisted(ev, env, cx) -> Row:
    return dict(event="relisted", detail=f"opens {_t(cx, ev.opens_at)}, closes "
                                         f"{_t(cx, ev.closes_at)}")


def _instrument(ev, env, cx) -> Row:
    return dict(event="book created", currency=ev.currency,
                detail=f"{ev.kind} {ev.instrument}" + (f" for lot {ev.lot}" if ev.lot else "")
                       + f", {ev.phase}")


def _order(ev, env, cx) -> Row:
    return dict(event="order (private)", paddle=ev.paddle, side=ev.side, qty=ev.qty,
                amount=ev.price or None, detail=f"order {ev.order}, {ev.tif}"
                + (", post-only" if ev.post_only else ""))


def _fill(ev, env, cx) -> Row:
    return dict(event="fill (private)", paddle=ev.paddle, side=ev.side, qty=ev.qty,
                amount=ev.price, currency=ev.currency,
                detail=f"order {ev.order}, trade {ev.trade}, {ev.role}, leaves {ev.leaves}")


def _cancel(ev, env, cx) -> Row:
    return dict(event="order cancelled (private)", paddle=ev.paddle, qty=ev.qty,
                detail=f"order {ev.order}, {ev.reason}")


def _modify(ev, env, cx) -> Row:
    return dict(event="order modified (private)", paddle=ev.paddle, qty=ev.qty, amount=ev.price,
                detail=f"order {ev.order}, "
                       f"{'keeps' if ev.priority_kept else 'loses'} priority")


def _trade(ev, env, cx) -> Row:
    return dict(event="trade", paddle=ev.buy_paddle, side="buy", qty=ev.qty, amount=ev.price,
                currency=ev.currency, detail=f"trade {ev.trade}: {ev.buy_paddle} bought from "
                f"{ev.sell_paddle}" + (f", {ev.aggressor} aggressor" if ev.aggressor else ", auction"))


def _trade_recorded(ev, env, cx) -> Row:
    return dict(event="trade parties (private)", paddle=ev.buy_paddle, qty=ev.qty, amount=ev.price,
                currency=ev.currency, detail=f"buyer party {ev.buyer}, seller party {ev.seller}")


def _quote(ev, env, cx) -> Row:
    spread = ev.ask - ev.bid if ev.bid and ev.ask else None
    return dict(event="quote", bid=ev.bid, ask=ev.ask, detail=f"bid {_m(ev.bid)} x {ev.bid_qty}, ask {_m(ev.ask)} x "
                f"{ev.ask_qty}" + (f", spread {_m(spread)}" if spread is not None else ""))


def _depth(ev, env, cx) -> Row:
    return dict(event="level", side=ev.side, qty=ev.qty, amount=ev.price,
                detail=f"{ev.orders} orders" if ev.qty else "level gone")


def _indicative(ev, env, cx) -> Row:
    return dict(event="indicative", qty=ev.volume, amount=ev.price or None,
                detail=f"imbalance {ev.imbalance}")


def _uncrossed(ev, env, cx) -> Row:
    return dict(event="call uncrossed", qty=ev.volume, amount=ev.price)


def _units(name: str) -> Callable[..., Row]:
    def make(ev, env, cx) -> Row:
        return dict(event=name, paddle=ev.paddle, qty=ev.qty, detail=f"holding {ev.holding}")
    return make


def _rejected(ev, env, cx) -> Row:
    cmd = env.cmd
    return dict(event="refused (private)", paddle=getattr(cmd, "paddle", None),
                amount=getattr(cmd, "amount", None) or getattr(cmd, "price", None) or None,
                detail=f"{type(cmd).__name__} by {env.actor}: {ev.code}: {ev.text}")


_MAKERS: dict[str, Callable[..., Any]] = {
    "LotCreated": _created, "LotVetted": _vetted, "LotScheduled": _scheduled,
    "LotOpened": _opened, "BidAccepted": _bid_accepted, "BidConfirmed": _bid_confirmed,
    "BidVoided": _bid_voided,
    "SealedBidCounted": _sealed_count, "BidWithdrawn": _withdrawn_bid, "LotExtended": _extended,
    "DutchPriceChanged": _dutch, "LotClosed": _closed, "SealedBidsRevealed": _revealed,
    "LotAwarded": _awarded, "LotSold": _sold, "LotPassed": _passed,
    "LotPassedDetail": _passed_detail, "OfferMade": _offer, "OfferAnswered": _offer_answered,
    "OfferWithdrawn": _offer_withdrawn, "ReserveLowered": _reserve_lowered,
    "NegotiationEnded": _simple("negotiation ended"), "LotRelisted": _relisted,
    "LotWithdrawn": _simple("withdrawn", "reason"), "LotSettled": _simple("settled"),
    "InstrumentCreated": _instrument, "PhaseChanged": _simple("phase", "phase"),
    "TradingHalted": _simple("trading halted", "reason"),
    "NoticePosted": _simple("notice", "text"),
    "DocumentAdded": _document, "DocumentRemoved": _document_removed, "NdaSigned": _nda,
    "DocumentReleased": _released, "DataRoomInterest": _interest,
    "NdaRequired": lambda ev, env, cx: dict(
        event="NDA required" if ev.to == () else "NDA required (private)",
        detail=ev.nda or "any version"),
    "PanelDrawn": _panel, "ValuationRecorded": _valuation, "PriceRangePublished": _price_range,
    "PanelDiscarded": _simple("panel discarded (private)", "reason"),
    "OrderAccepted": _order, "OrderFilled": _fill, "OrderCancelled": _cancel,
    "OrderModified": _modify, "TradeExecuted": _trade, "TradeRecorded": _trade_recorded,
    "QuoteChanged": _quote, "DepthChanged": _depth, "IndicativePrice": _indicative,
    "CallUncrossed": _uncrossed, "UnitsIssued": _units("units issued (private)"),
    "UnitsConsumed": _units("units consumed (private)"), "CommandRejected": _rejected,
}
