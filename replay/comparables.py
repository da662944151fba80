"""Price disclosure, as OTBA gave its buyers: comparable lots and their prices.

Select the lots of the public catalogue holding a patent that matches one
criterion: its number (``--patent``, compared without spaces, hyphens and
case), its family, its technology field, its jurisdiction, or its status
(``pending`` applications, ``granted`` patents). For each: the outcome and
the public prices (hammer and total for a sale; the standing price of a lot
still open; no amount for a pass, as in the live feed). For lots traded on
the continuous book: the bid-ask spread and the activity per period (hour,
day or week in the viewer's zone; a night that turns the clocks back has two
01:00 hours, each labelled with its offset): trades, volume, first, high, low, last
and volume-weighted average price (int division), best bid and ask at the
end of the period, the narrowest spread seen. Public events only: this is
what any buyer may see. O(journal + quotes and trades of the chosen books).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from replay.access import PUBLIC
from replay.catalogue import Catalogue, InstrumentInfo, LotInfo
from replay.source import UTC, NS, ReplayError, Source, format_time

LOT_COLUMNS = ["serial", "session", "title", "mechanism", "matched", "outcome", "how", "paddle",
               "currency", "price", "total", "closed_at", "bids"]
ACTIVITY_COLUMNS = ["serial", "instrument", "period", "trades", "volume", "first", "high", "low",
                    "last", "vwap", "bid", "ask", "spread", "min_spread"]
MONEY = ("price", "total", "first", "high", "low", "last", "vwap", "bid", "ask", "spread",
         "min_spread")
CRITERIA = ("patent", "family", "field", "jurisdiction", "status")


@dataclass
class Comparables:
    lots: list[dict[str, Any]] = field(default_factory=list)
    activity: list[dict[str, Any]] = field(default_factory=list)


def normalise_number(number: str) -> str:
    """"US 9,000,001" and "us-9000001" -> "US9000001"."""
    return "".join(ch for ch in number.upper() if ch.isalnum())


def matches(patent: Any, criterion: str, value: str) -> bool:
    if criterion == "patent":
        return normalise_number(patent.number) == normalise_number(value)
    if criterion == "family":
        return patent.family_id == value
    if criterion == "field":
        return patent.field.casefold() == value.casefold()
    if criterion == "jurisdiction":
        return patent.jurisdiction.upper() == value.upper()
    if criterion == "status":
        return patent.status == value
    raise ValueError(f"unknown criterion {criterion!r}; choose from {', '.join(CRITERIA)}")


def comparables(source: Source, criterion: str, value: str, *, bucket: str = "day",
                tz: datetime.tzinfo = UTC) -> Comparables:
    """Return the comparable lots and their books' activity (see the module doc)."""
    if not value.strip():
        raise ReplayError(f"give a {criterion} to compare with (it is empty)")
    cat = Catalogue(PUBLIC, keep_series=True).fold_all(source.entries(label="comparables"))
    return select(cat, criterion, value, bucket=bucket, tz=tz)


def select(cat: Catalogue, criterion: str, value: str, *, bucket: str = "day",
           tz: datetime.tzinfo = UTC) -> Comparables:
    found = Comparables()
    for info in cat.lots.values():
        hits = [p.number for p in info.patents if matches(p, criterion, value)]
        if not hits:
            continue
        found.lots.append(_lot_row(info, hits, tz))
        inst = cat.instrument_of_lot(info.serial)
        if inst is not None:
            found.activity.extend(activity(inst, info.serial, bucket, tz))
    return found


def _lot_row(info: LotInfo, hits: list[str], tz: datetime.tzinfo) -> dict[str, Any]:
    award = info.award
    row: dict[str, Any] = dict(serial=info.serial, session=info.session, title=info.title,
                               mechanism=info.mechanism, matched=" ".join(hits),
                               outcome=info.outcome, currency=info.currency, bids=info.bids)
    if award is not None:
        row.update(how=award.how, paddle=award.paddle, price=award.hammer, total=award.total,
                   closed_at=format_time(info.award_ts, tz))
    elif info.status == "open" and info.price and info.mechanism in ("english", "dutch"):
        row["price"] = info.price                 # the standing price or the clock, public
    elif info.passes:
        row["closed_at"] = format_time(info.passes[-1][0], tz)
    return row


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)


def period_start(ts: int, bucket: str, tz: datetime.tzinfo) -> datetime.datetime:
    """The start of the hour, day or ISO week (Monday) holding ``ts``, in ``tz``:
    an hour keeps its offset (fold), so the two 01:00 hours of a night that
    turns the clocks back are two hours; a day or week starts at its first
    midnight."""
    moment = datetime.datetime.fromtimestamp(ts // NS, tz)
    if bucket == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    if bucket == "day":
        return day
    if bucket == "week":
        return day - datetime.timedelta(days=day.weekday())
    raise ValueError(f"unknown period {bucket!r}")


def period_key(start: datetime.datetime) -> int:
    """The period's start in s since the epoch: periods compare and sort by it
    (aware times of one zone compare by the wall clock, ignoring the fold)."""
    return (start - EPOCH) // SECOND


def _label(start: datetime.datetime, bucket: str) -> str:
    if bucket == "hour":
        return start.strftime("%Y-%m-%dT%H:00%z")
    if bucket == "week":
        return "week of " + start.strftime("%Y-%m-%d")
    return start.strftime("%Y-%m-%d")


def activity(inst: InstrumentInfo, serial: str, bucket: str, tz: datetime.tzinfo) -> list[dict[str, Any]]:
    """One row per period with a quote change or a trade. O(quotes + trades)."""
    rows: dict[int, dict[str, Any]] = {}         # by the period's start, s since the epoch

    def row_at(ts: int) -> dict[str, Any]:
        start = period_start(ts, bucket, tz)
        key = period_key(start)
        row = rows.get(key)
        if row is None:
            row = rows[key] = dict(serial=serial, instrument=inst.id,
                                   period=_label(start, bucket), trades=0, volume=0,
                                   notional=0)
        return row

    events: list[tuple[int, int, str, tuple]] = []
    for quote in inst.quotes:
        events.append((quote[5], quote[0], "q", quote))
    for trade in inst.trades:
        events.append((trade[5], trade[0], "t", trade))
    events.sort(key=lambda item: (item[0], item[2] == "q"))
    for _, ts, kind, item in events:
        row = row_at(ts)
        if kind == "t":
            _, price, qty, _, _, _ = item
            row["trades"] += 1
            row["volume"] += qty
            row["notional"] += price * qty
            row.setdefault("first", price)
            row["high"] = max(row.get("high", price), price)
            row["low"] = min(row.get("low", price), price)
            row["last"] = price
        else:
            _, bid, _, ask, _, _ = item
            row["bid"] = bid or None
            row["ask"] = ask or None
            if bid and ask:
                spread = ask - bid
                row["spread"] = spread
                row["min_spread"] = min(row.get("min_spread", spread), spread)
            else:
                row["spread"] = None
    ordered = [rows[key] for key in sorted(rows)]
    carry_bid = carry_ask = None
    for row in ordered:
        carried = carry_ask - carry_bid if carry_bid and carry_ask else None
        if "bid" not in row:                      # no quote change this period: it stood
            row["bid"], row["ask"] = carry_bid, carry_ask
            row["spread"] = row["min_spread"] = carried
        elif carried is not None:                 # the spread standing as the period began
            row["min_spread"] = min(row.get("min_spread", carried), carried)
        carry_bid, carry_ask = row["bid"], row["ask"]
        row["vwap"] = row["notional"] // row["volume"] if row["volume"] else None
        del row["notional"]
    return ordered
