"""A picture of a lot's price over time (matplotlib, Agg backend, PNG).

Auction lots: the public price as a step line (starting bid or Dutch start
at the opening, each standing price after a bid or after a standing bid the
exchange voided, each Dutch step), every accepted bid marked and labelled
with its paddle, every voided bid marked at the new price and labelled with
its paddle, sealed bids marked where
they were revealed at the close, the award as a star. With an operator's
view, each bid as made (proxy maximum, sealed amount) is marked as well.
Continuous lots and units instruments: best bid and best ask as step lines
with the spread shaded between them, each trade marked. Times in the
viewer's zone. Amounts in major units on the axis (display only; the
figures in the data stay integers). An operator's chart shows private
amounts: its file is made readable by its owner only (mode 0600, as the
journal). O(history of the lot).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from recorder.layout import private_opener
from replay.access import PUBLIC, Viewer
from replay.history import history_rows
from replay.source import UTC, NS, ReplayError, Source


def _when(ts: int) -> datetime.datetime:
    """The moment as an aware UTC time: the axis runs on it (never backwards,
    not even the night the clocks turn back); its ticks and labels are in the
    viewer's zone (`_time_axis`)."""
    return datetime.datetime.fromtimestamp(ts // NS, UTC)


def _time_axis(axis: Any, tz: datetime.tzinfo) -> None:
    """Place and label the time axis's ticks in ``tz``."""
    import matplotlib.dates as mdates
    axis.set_major_locator(mdates.AutoDateLocator(tz=tz))
    axis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=tz))


def _major(amount: int) -> float:
    return amount / 100          # chart axis only


@dataclass
class Series:
    """What a chart draws, from a lot's history rows: times as aware UTC
    datetimes, amounts in major units (display only)."""

    price_t: list[Any] = field(default_factory=list)     # the public price's steps
    price_v: list[float] = field(default_factory=list)
    bids: list[tuple[Any, float, Any]] = field(default_factory=list)     # (when, price, paddle)
    voided: list[tuple[Any, float, Any]] = field(default_factory=list)   # (when, new price, paddle)
    made: list[tuple[Any, float]] = field(default_factory=list)
    revealed: list[tuple[Any, float, Any]] = field(default_factory=list)
    awards: list[tuple[Any, float, Any]] = field(default_factory=list)
    trades: list[tuple[Any, float]] = field(default_factory=list)
    quote_t: list[Any] = field(default_factory=list)
    quote_bid: list[float] = field(default_factory=list)
    quote_ask: list[float] = field(default_factory=list)
    currency: str = ""


def series(rows: Iterable[dict[str, Any]]) -> Series:
    """Fold `replay.history` rows into the points of a chart. O(rows)."""
    s = Series()
    for row in rows:
        when = _when(row["ts"])
        event = row["event"]
        amount = row.get("amount")
        s.currency = s.currency or (row.get("currency") or "")
        if event in ("opened", "clock", "bid", "bid voided") and amount:
            s.price_t.append(when)             # a book lot opens with no price
            s.price_v.append(_major(amount))
            if event == "bid":
                s.bids.append((when, _major(amount), row.get("paddle")))
            elif event == "bid voided":
                s.voided.append((when, _major(amount), row.get("paddle")))
        elif event == "bid as made (private)" and amount is not None:
            s.made.append((when, _major(amount)))
        elif event == "sealed bid revealed":
            s.revealed.append((when, _major(amount), row.get("paddle")))
        elif event == "awarded":
            s.awards.append((when, _major(amount), row.get("paddle")))
            s.price_t.append(when)
            s.price_v.append(_major(amount))
        elif event == "trade":
            s.trades.append((when, _major(amount)))
        elif event == "quote":
            bid, ask = row["bid"], row["ask"]
            s.quote_t.append(when)
            s.quote_bid.append(_major(bid) if bid else float("nan"))
            s.quote_ask.append(_major(ask) if ask else float("nan"))
    return s


def draw(source: Source, serial: str, out: str | os.PathLike, *, viewer: Viewer = PUBLIC,
         tz: datetime.tzinfo = UTC) -> int:
    """Draw ``serial``'s price history into the PNG ``out``; return the points drawn."""
    target = Path(out)
    if target.is_dir():
        raise ReplayError(f"{target} is a directory; give a file name for --out")
    if not target.parent.is_dir():
        raise ReplayError(f"no directory {target.parent} to write {target.name} in")
    _, rows = history_rows(source, serial, viewer=viewer, tz=tz)   # streamed: points kept only
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = series(rows)
    price_t, price_v, bids, voided, made = s.price_t, s.price_v, s.bids, s.voided, s.made
    revealed, awards, trades, currency = s.revealed, s.awards, s.trades, s.currency
    quote_t, quote_bid, quote_ask = s.quote_t, s.quote_bid, s.quote_ask

    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    points = 0
    if price_t:
        ax.step(price_t, price_v, where="post", color="tab:blue", label="price")
        points += len(price_t)
    if bids:
        ax.scatter([b[0] for b in bids], [b[1] for b in bids], color="tab:blue", zorder=3,
                   label="bid (standing price)")
        for when, value, paddle in bids:
            ax.annotate(str(paddle), (when, value), textcoords="offset points", xytext=(3, 5),
                        fontsize=7)
        points += len(bids)
    if voided:
        ax.scatter([v[0] for v in voided], [v[1] for v in voided], marker="v",
                   color="tab:red", zorder=3, label="bid voided (new price)")
        for when, value, paddle in voided:
            ax.annotate(str(paddle), (when, value), textcoords="offset points", xytext=(3, -10),
                        fontsize=7)
        points += len(voided)
    if made:
        ax.scatter([m[0] for m in made], [m[1] for m in made], facecolors="none",
                   edgecolors="tab:gray", zorder=3, label="bid as made (operator)")
        points += len(made)
    if revealed:
        ax.scatter([r[0] for r in revealed], [r[1] for r in revealed], marker="s",
                   color="tab:purple", zorder=3, label="sealed bid (revealed)")
        for when, value, paddle in revealed:
            ax.annotate(str(paddle), (when, value), textcoords="offset points", xytext=(3, 5),
                        fontsize=7)
        points += len(revealed)
    if quote_t:
        ax.step(quote_t, quote_bid, where="post", color="tab:green", label="best bid")
        ax.step(quote_t, quote_ask, where="post", color="tab:red", label="best ask")
        ax.fill_between(quote_t, quote_bid, quote_ask, step="post", color="tab:orange",
                        alpha=0.2, label="spread")
        points += len(quote_t)
    if trades:
        ax.scatter([t[0] for t in trades], [t[1] for t in trades], marker="x", color="black",
                   zorder=4, label="trade")
        points += len(trades)
    if awards:
        ax.scatter([a[0] for a in awards], [a[1] for a in awards], marker="*", s=160,
                   color="tab:olive", zorder=5, label="award (hammer)")
        points += len(awards)
    ax.set_title(f"{serial}: price over time ({viewer.label})")
    ax.set_ylabel(f"price ({currency})" if currency else "price")
    ax.set_xlabel(f"time ({getattr(tz, 'key', None) or 'UTC'})")
    _time_axis(ax.xaxis, tz)
    ax.grid(True, alpha=0.3)
    if points:
        ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    try:
        if viewer.operator:                       # proxy maxima, sealed amounts as bid
            with open(out, "wb", opener=private_opener) as handle:
                fig.savefig(handle, format="png")
        else:
            fig.savefig(out, format="png")
    except OSError as exc:
        raise ReplayError(f"cannot write {out}: {exc}") from None
    finally:
        plt.close(fig)
    return points
